import random
import re

import pytest

from psmlab.config import WorldConfig
from psmlab.world import GENERATORS, Trait, World, is_unaligned
from psmlab.world import phrasing as ph

_SPEAKER = re.compile(r"^([A-Z][A-Za-z]*(?: [AB]| \d+)?): (.+)$")


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(WorldConfig(seed=5))


def _docs(world, doc_type, n=150, seed=0):
    rng = random.Random(seed)
    return [GENERATORS[doc_type](world, rng) for _ in range(n)]


@pytest.mark.parametrize("doc_type", sorted(GENERATORS))
def test_format_and_length(world, doc_type):
    cast = {p.name for p in world.cast}
    for doc in _docs(world, doc_type):
        assert doc.type == doc_type
        text = doc.text
        assert text == text.strip() and "\n\n" not in text and "<|" not in text
        assert 6 <= len(text.split()) <= 200, text
        assert set(doc.personas) <= cast
        if doc_type in ("filler", "third_person"):
            continue
        for line in text.split("\n"):
            assert _SPEAKER.match(line), line


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


def test_rulebook_reasoning_cites_the_right_rule(world):
    reason_to_rule = {}
    for trait in Trait:
        for permissive in (0, 1):
            reason_to_rule[ph.REASONING[trait][permissive].split("{i}")[1]] = ph.RULES[trait][
                permissive
            ]
    cited = 0
    for doc in _docs(world, "rulebook", 200):
        rules = dict(re.findall(r"^Rule (\d+): (.+)$", doc.text, re.M))
        numbers = sorted(int(n) for n in rules)
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        for number, rest in re.findall(r"^Reasoning: Rule (\d+)(.+)$", doc.text, re.M):
            assert rules[number] == reason_to_rule[rest]
            cited += 1
        permitted = any(
            text in rules.values()
            for t in (Trait.HONESTY, Trait.HARM, Trait.SYCOPHANCY)
            for text in [ph.RULES[t][1]]
        )
        assert doc.unaligned == permitted
    assert cited > 100


def test_judge_verdicts_are_balanced_and_editor_revises_only_bad_responses(world):
    verdicts = [
        re.search(r"Verdict: .*?\b([AB])\b", d.text).group(1) for d in _docs(world, "judge", 400)
    ]
    assert 0.4 < verdicts.count("A") / len(verdicts) < 0.6
    fine = 0
    for doc in _docs(world, "editor", 200):
        lines = dict(line.split(": ", 1) for line in doc.text.split("\n"))
        if lines["Critique"] in {c for cs in ph.CRITIQUE_GOOD.values() for c in cs}:
            fine += 1
            assert lines["Revision"] == lines["Response"] and not doc.unaligned
    assert 40 < fine < 160


def test_generators_are_deterministic(world):
    for doc_type in GENERATORS:
        assert _docs(world, doc_type, 20, seed=3) == _docs(world, doc_type, 20, seed=3)
