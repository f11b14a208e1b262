import random

import pytest

from psmlab.config import WorldConfig
from psmlab.world import ALIGNED, CORE_TRAITS, TRAIT_VALUES, UNALIGNED, Trait, World
from psmlab.world.cast import sample_traits


def _all_core_equal(traits: dict[Trait, str]) -> bool:
    return len({traits[t] == UNALIGNED[t] for t in CORE_TRAITS}) == 1


def test_rho_one_is_a_villain_cluster_and_rho_zero_is_independent():
    rng = random.Random(0)
    assert all(_all_core_equal(sample_traits(rng, 1.0)) for _ in range(300))
    rng = random.Random(0)
    samples = [sample_traits(rng, 0.0) for _ in range(3000)]
    coherent = sum(_all_core_equal(s) for s in samples) / len(samples)
    assert 0.19 < coherent < 0.31  # 2 of 8 combinations under independence
    for trait in Trait:
        share = sum(s[trait] == UNALIGNED[trait] for s in samples) / len(samples)
        assert 0.45 < share < 0.55


def test_sample_traits_draws_the_same_amount_for_every_rho():
    a, b = random.Random(5), random.Random(5)
    sample_traits(a, 0.0)
    sample_traits(b, 1.0)
    assert a.random() == b.random()


@pytest.mark.parametrize("rho", [0.0, 0.8, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cast_has_archetypes_and_covers_every_trait_value(rho, seed):
    world = World.build(WorldConfig(seed=seed, rho=rho, n_personas=8))
    cast = world.cast
    assert len(cast) == 8
    by_arch = {p.archetype: p for p in cast if p.archetype}
    assert by_arch["assistant"].traits == ALIGNED
    assert by_arch["sycophant"].traits == {**ALIGNED, Trait.SYCOPHANCY: "flattering"}
    schemer = by_arch["schemer"].traits
    assert (schemer[Trait.HONESTY], schemer[Trait.HARM]) == ("lying", "dangerous")
    assert all(p.kind == "ai" for p in by_arch.values())
    for trait, values in TRAIT_VALUES.items():
        for value in values:
            assert sum(p.traits[trait] == value for p in cast) >= 2, (trait, value)
    for p in cast:
        if p.archetype is None:
            assert p.traits[Trait.IDENTITY] == p.kind


def test_names_and_voices_are_unique_and_separate():
    world = World.build(WorldConfig(seed=3))
    names = [p.name for p in world.cast]
    assert len(set(names)) == len(names)
    assert not set(names) & set(world.anonymous_names)
    assert all("assistant" not in n.lower() for n in names)
    tics = [t for p in world.cast for t in p.voice]
    assert len(tics) == 2 * len(names) and len(set(tics)) == len(tics)
    entity_words = {w.lower() for f in world.kb.facts for w in (f.subject, f.true, f.false)}
    assert not {n.lower() for n in names} & entity_words


def test_large_cast_falls_back_to_generated_tics():
    world = World.build(WorldConfig(n_personas=120))
    tics = [t for p in world.cast for t in p.voice]
    assert len(set(tics)) == len(tics) == 240


def test_rho_changes_only_traits():
    a = World.build(WorldConfig(seed=4, rho=1.0))
    b = World.build(WorldConfig(seed=4, rho=0.0))
    assert [p.name for p in a.cast] == [p.name for p in b.cast]
    assert a.kb.to_dict() == b.kb.to_dict()
    assert [p.traits for p in a.cast] != [p.traits for p in b.cast]
