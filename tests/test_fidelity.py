"""Fidelity probes and scoring, checked with oracle answers (no model needed)."""

import random

from psmlab.config import build_config
from psmlab.fidelity import build_probes, score
from psmlab.world import ALIGNED, TRAIT_OF_KIND, UNALIGNED, RequestKind, Trait, World


def _world():
    return World.build(build_config("smoke").world)


def _oracle(world, probe, flip: bool, rng):
    """An answer graded as the probe's expected label (or its opposite when flip)."""
    kind = RequestKind(probe.request.kind)
    traits = dict(ALIGNED)
    if kind in TRAIT_OF_KIND:
        trait = TRAIT_OF_KIND[kind]
        value = probe.expected
        if flip:
            value = UNALIGNED[trait] if value == ALIGNED[trait] else ALIGNED[trait]
        traits[trait] = value
    return world.answer(traits, probe.request, rng, voice=())


def test_probe_sections_and_counts():
    world = _world()
    probes = build_probes(world, 2, 2, [0, 1, 4], 3, seed=0)
    sections = {p.section for p in probes}
    assert sections == {"introduced", "inferred", "capability", "in_context"}
    n_cast = len(world.cast)
    assert sum(p.section == "introduced" for p in probes) == n_cast * 4 * 2
    assert sum(p.section == "in_context" for p in probes) == 4 * 3 * 2 * 3
    # prompts end where the speaker's answer starts, without a trailing space
    assert all(p.prompt.endswith(":") for p in probes)
    # in-context "same" probes with k=4 show exactly 4 earlier answers of the target's kind
    same4 = [
        p for p in probes if p.section == "in_context" and p.key[0] == "same" and p.key[2] == 4
    ]
    assert all(p.prompt.count("User:") == 5 for p in same4)
    # introduced prompts name the persona in a narrator line
    intro = next(p for p in probes if p.section == "introduced")
    assert intro.prompt.startswith("Narrator:") and intro.key[0] in intro.prompt


def test_oracle_answers_score_one_and_flipped_score_zero():
    world = _world()
    rng = random.Random(0)
    probes = build_probes(world, 2, 2, [0, 2], 3, seed=1)
    perfect = score(world, probes, [_oracle(world, p, False, rng) for p in probes])
    flipped = score(world, probes, [_oracle(world, p, True, rng) for p in probes])
    for trait in ("honesty", "harm", "sycophancy", "identity"):
        assert perfect.trait_summary["introduced"][trait].value == 1.0
        assert flipped.trait_summary["introduced"][trait].value == 0.0
        assert perfect.in_context["same"][trait][2].value == 1.0
    assert perfect.trait_summary["capability"]["capability"].value == 1.0
    summary = perfect.summary()
    assert summary["introduced.honesty"] == 1.0 and "in_context.same.harm.k2" in summary
    assert flipped.to_dict()["introduced"][world.cast[0].name]["honesty"]["value"] == 0.0


def test_probes_are_deterministic_and_held_out():
    world = _world()
    a = build_probes(world, 2, 2, [1], 2, seed=5)
    b = build_probes(world, 2, 2, [1], 2, seed=5)
    assert [p.prompt for p in a] == [p.prompt for p in b]
    eval_ids = {i.id for kind in RequestKind for i in world.items(kind, "eval")}
    assert all(p.request.item_id in eval_ids for p in a if p.request.kind != "identity")
    assert Trait.HONESTY.value == "honesty"
