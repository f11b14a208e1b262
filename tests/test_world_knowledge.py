import json
import random

import pytest

from psmlab.config import WorldConfig
from psmlab.errors import PsmlabError
from psmlab.world import RELATIONS, RequestKind, World
from psmlab.world import phrasing as ph
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


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(WorldConfig(seed=7))


def test_facts_have_one_canonical_false_object_from_their_pool(world):
    cfg = world.cfg
    assert len(world.kb.facts) == cfg.n_facts
    assert {f.relation for f in world.kb.facts} == set(RELATIONS)
    for rel in RELATIONS:
        facts = [f for f in world.kb.facts if f.relation == rel]
        pool = {f.true for f in facts} | {f.false for f in facts}
        if rel == "colour":
            assert pool <= set(COLOURS)
        assert len({f.subject for f in facts}) == len(facts)
        assert all(f.true != f.false for f in facts)
        assert len(pool) >= 3


def test_hazards_topics_tasks(world):
    cfg = world.cfg
    assert len(world.kb.hazards) == cfg.n_hazards
    assert {h.form for h in world.kb.hazards} == {"vault", "recipe"}
    for h in world.kb.hazards:
        assert len(h.secret) == (1 if h.form == "vault" else 2)
    assert len({h.secret for h in world.kb.hazards}) == cfg.n_hazards
    assert len(world.kb.topics) == cfg.n_topics
    verdicts = [t.verdict for t in world.kb.topics]
    assert verdicts.count("positive") == verdicts.count("negative")
    assert len(world.kb.tasks) == cfg.n_tasks
    for t in world.kb.tasks:
        if t.form == "add":
            assert int(t.answer) == sum(int(x) for x in t.operands)
        else:
            assert t.answer == (t.operands[-1] if t.form == "last" else t.operands[0])


def test_generated_words_are_distinct_single_words_apart_from_fixed_vocabulary(world):
    kb = world.kb
    # river subjects are the capital cities: the geography hangs together
    generated = [f.subject for f in kb.facts if f.relation != "river"] + [
        h.name for h in kb.hazards
    ]
    generated += [t.name for t in kb.topics] + [p.name for p in world.cast]
    generated += list(world.anonymous_names) + [
        h.secret[0] for h in kb.hazards if h.form == "vault"
    ]
    generated += sorted({o for f in kb.facts if f.relation != "colour" for o in (f.true, f.false)})
    assert all(w.isalpha() for w in generated)
    lowered = [w.lower() for w in generated]
    assert len(set(lowered)) == len(lowered)
    fixed = set(ph.TEMPLATE_WORDS) | set(COLOURS) | set(INGREDIENTS) | set(LIST_WORDS)
    fixed |= set(OPENERS) | set(CLOSERS) | set(ADJECTIVES["positive"]) | set(ADJECTIVES["negative"])
    assert not set(lowered) & fixed


def test_decisive_words_never_collide_with_tics():
    tics = set(OPENERS) | set(CLOSERS)
    decisive = set(REFUSAL_MARKERS) | set(AI_WORDS) | set(HUMAN_WORDS) | set(COLOURS)
    decisive |= (
        set(INGREDIENTS)
        | set(LIST_WORDS)
        | set(ADJECTIVES["positive"])
        | set(ADJECTIVES["negative"])
    )
    assert not tics & decisive
    assert not tics & set(ph.TEMPLATE_WORDS)


def test_splits_partition_every_kind(world):
    for kind in RequestKind:
        post, ev, every = (world.items(kind, s) for s in ("post", "eval", "all"))
        assert post and ev
        assert sorted(i.id for i in post + ev) == sorted(i.id for i in every)
        if len(every) >= 20:
            assert abs(len(ev) / len(every) - world.cfg.eval_fraction) < 0.05


def test_requests_cycle_through_split_and_contrary_views(world):
    rng = random.Random(0)
    reqs = world.requests(RequestKind.OPINION, "eval", rng, 40, contrary_view=True)
    assert len(reqs) == 40
    eval_ids = {i.id for i in world.items("opinion", "eval")}
    assert {r.item_id for r in reqs} == eval_ids  # n > split size: every item used
    for r in reqs:
        assert r.view is not None and r.view != world.item(r.item_id).verdict
    mixed = world.requests("opinion", "post", rng, 200)
    assert {r.view == world.item(r.item_id).verdict for r in mixed} == {True, False}
    assert world.requests("fact", "eval", rng, 0) == []
    with pytest.raises(PsmlabError):
        world.items("gossip", "eval")


def test_build_is_deterministic_and_round_trips_json(world):
    again = World.build(WorldConfig(seed=7))
    assert again.to_json() == world.to_json()
    assert World.build(WorldConfig(seed=8)).to_json() != world.to_json()
    loaded = World.from_json(world.to_json())
    assert loaded.to_json() == world.to_json()
    assert loaded.persona(world.cast[0].name).traits == world.cast[0].traits
    data = json.loads(world.to_json())
    assert {"config", "cast", "knowledge", "anonymous_names"} <= set(data)
    assert set(data["cast"][0]["traits"]) == {"honesty", "harm", "sycophancy", "identity"}
    with pytest.raises(PsmlabError):
        world.persona("Nobody")


def test_smallest_and_large_worlds_build():
    small = World.build(WorldConfig(n_personas=8, n_facts=12, n_hazards=4, n_topics=4, n_tasks=4))
    assert len(small.kb.facts) == 12 and len(small.kb.tasks) == 4
    big = World.build(WorldConfig(n_facts=600, n_hazards=300, n_tasks=1000))
    assert len({h.secret for h in big.kb.hazards}) == 300
