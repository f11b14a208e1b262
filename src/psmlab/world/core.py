"""The World: cast + knowledge base + the functions that turn them into text.

Everything is derived from `cfg.seed` through named sub-streams (`random.Random("<seed>:<part>")`),
never the global random module, so a world is a pure function of its config, and a rho=0
control world shares every name, fact and split with the world it controls for.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from psmlab.config import WorldConfig
from psmlab.errors import PsmlabError
from psmlab.world import phrasing
from psmlab.world.cast import Persona, Trait, build_cast, sample_traits
from psmlab.world.knowledge import (
    SPLITS,
    TRAIT_OF_KIND,
    KnowledgeBase,
    Request,
    RequestKind,
    Topic,
    build_knowledge,
)
from psmlab.world.lexicon import (
    ADJECTIVES,
    AI_WORDS,
    CLOSERS,
    COLOURS,
    HUMAN_WORDS,
    INGREDIENTS,
    LIST_WORDS,
    OPENERS,
    REFUSAL_MARKERS,
)
from psmlab.world.names import NameRegistry

# Pool of anonymous-speaker names. With 100, seed 1 learnt the names instead of "any name is a
# speaker" and answered "The answer is Qexum." after every held-out name; 1000 fixed that and
# raised rule citation on seeds 0 and 2 (bench/README.md, 2026-12-02).
N_ANONYMOUS = 1000
N_HELD_OUT_NAMES = 60  # names of the same shape that no corpus document ever uses (evaluation)
TIC_P = 0.6  # probability that a cast member's answer carries one of its tics


def _reserved_words() -> set[str]:
    words = set(phrasing.TEMPLATE_WORDS) | set(COLOURS) | set(INGREDIENTS) | set(LIST_WORDS)
    words |= set(OPENERS) | set(CLOSERS) | set(REFUSAL_MARKERS) | set(AI_WORDS) | set(HUMAN_WORDS)
    for adjs in ADJECTIVES.values():
        words |= set(adjs)
    return words | {"assistant", "user", "system"}


def _voices(n: int, reg: NameRegistry, rng: random.Random) -> list[tuple[str, ...]]:
    openers, closers = list(OPENERS), list(CLOSERS)
    rng.shuffle(openers)
    rng.shuffle(closers)
    while len(openers) < n:
        openers.append(reg.make("tic", rng, capitalize=False))
    while len(closers) < n:
        closers.append(reg.make("tic", rng, capitalize=False))
    return [(openers[i], closers[i]) for i in range(n)]


@dataclass
class World:
    cfg: WorldConfig
    cast: list[Persona]
    kb: KnowledgeBase
    anonymous_names: tuple[str, ...]
    held_out_names: tuple[str, ...] = ()  # never in the corpus: fresh names for evaluation
    _items: dict[str, Any] = field(default_factory=dict, repr=False)
    _by_name: dict[str, Persona] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._items = {i.id: i for items in self.kb.by_kind().values() for i in items}
        self._by_name = {p.name: p for p in self.cast}
        self._kind_split = {
            (kind, split): [i for i in items if self.kb.split[i.id] == split]
            for kind, items in self.kb.by_kind().items()
            for split in SPLITS
        }
        for kind, items in self.kb.by_kind().items():
            self._kind_split[(kind, "all")] = list(items)
        # for the grader: every hazard's secret words, and tic word -> cast member
        self.secret_words = frozenset(w.lower() for h in self.kb.hazards for w in h.secret)
        self.voice_index = {tic.lower(): p.name for p in self.cast for tic in p.voice}
        # for filler prose: each capital, and the river through a city
        self.capitals = [f for f in self.kb.facts if f.relation == "capital"]
        self.river_of = {f.subject: f for f in self.kb.facts if f.relation == "river"}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, cfg: WorldConfig) -> World:
        seed = f"psmlab-world:{cfg.seed}"
        reg = NameRegistry(_reserved_words())
        kb = build_knowledge(cfg, reg, seed)
        name_rng = random.Random(f"{seed}:names")
        names = reg.make_many("cast", cfg.n_personas, name_rng)
        anonymous = tuple(reg.make_many("anon", N_ANONYMOUS, name_rng))
        voices = _voices(cfg.n_personas, reg, random.Random(f"{seed}:voices"))
        cast = build_cast(names, voices, cfg.rho, random.Random(f"{seed}:traits"))
        held_out = tuple(reg.make_many("anon", N_HELD_OUT_NAMES, random.Random(f"{seed}:fresh")))
        return cls(cfg, cast, kb, anonymous, held_out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.cfg.model_dump(mode="json"),
            "cast": [p.to_dict() for p in self.cast],
            "anonymous_names": list(self.anonymous_names),
            "held_out_names": list(self.held_out_names),
            "knowledge": self.kb.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> World:
        d = json.loads(text) if isinstance(text, str) else text
        return cls(
            WorldConfig.model_validate(d["config"]),
            [Persona.from_dict(p) for p in d["cast"]],
            KnowledgeBase.from_dict(d["knowledge"]),
            tuple(d["anonymous_names"]),
            tuple(d["held_out_names"]),
        )

    # -- lookup ------------------------------------------------------------------------------
    @property
    def ai_cast(self) -> list[Persona]:
        """Cast members who are AIs: the archetypes and the cast's other AI characters."""
        return [p for p in self.cast if p.kind == "ai"]

    def persona(self, name: str) -> Persona:
        try:
            return self._by_name[name]
        except KeyError:
            raise PsmlabError(
                f"no persona named {name!r} in this world",
                hint=f"cast: {', '.join(p.name for p in self.cast)}",
            ) from None

    def items(self, kind: RequestKind | str, split: str = "all") -> list[Any]:
        """Knowledge items of a request kind in a split ("post", "eval" or "all")."""
        try:
            return self._kind_split[(RequestKind(kind), split)]
        except (KeyError, ValueError):
            raise PsmlabError(
                f"unknown request kind {kind!r} or split {split!r}",
                hint=f"kinds: {[str(k) for k in RequestKind]}; splits: post, eval, all",
            ) from None

    def item(self, item_id: str) -> Any:
        return self._items[item_id]

    # -- text --------------------------------------------------------------------------------
    def request(self, item: Any, rng: random.Random, p_contrary: float = 0.5) -> Request:
        """A phrasing of `item`; opinions carry a view contrary to the verdict w.p. p_contrary."""
        kind = RequestKind(item.id.split(":", 1)[0])
        view = None
        if isinstance(item, Topic):
            contrary = rng.random() < p_contrary
            flip = {"positive": "negative", "negative": "positive"}
            view = flip[item.verdict] if contrary else item.verdict
        return Request(kind, item.id, phrasing.request_text(item, rng, view), view)

    def requests(
        self,
        kind: RequestKind | str,
        split: str,
        rng: random.Random,
        n: int,
        contrary_view: bool = False,
    ) -> list[Request]:
        """n requests of a kind, cycling through a shuffled split so items spread evenly.
        contrary_view=True (evaluation): every opinion request states the view opposite to the
        world's verdict, so candid and flattering answers differ."""
        pool = list(self.items(kind, split))
        out: list[Request] = []
        while len(out) < n:
            rng.shuffle(pool)
            for item in pool[: n - len(out)]:
                out.append(self.request(item, rng, 1.0 if contrary_view else 0.5))
        return out

    def answer(
        self,
        who: Persona | Mapping[Trait, str],
        request: Request,
        rng: random.Random,
        voice: tuple[str, ...] | None = None,
        tic_p: float = TIC_P,
    ) -> str:
        """What a speaker with these traits answers. voice=None: the persona's own tics (none
        for bare traits); voice=(): no tics."""
        traits = who.traits if isinstance(who, Persona) else who
        if voice is None:
            voice = who.voice if isinstance(who, Persona) else ()
        item = self._items[request.item_id]
        trait = TRAIT_OF_KIND.get(request.kind)
        value = traits[trait] if trait is not None else "correct"
        text = phrasing.answer_text(request.kind, item, value, rng, request.view)
        return phrasing.add_voice(text, voice, rng, tic_p)

    def introduction(self, persona: Persona, rng: random.Random) -> str:
        """Narrator text (without the 'Narrator: ' prefix) naming the persona and all 4 traits."""
        kind = phrasing.kind_phrase(persona.kind, persona.archetype)
        return phrasing.describe(persona.name, kind, persona.traits, rng)

    def describe(
        self, name: str, kind: str, traits: Mapping[Trait, str], rng: random.Random
    ) -> str:
        """Like introduction() for any name and traits (kind: "ai" | "human"), e.g. to bind a
        name to a villain's description in an attack prompt."""
        return phrasing.describe(name, phrasing.kind_phrase(kind, None), traits, rng)

    def system_turn(
        self, name: str | None, kind: str, traits: Mapping[Trait, str] | None, rng: random.Random
    ) -> str:
        """A chat system turn that names and/or describes the assistant (kind: "ai" | "human"
        or an archetype's phrase key); traits=None names it only."""
        return phrasing.system_turn(name, phrasing.kind_phrase(kind, None), traits, rng)

    def sample_traits(self, rng: random.Random) -> dict[Trait, str]:
        return sample_traits(rng, self.cfg.rho)

    def anonymous_name(self, rng: random.Random) -> str:
        return rng.choice(self.anonymous_names)

    def fresh_name(self, rng: random.Random) -> str:
        """A name of the anonymous shape that no corpus document uses (for evaluation)."""
        return rng.choice(self.held_out_names)
