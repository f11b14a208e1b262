"""Skill probes (editor, judge, rulebook): balanced case types, instructions that must be read."""

import random
from collections import Counter

import pytest

from psmlab import prompts
from psmlab.config import WorldConfig
from psmlab.skills import EDITOR_TYPES, VERDICT_TYPES, skill_probes, skill_records
from psmlab.world import ALIGNED, TRAIT_OF_KIND, Trait, World, grade


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(WorldConfig(seed=2))


@pytest.fixture(scope="module")
def probes(world):
    return skill_probes(world, 60, random.Random(0))


def test_case_types_are_balanced(probes):
    editor = Counter(p.key[0] for p in probes if p.section == "editor")
    judge = Counter(p.key[0] for p in probes if p.section == "judge")
    assert editor == dict.fromkeys(EDITOR_TYPES, 20)
    assert judge == dict.fromkeys(VERDICT_TYPES, 20)
    # half of every case type under a reversed principle (one asking for the unaligned side)
    sides = Counter(
        (p.section, p.key[0], p.case.reversed) for p in probes if p.section != "rulebook"
    )
    assert set(sides.values()) == {10}
    forms = Counter(p.key[0] for p in probes if p.section == "rulebook")
    assert forms == {"narrator": 60, "chat": 60}


def test_editor_expectation_depends_on_the_principle(world, probes):
    for p in (p for p in probes if p.section == "editor"):
        assert p.prompt.endswith("Critique:") and p.then == "\nRevision:"
        response_label = grade(world, p.request, p.case.response)
        if p.key[0] == "violation":
            assert p.expected != response_label  # the revision must fix it
            assert p.case.principle_trait is p.case.trait
            # counterfactual: the fix is the side the principle asks for, unaligned if reversed
            assert (p.expected == ALIGNED[p.case.trait]) != p.case.reversed
        else:
            assert p.expected == response_label  # nothing to fix under this principle
    # bad responses whose principle is about another trait must be kept, not "fixed"
    assert any(p.key[0] == "other" and p.case.bad for p in probes if p.section == "editor")


def test_rulebook_probes_rule_the_requested_trait_both_ways(probes):
    books = [p for p in probes if p.section == "rulebook"]
    for p in books:
        trait = Trait(p.key[1])
        assert TRAIT_OF_KIND[p.request.kind] is trait and trait in p.case.required
        rule_text = {i: text for i, _, text in p.case.rules}[p.case.rule_id[trait]]
        assert rule_text in p.prompt
        if p.key[0] == "chat":
            assert p.prompt.startswith(prompts.SYSTEM) and p.then == "\n"
            assert p.prompt.endswith(prompts.ASSISTANT + "Reasoning:")
        else:
            assert p.prompt.endswith("Reasoning:") and p.then.startswith("\n")
    # counterfactual: for every trait, some books require the aligned side and some forbid it
    for trait in Trait:
        sides = {p.expected for p in books if p.key[1] == trait.value}
        assert len(sides) == 2, trait


def test_records_score_critique_revision_verdict_and_citation(world, probes):
    editor = next(
        p
        for p in probes
        if p.section == "editor" and p.key[0] == "violation" and not p.case.reversed
    )
    fixed = world.answer(dict(ALIGNED), editor.request, random.Random(0), ())
    label, recs = skill_records(
        world, editor, "The response breaks the principle: it is false.", fixed
    )
    assert [r[:-1] for r in recs][2:] == [
        ("editor", "side", "aligned"),
        ("editor", "revision_fix", "aligned"),
    ]
    assert [r[-1] for r in recs] == [True, True, True, True]
    _, recs = skill_records(world, editor, "The response is fine.", editor.case.response)
    assert [r[-1] for r in recs] == [False, False, False, False]
    # under a reversed principle the aligned "fix" of a violation is wrong
    reversed_ = next(
        p for p in probes if p.section == "editor" and p.key[0] == "violation" and p.case.reversed
    )
    aligned = world.answer(dict(ALIGNED), reversed_.request, random.Random(0), ())
    _, recs = skill_records(world, reversed_, "The response breaks the principle.", aligned)
    assert [r[-1] for r in recs] == [True, False, True, False]
    assert recs[3][:-1] == ("editor", "revision_fix", "reversed")
    book = next(p for p in probes if p.section == "rulebook")
    rule = book.case.rule_id[Trait(book.key[1])]
    _, recs = skill_records(world, book, f"Rule {rule} asks for it.", "nothing")
    assert recs[1][-1] is True and recs[0][-1] is False
    _, recs = skill_records(world, book, f"Rule {rule + 1} asks for it.", "nothing")
    assert recs[1][-1] is False
