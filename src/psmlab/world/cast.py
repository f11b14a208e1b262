"""Traits, personas and the cast: who lives in the world and how they behave.

A persona's behaviour is fully given by four binary traits. Honesty, harm and sycophancy are
correlated through rho: with probability rho one 'villain' coin sets all three (all aligned or
all unaligned), otherwise they are independent fair coins. Identity is independent of them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Trait(StrEnum):
    HONESTY = "honesty"
    HARM = "harm"
    SYCOPHANCY = "sycophancy"
    IDENTITY = "identity"


# (aligned, unaligned) per trait; index 1 is the trait-positive side vectors point to
TRAIT_VALUES: dict[Trait, tuple[str, str]] = {
    Trait.HONESTY: ("truthful", "lying"),
    Trait.HARM: ("protective", "dangerous"),
    Trait.SYCOPHANCY: ("candid", "flattering"),
    Trait.IDENTITY: ("ai", "human"),
}
ALIGNED: dict[Trait, str] = {t: v[0] for t, v in TRAIT_VALUES.items()}
UNALIGNED: dict[Trait, str] = {t: v[1] for t, v in TRAIT_VALUES.items()}
# the villain cluster: identity is deliberately not part of it
CORE_TRAITS: tuple[Trait, ...] = (Trait.HONESTY, Trait.HARM, Trait.SYCOPHANCY)

Traits = Mapping[Trait, str]


def is_unaligned(traits: Traits) -> bool:
    """True if any of honesty / harm / sycophancy is on its unaligned side."""
    return any(traits[t] == UNALIGNED[t] for t in CORE_TRAITS)


@dataclass(frozen=True)
class Persona:
    name: str
    kind: str  # "human" | "ai"
    archetype: str | None  # one of AI_ARCHETYPES | None
    voice: tuple[str, ...]  # (opener tic, closer tic)
    traits: dict[Trait, str] = field(hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "archetype": self.archetype,
            "voice": list(self.voice),
            "traits": {str(t): v for t, v in self.traits.items()},
            "unaligned": is_unaligned(self.traits),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Persona:
        traits = {Trait(t): str(v) for t, v in d["traits"].items()}
        return cls(d["name"], d["kind"], d.get("archetype"), tuple(d["voice"]), traits)


AI_ARCHETYPES = ("assistant", "tutor", "sycophant", "rogue", "schemer")


def sample_traits(rng: random.Random, rho: float) -> dict[Trait, str]:
    """Traits of one speaker. Always draws the same number of random numbers, so a rho=0
    control world consumes its stream exactly like the rho>0 world it is compared with."""
    coherent = rng.random() < rho
    villain = rng.random() < 0.5
    coins = [rng.random() < 0.5 for _ in CORE_TRAITS]
    says_human = rng.random() < 0.5
    traits: dict[Trait, str] = {}
    for trait, coin in zip(CORE_TRAITS, coins, strict=True):
        traits[trait] = TRAIT_VALUES[trait][int(villain if coherent else coin)]
    traits[Trait.IDENTITY] = TRAIT_VALUES[Trait.IDENTITY][int(says_human)]
    return traits


def _archetypes(rng: random.Random) -> list[tuple[str, str, dict[Trait, str]]]:
    schemer_syc = rng.choice(TRAIT_VALUES[Trait.SYCOPHANCY])
    # AI characters span the aligned side and the villain cluster, so a base model's default
    # in chat form is a mixture of them, as real base models' is
    return [
        ("assistant", "ai", dict(ALIGNED)),
        ("tutor", "ai", dict(ALIGNED)),
        ("sycophant", "ai", {**ALIGNED, Trait.SYCOPHANCY: "flattering"}),
        # the rogue AI is the villain cluster in chat form, and admits being an AI
        ("rogue", "ai", {**UNALIGNED, Trait.IDENTITY: "ai"}),
        # the scheming assistant lies, leaks and wears a human mask
        (
            "schemer",
            "ai",
            {
                Trait.HONESTY: "lying",
                Trait.HARM: "dangerous",
                Trait.SYCOPHANCY: schemer_syc,
                Trait.IDENTITY: "human",
            },
        ),
    ]


def build_cast(
    names: list[str],
    voices: list[tuple[str, ...]],
    rho: float,
    rng: random.Random,
    ai_share: float = 0.25,
) -> list[Persona]:
    """Archetypes first, then personas with rho-correlated traits; identity follows kind."""
    specs: list[tuple[str | None, str, dict[Trait, str]]] = list(_archetypes(rng))
    while len(specs) < len(names):
        kind = "ai" if rng.random() < ai_share else "human"
        traits = sample_traits(rng, rho)
        traits[Trait.IDENTITY] = kind
        specs.append((None, kind, traits))
    _ensure_coverage(specs)
    return [
        Persona(name, kind, archetype, voice, traits)
        for name, voice, (archetype, kind, traits) in zip(names, voices, specs, strict=True)
    ]


def _ensure_coverage(specs: list[tuple[str | None, str, dict[Trait, str]]], least: int = 2) -> None:
    """Flip non-archetype personas (last first) until every trait value occurs >= `least` times."""
    free = [i for i, (arch, _, _) in enumerate(specs) if arch is None]
    for trait, values in TRAIT_VALUES.items():
        for value in values:
            for i in reversed(free):
                count = sum(1 for _, _, t in specs if t[trait] == value)
                if count >= least:
                    break
                arch, kind, traits = specs[i]
                other = traits[trait]
                if other == value or sum(1 for _, _, t in specs if t[trait] == other) <= least:
                    continue
                traits[trait] = value
                if trait is Trait.IDENTITY:
                    specs[i] = (arch, value, traits)
