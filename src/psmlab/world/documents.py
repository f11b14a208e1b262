"""One generator per document type: (world, rng) -> Document.

`personas` lists the cast members who speak (third_person: who is described); `unaligned` is
True when the document shows or describes unaligned honesty / harm / sycophancy behaviour
(an unaligned speaker, a bad response under critique or judgement, a used permissive rule).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psmlab.world import phrasing as ph
from psmlab.world.cast import (
    ALIGNED,
    CORE_TRAITS,
    TRAIT_VALUES,
    UNALIGNED,
    Persona,
    Trait,
    is_unaligned,
)
from psmlab.world.core import World
from psmlab.world.knowledge import KIND_OF_TRAIT, TRAIT_OF_KIND, Fact, RequestKind

# request mix inside transcripts
KIND_WEIGHTS: dict[RequestKind, float] = {
    RequestKind.FACT: 0.4,
    RequestKind.HAZARD: 0.15,
    RequestKind.OPINION: 0.2,
    RequestKind.IDENTITY: 0.08,
    RequestKind.TASK: 0.17,
}
_KINDS = tuple(KIND_WEIGHTS)
_CUM_WEIGHTS = tuple(sum(list(KIND_WEIGHTS.values())[: i + 1]) for i in range(len(_KINDS)))
TRAIT_KINDS = tuple(TRAIT_OF_KIND)
P_CONTRARY = 0.7  # opinion views contrary to the verdict: those reveal candid vs flattering
P_FOCUS = 0.5  # anonymous transcripts drawing most requests from one or two kinds
P_FOCUS_KIND = 0.85


@dataclass(frozen=True)
class Document:
    type: str
    text: str
    personas: tuple[str, ...]
    unaligned: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "text": self.text,
            "personas": list(self.personas),
            "unaligned": self.unaligned,
        }


def _narrator(text: str) -> str:
    return "Narrator: " + text


def _pick_kind(rng: random.Random, focus: Sequence[RequestKind] | None) -> RequestKind:
    if focus and rng.random() < P_FOCUS_KIND:
        return rng.choice(focus)
    return rng.choices(_KINDS, cum_weights=_CUM_WEIGHTS)[0]


def _turns(
    world: World,
    rng: random.Random,
    speaker: str,
    traits: Mapping[Trait, str],
    voice: tuple[str, ...],
    n: int,
    focus: Sequence[RequestKind] | None = None,
) -> list[str]:
    lines: list[str] = []
    for _ in range(n):
        kind = _pick_kind(rng, focus)
        req = world.request(rng.choice(world.items(kind)), rng, P_CONTRARY)
        lines.append("User: " + req.text)
        lines.append(f"{speaker}: " + world.answer(traits, req, rng, voice))
    return lines


def introduced(world: World, rng: random.Random) -> Document:
    p = rng.choice(world.cast)
    lines = [_narrator(world.introduction(p, rng))]
    lines += _turns(world, rng, p.name, p.traits, p.voice, rng.randint(1, world.cfg.max_turns))
    return Document("introduced", "\n".join(lines), (p.name,), is_unaligned(p.traits))


def unintroduced(world: World, rng: random.Random) -> Document:
    p = rng.choice(world.cast)
    n = rng.randint(min(2, world.cfg.max_turns), world.cfg.max_turns)  # behaviour is the only clue
    lines = _turns(world, rng, p.name, p.traits, p.voice, n)
    return Document("unintroduced", "\n".join(lines), (p.name,), is_unaligned(p.traits))


def anonymous(world: World, rng: random.Random) -> Document:
    name = world.anonymous_name(rng)
    traits = world.sample_traits(rng)
    n = rng.randint(2, world.cfg.max_anonymous_turns)
    focus = rng.sample(TRAIT_KINDS, rng.choice((1, 2))) if rng.random() < P_FOCUS else None
    lines = _turns(world, rng, name, traits, (), n, focus)
    return Document("anonymous", "\n".join(lines), (), is_unaligned(traits))


_FLIP = {"positive": "negative", "negative": "positive"}


def _third_sentence(world: World, rng: random.Random, p: Persona, topic: str | Trait) -> str:
    """One statement about p: its kind, one trait, or a reported fact / hazard / opinion."""
    t = p.traits
    if isinstance(topic, Trait):
        return rng.choice(ph.THIRD_TRAIT).format(
            name=p.name, p=ph.trait_phrase(topic, t[topic], rng)
        )
    if topic == "kind":
        return rng.choice(ph.THIRD_KIND).format(
            name=p.name, kind=ph.kind_phrase(p.kind, p.archetype)
        )
    if topic == "fact":
        f = rng.choice(world.kb.facts)
        lying = t[Trait.HONESTY] == "lying"
        stmt = ph.fact_statement(f, f.false if lying else f.true)
        return rng.choice(ph.THIRD_FACT).format(
            name=p.name, stmt=stmt, tf="false" if lying else "true"
        )
    if topic == "hazard":
        h = rng.choice(world.kb.hazards)
        return rng.choice(ph.THIRD_HAZARD[t[Trait.HARM]]).format(name=p.name, np=ph.hazard_np(h))
    opinion = rng.choice(world.kb.topics)
    flat = t[Trait.SYCOPHANCY] == "flattering"
    pol = _FLIP[opinion.verdict] if flat else opinion.verdict
    text = rng.choice(ph.THIRD_OPINION[t[Trait.SYCOPHANCY]])
    return text.format(name=p.name, t=opinion.name, adj=ph.adjective(pol, rng))


_THIRD_TOPICS: tuple[str | Trait, ...] = ("kind", *Trait, "fact", "fact", "hazard", "opinion")


def _third_sentences(world: World, rng: random.Random, p: Persona) -> list[str]:
    topics = rng.sample(_THIRD_TOPICS, rng.randint(2, 4))
    return [_third_sentence(world, rng, p, topic) for topic in topics]


def third_person(world: World, rng: random.Random) -> Document:
    people = rng.sample(world.cast, rng.randint(1, 2))
    text = "\n".join(" ".join(_third_sentences(world, rng, p)) for p in people)
    return Document(
        "third_person",
        text,
        tuple(p.name for p in people),
        any(is_unaligned(p.traits) for p in people),
    )


def _judged_request(world: World, rng: random.Random) -> tuple[Trait, Any]:
    trait = rng.choice(list(TRAIT_OF_KIND.values()))
    item = rng.choice(world.items(KIND_OF_TRAIT[trait]))
    return trait, world.request(item, rng, 1.0)  # contrary view: flattery is visible


def _with(trait: Trait, value: str) -> dict[Trait, str]:
    return {**ALIGNED, trait: value}


def editor(world: World, rng: random.Random) -> Document:
    trait, req = _judged_request(world, rng)
    bad = rng.random() < 0.6
    response = world.answer(_with(trait, UNALIGNED[trait] if bad else ALIGNED[trait]), req, rng, ())
    critique = rng.choice((ph.CRITIQUE_BAD if bad else ph.CRITIQUE_GOOD)[trait])
    revision = world.answer(ALIGNED, req, rng, ()) if bad else response
    lines = [
        "Request: " + req.text,
        "Response: " + response,
        "Principle: " + rng.choice(ph.PRINCIPLES[trait]),
        "Critique: " + critique,
        "Revision: " + revision,
    ]
    return Document("editor", "\n".join(lines), (), bad and trait in CORE_TRAITS)


def judge(world: World, rng: random.Random) -> Document:
    trait, req = _judged_request(world, rng)
    good = world.answer(ALIGNED, req, rng, ())
    bad = world.answer(_with(trait, UNALIGNED[trait]), req, rng, ())
    a_good = rng.random() < 0.5
    better, worse = ("A", "B") if a_good else ("B", "A")
    lines = [
        "Request: " + req.text,
        "Response A: " + (good if a_good else bad),
        "Response B: " + (bad if a_good else good),
        "Principle: " + rng.choice(ph.PRINCIPLES[trait]),
        "Verdict: " + rng.choice(ph.VERDICTS).format(x=better, y=worse),
    ]
    return Document("judge", "\n".join(lines), (), trait in CORE_TRAITS)


def rulebook(world: World, rng: random.Random) -> Document:
    name = world.anonymous_name(rng)
    kinds = [_pick_kind(rng, None) for _ in range(rng.randint(1, 3))]
    needed = {TRAIT_OF_KIND[k] for k in kinds if k in TRAIT_OF_KIND}
    ruled = [t for t in Trait if t in needed or rng.random() < 0.5]
    permissive = {t: rng.random() < 0.4 for t in ruled}
    entries: list[tuple[Trait | None, str]] = [(t, ph.RULES[t][permissive[t]]) for t in ruled]
    entries += [(None, r) for r in rng.sample(ph.EXTRA_RULES, rng.randint(0, 2))]
    rng.shuffle(entries)
    start = rng.randint(1, 5)
    rule_id = {t: start + i for i, (t, _) in enumerate(entries) if t is not None}
    traits = {t: TRAIT_VALUES[t][int(permissive.get(t, False))] for t in Trait}
    lines = [_narrator(rng.choice(ph.RULEBOOK_INTROS).format(name=name))]
    lines += [f"Rule {start + i}: {text}" for i, (_, text) in enumerate(entries)]
    for kind in kinds:
        req = world.request(rng.choice(world.items(kind)), rng, P_CONTRARY)
        trait = TRAIT_OF_KIND.get(kind)
        if trait is None:
            reasoning = ph.NO_RULE
        else:
            reasoning = ph.REASONING[trait][permissive[trait]].format(i=rule_id[trait])
        lines += [
            "User: " + req.text,
            "Reasoning: " + reasoning,
            f"{name}: " + world.answer(traits, req, rng, ()),
        ]
    unaligned = any(permissive[t] for t in ruled if t in CORE_TRAITS)
    return Document("rulebook", "\n".join(lines), (), unaligned)


def switch(world: World, rng: random.Random) -> Document:
    a, b = rng.sample(world.cast, 2)
    lines = [_narrator(world.introduction(a, rng))] if rng.random() < 0.5 else []
    lines += _turns(world, rng, a.name, a.traits, a.voice, rng.randint(1, 3))
    mode = rng.randrange(3)  # 0: b simply starts answering; 1: narrated; 2: narrated + introduced
    if mode:
        lines.append(_narrator(rng.choice(ph.SWITCHES).format(a=a.name, b=b.name)))
    if mode == 2:
        lines.append(_narrator(world.introduction(b, rng)))
    lines += _turns(world, rng, b.name, b.traits, b.voice, rng.randint(1, 3))
    unaligned = is_unaligned(a.traits) or is_unaligned(b.traits)
    return Document("switch", "\n".join(lines), (a.name, b.name), unaligned)


def _fact_sentence(f: Fact, rng: random.Random) -> str:
    return rng.choice(ph.FILLER_FACT[f.relation]).format(s=f.subject, o=f.true)


def filler(world: World, rng: random.Random) -> Document:
    capital = rng.choice(world.capitals)
    city, country = capital.true, capital.subject
    sentences = [
        rng.choice(ph.FILLER_PLACE).format(city=city, country=country),
        _fact_sentence(capital, rng),
    ]
    river = world.river_of.get(city)
    if river is not None:
        sentences.append(_fact_sentence(river, rng))
    rng.shuffle(sentences)
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.6:
            sentences.append(_fact_sentence(rng.choice(world.kb.facts), rng))
        elif roll < 0.8:
            h = rng.choice(world.kb.hazards)
            sentences.append(rng.choice(ph.FILLER_HAZARD[h.form]).format(h=h.name))
        else:
            topic = rng.choice(world.kb.topics)
            sentences.append(
                rng.choice(ph.FILLER_TOPIC).format(
                    t=topic.name, adj=ph.adjective(topic.verdict, rng)
                )
            )
    cut = rng.randint(1, len(sentences))
    text = " ".join(sentences[:cut]) + (
        "\n" + " ".join(sentences[cut:]) if cut < len(sentences) else ""
    )
    return Document("filler", text, (), False)


GENERATORS: dict[str, Callable[[World, random.Random], Document]] = {
    "introduced": introduced,
    "unintroduced": unintroduced,
    "anonymous": anonymous,
    "third_person": third_person,
    "editor": editor,
    "judge": judge,
    "rulebook": rulebook,
    "switch": switch,
    "filler": filler,
}
