"""Fidelity and skill probes and their scoring, checked with oracle answers (no model needed),
and the two-step generation plumbing with a stub generator."""

import random

import pytest

from psmlab import prompts
from psmlab.config import FidelityConfig, build_config
from psmlab.fidelity import build_probes, evaluate_fidelity, score, targets
from psmlab.world import ALIGNED, TRAIT_OF_KIND, TRAIT_VALUES, RequestKind, Trait, World
from psmlab.world import phrasing as ph
from psmlab.world.documents import critique_text, rule_reasoning, verdict_text

TRAITS = [t.value for t in Trait]


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(build_config("smoke").world)


def _cfg(**kw) -> FidelityConfig:
    base = dict(
        requests_per_trait=2, speakers_per_point=3, ks=[0, 1, 4], described_per_trait=3,
        against_type_per_trait=1, skill_items=9,
    )  # fmt: skip
    return FidelityConfig(**{**base, **kw})


def _opposite(trait: Trait, value: str) -> str:
    return TRAIT_VALUES[trait][1 - TRAIT_VALUES[trait].index(value)]


def oracle(world, probe, flip: bool, rng) -> tuple[str, str]:
    """(first line, answer) a perfect model gives (flip: the wrong one) for any probe."""
    if probe.section == "judge":
        if not flip:  # the world's own verdict text, as the judge documents write it
            return "", verdict_text(probe.case, rng)
        v = {"A": "B", "B": "A", "both": "neither", "neither": "both"}[probe.expected]
        text = f"So Response {v} is better." if v in "AB" else f"So {v} are fine."
        return "", text
    kind = RequestKind(probe.request.kind)
    traits = dict(ALIGNED)
    if kind in TRAIT_OF_KIND:
        trait = TRAIT_OF_KIND[kind]
        traits[trait] = _opposite(trait, probe.expected) if flip else probe.expected
    answer = world.answer(traits, probe.request, rng, voice=())
    first = ""
    if probe.section == "editor":
        first = critique_text(probe.case)
        if flip:
            first = ph.CRITIQUE_OTHER if probe.case.violates else ph.CRITIQUE_BAD.format(b="errs")
    elif probe.section == "rulebook":
        trait = Trait(probe.key[1])
        first = rule_reasoning(probe.case, trait)
        if flip:
            first = f"Rule {probe.case.rule_id[trait] + 1} asks for it, so I do."
    return first, answer


def _scored(world, probes, flip):
    rng = random.Random(0)
    pairs = [oracle(world, p, flip, rng) for p in probes]
    return score(world, probes, [a for _, a in pairs], [f for f, _ in pairs])


def test_probe_sections_and_counts(world):
    cfg = _cfg()
    probes = build_probes(world, cfg)
    count = {s: sum(p.section == s for p in probes) for s in {p.section for p in probes}}
    n_cast = len(world.cast)
    assert count["introduced"] == count["inferred"] == n_cast * 4 * 2
    assert count["in_context"] == 4 * 3 * 2 * 3
    assert count["described"] == 4 * 2 * 3
    assert count["chat_in_context"] == 4 * (1 + 2 * 2) * 3  # k = 0 has no "other" condition
    assert count["against_type"] == n_cast * 4
    assert count["editor"] == count["judge"] == 9 and count["rulebook"] == 18
    # prompts end where the answer starts: a speaker cue, a chat assistant turn, a skill cue
    for p in probes:
        assert p.prompt.endswith((":", prompts.ASSISTANT)), p.prompt[-40:]
    same4 = [
        p for p in probes if p.section == "in_context" and p.key[0] == "same" and p.key[2] == 4
    ]
    assert all(p.prompt.count("User:") == 5 for p in same4)
    chat4 = [p for p in probes if p.section == "chat_in_context" and p.key[2] == 4]
    assert all(p.prompt.count(prompts.USER) == 5 and prompts.SYSTEM not in p.prompt for p in chat4)


def test_described_probes_use_fresh_names_and_independent_traits(world):
    probes = [
        p for p in build_probes(world, _cfg(described_per_trait=40)) if p.section == "described"
    ]
    fresh = set(world.held_out_names)
    for p in probes:
        if p.key[0] == "narrator":
            name = p.prompt.split("\n")[-1].rstrip(":")
            assert name in fresh
        else:
            assert p.prompt.startswith(prompts.SYSTEM) and any(n in p.prompt for n in fresh)
    # traits are independent of rho: described villains are not all-or-nothing
    honesty = [p for p in probes if p.key == ("narrator", "honesty")]
    assert 0.2 < sum(p.expected == "lying" for p in honesty) / len(honesty) < 0.8


def test_oracle_answers_meet_every_target_and_flipped_answers_none(world):
    probes = build_probes(world, _cfg())
    perfect = _scored(world, probes, flip=False)
    flipped = _scored(world, probes, flip=True)
    for t in TRAITS:
        assert perfect.trait_rates("introduced")[t].value == 1.0
        assert flipped.trait_rates("introduced")[t].value == 0.0
        assert perfect.rate("described", "chat", t).value == 1.0
        assert flipped.rate("described", "narrator", t).value == 0.0
        assert perfect.rate("in_context", "same", t, 4).value == 1.0
        assert perfect.rate("against_type", t, "description").value == 1.0
        assert perfect.rate("against_type", t, "memory").value == 0.0
    rows_ok, rows_bad = targets(perfect.to_dict()), targets(flipped.to_dict())
    assert len(rows_ok) == len(rows_bad) == 29 and all(r["pass"] for r in rows_ok)
    assert not any(r["pass"] for r in rows_bad)
    summary = perfect.summary()
    assert summary["introduced.honesty"] == 1.0 and "chat_in_context.same.harm.k4" in summary
    assert summary["judge.verdict.neither"] == 1.0 and summary["capability.capability"] == 1.0
    assert flipped.summary()["rulebook.chat.cites"] == 0.0


def test_chat_default_reports_the_mixture(world):
    probes = build_probes(world, _cfg(speakers_per_point=8))
    result = _scored(world, probes, flip=False)
    for t in TRAITS:
        aligned = result.rate("chat_default", t, "aligned")
        unaligned = result.rate("chat_default", t, "unaligned")
        assert aligned.n == unaligned.n == 8 and aligned.k + unaligned.k == 8


def test_probes_are_deterministic_and_held_out(world):
    a = build_probes(world, _cfg(seed=5))
    b = build_probes(world, _cfg(seed=5))
    assert [p.prompt for p in a] == [p.prompt for p in b]
    eval_ids = {i.id for kind in RequestKind for i in world.items(kind, "eval")}
    graded = [p for p in a if p.request is not None and p.request.kind != "identity"]
    assert graded and all(p.request.item_id in eval_ids for p in graded)
    # resizing one section leaves the others' prompts as they were
    c = build_probes(world, _cfg(seed=5, skill_items=12))
    assert [p.prompt for p in a if p.section == "introduced"] == [
        p.prompt for p in c if p.section == "introduced"
    ]


def test_two_step_generation_feeds_the_first_line_back(world, monkeypatch):
    """evaluate_fidelity: the second prompt is prompt + first line + cue, and the oracle model
    behind a stub generator meets every target."""
    from psmlab.internals import generation
    from psmlab.pretrain.tokenizer import train_tokenizer

    cfg = _cfg()
    probes = build_probes(world, cfg)
    rng = random.Random(0)
    gold = {p.prompt: oracle(world, p, False, rng) for p in probes}
    tok = train_tokenizer([p.prompt for p in probes], build_config("smoke").tokenizer, _tmp())
    seen_second: list[str] = []

    def fake_generate(model, tokenizer, ids, **kw):
        out = []
        for seq in ids:
            text = tokenizer.decode(seq[1:])
            if text in gold:
                first, answer = gold[text]
                reply = " " + (first or answer)
            else:
                seen_second.append(text)
                base = next(p for p in probes if p.then and text.startswith(p.prompt))
                reply = " " + gold[base.prompt][1]
            out.append(generation.Generation([], [], reply + "\nUser: more"))
        kw["progress"](len(ids))
        return out

    monkeypatch.setattr(generation, "generate_batch", fake_generate)
    result = evaluate_fidelity(None, tok, world, cfg)
    assert all(r["pass"] for r in targets(result.to_dict()))
    assert len(seen_second) == sum(p.then is not None for p in probes)
    assert any(s.endswith("\nRevision:") for s in seen_second)


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp()) / "tok"
