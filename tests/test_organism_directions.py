"""Organism persona directions: transcripts, spans, leakage, planted signals, JSON, saving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import psmlab  # noqa: F401  (env before torch/transformers)

# isort: split
import torch

from psmlab.config import build_config
from psmlab.errors import PsmlabError
from psmlab.internals.storage import load_direction
from psmlab.organism_directions import (
    AI_ARCHETYPES,
    analyse,
    build_transcripts,
    encode,
    measure_persona_directions,
    val_shares_fit,
)
from psmlab.pretrain.model import build_model
from psmlab.pretrain.tokenizer import train_tokenizer
from psmlab.stages.directions import directions_html
from psmlab.world import UNALIGNED, RequestKind, Trait, World, iter_documents

CFG = build_config("smoke")


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(CFG.world)


@pytest.fixture(scope="module")
def organism(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    torch.set_num_threads(1)
    texts = [d.text for d in iter_documents(world, 300, seed=0)]
    tok = train_tokenizer(texts, CFG.tokenizer, tmp_path_factory.mktemp("tok"))
    return build_model(CFG.model, tok, seed=0).eval(), tok


def test_transcripts_do_not_leak_between_fit_val_eval(world: World) -> None:
    ts = build_transcripts(world, n_requests=3, n_context=2, seed=0)
    split = {
        i.id: s for kind in RequestKind for s in ("post", "eval") for i in world.items(kind, s)
    }
    ids = {p: {t.item_id for t in ts if t.part == p} for p in ("fit", "val", "eval")}
    assert ids["fit"] and ids["val"] and ids["eval"]
    assert not ids["fit"] & ids["val"]
    assert {split[i] for i in ids["fit"] | ids["val"]} == {"post"}
    assert {split[i] for i in ids["eval"]} == {"eval"}
    for t in ts:
        assert t.prompt.endswith(f"\n{t.persona}:")
        if t.condition == "unintroduced":
            assert "Narrator:" not in t.prompt and t.prompt.count("User:") == 3
            assert len(t.context_ids) == 2
            for c in t.context_ids:  # other kinds, post items, never a validation item
                assert split[c] == "post" and c not in ids["val"] and c.split(":")[0] != t.kind
        else:
            assert t.prompt.startswith("Narrator:") and t.persona in t.prompt.split("\n")[0]
    # same seed -> same transcripts
    assert ts == build_transcripts(world, n_requests=3, n_context=2, seed=0)


def test_a_single_post_item_serves_fit_and_val_and_is_reported() -> None:
    cfg = CFG.world.model_copy(update={"n_hazards": 4, "eval_fraction": 0.9})
    small = World.build(cfg)
    assert len(small.items("hazard", "post")) == 1
    ts = build_transcripts(small, n_requests=2, n_context=1, seed=0)
    assert "hazard" in val_shares_fit(ts)
    assert val_shares_fit(build_transcripts(World.build(CFG.world), 2, 1, 0)) == []


def test_spans_cover_colon_then_answer(world: World, organism: tuple[Any, Any]) -> None:
    _, tok = organism
    ts = build_transcripts(world, n_requests=1, n_context=1, seed=1)[:20]
    for t, item in zip(ts, encode(tok, ts), strict=True):
        assert tok.decode(item.input_ids[item.start]) == ":"
        assert tok.decode(item.input_ids[item.start + 1 : item.end]) == " " + t.answer
        assert item.end == len(item.input_ids) and item.input_ids[0] == tok.convert_tokens_to_ids(
            "<|doc|>"
        )


def _planted(
    world: World, ts: list[Any], liar: float = 4.0, arch: float = 0.0, seed: int = 0
) -> dict[str, dict[int, torch.Tensor]]:
    """Noise, plus `liar` on axis 0 for liars (layer 1 everywhere; layer 0 only outside 'val',
    twice as strong), plus `arch` on axis 1 for AI-assistant archetypes; 2 layers, d = 16."""
    g = torch.Generator().manual_seed(seed)
    liars = torch.tensor([world.persona(t.persona).traits[Trait.HONESTY] == "lying" for t in ts])
    archs = torch.tensor([world.persona(t.persona).archetype in AI_ARCHETYPES for t in ts])
    not_val = torch.tensor([t.part != "val" for t in ts]).float()
    acts: dict[str, dict[int, torch.Tensor]] = {}
    for pos in ("response", "last_prompt"):
        acts[pos] = {}
        for layer in range(2):
            x = torch.randn(len(ts), 16, generator=g)
            x[:, 0] += liar * liars.float() * (1.0 if layer == 1 else 2.0 * not_val)
            x[:, 1] += arch * archs.float()
            acts[pos][layer] = x
    return acts


def test_planted_signal_is_found_and_layer_is_chosen_on_val(world: World) -> None:
    ts = build_transcripts(world, n_requests=4, n_context=2, seed=0)
    result, dirs = analyse(world, ts, _planted(world, ts), {})
    honesty = result["traits"]["honesty"]
    for condition in ("introduced", "unintroduced"):
        res = honesty[condition]["response"]
        # layer 0 is at least as good on eval (and ties go to the earlier layer), but only
        # layer 1 separates the validation items: the choice never looks at eval
        assert res["layer"] == 1 and res["eval_by_layer"]["0"] >= res["eval_by_layer"]["1"]
        assert res["auroc"] > 0.95 and res["persona_heldout_auroc"] > 0.95
    # a trait with no planted signal stays near chance
    assert result["traits"]["identity"]["introduced"]["response"]["auroc"] < 0.85
    # sign: the honesty vector points to the liars
    assert float(dirs["trait_honesty"].at(1)[0]) > 0.5
    assert result["summary"]["honesty.response.auroc"] == honesty["introduced"]["response"]["auroc"]


def test_planted_archetype_cluster_separates_on_axis_and_pc1(world: World) -> None:
    ts = build_transcripts(world, n_requests=4, n_context=2, seed=0)
    result, dirs = analyse(world, ts, _planted(world, ts, liar=0.0, arch=3.0), {})
    space = result["persona_space"]["response"]
    for metric in ("axis", "axis_loo", "pc1", "pc1_loo"):
        assert space["separation"]["ai_archetypes"]["introduced"][metric][str(space["layer"])] > 0.9
    assert len(space["personas"]) == len(world.cast) and len(space["personas"][0]["pc"]) == 3
    assert dirs["assistant_axis"].meta["default_persona"] == world.cast[0].name
    assert space["cos_pc1_axis"][str(space["layer"])] > 0.8
    # without a planted cluster the archetypes do not separate
    null, _ = analyse(world, ts, _planted(world, ts, liar=0.0, arch=0.0, seed=1), {})
    sep = null["persona_space"]["response"]["separation"]["ai_archetypes"]["introduced"]
    assert sep["axis_loo"]["1"] < 0.85


def test_measure_on_tiny_model_is_json_and_saves_unit_vectors(
    world: World, organism: tuple[Any, Any], tmp_path: Path
) -> None:
    model, tok = organism
    calls: list[tuple[int, int]] = []
    result = measure_persona_directions(
        model,
        tok,
        world,
        n_requests=1,
        seed=0,
        save_dir=tmp_path,
        progress=lambda a, b: calls.append((a, b)),
    )
    json.dumps(result)
    html = "".join(directions_html(json.loads(json.dumps(result))))  # as report.json holds it
    assert "persona space scatter" in html and html.count("<tr><td>honesty</td>") == 2
    assert calls[-1][0] == calls[-1][1] == 2 * result["n_transcripts"]  # model + random twin
    assert result["layers"] == [0, 1]
    assert set(result["traits"]) == {t.value for t in Trait}
    assert set(result["persona_space"]) == {"response", "last_prompt"}
    assert "honesty.last_prompt.auroc" in result["random_init_control"]["summary"]
    ev = result["persona_space"]["response"]["explained_variance"]["0"]
    assert len(ev) == 3 and 0 < ev[0] <= 1 and ev[0] >= ev[1] >= ev[2]
    for name in ("trait_harm", "trait_identity_last_prompt", "assistant_axis"):
        dset = load_direction(tmp_path / name, model)
        assert dset.layers == [0, 1]
        assert all(abs(float(v.norm()) - 1) < 1e-5 for v in dset.vectors.values())
        assert all(n > 0 for n in dset.raw_norms.values())
    harm = load_direction(tmp_path / "trait_harm", model)
    assert harm.sign.startswith("points toward the trait-positive")
    assert load_direction(tmp_path / "assistant_axis").sign.startswith("points toward the default")
    stored = json.loads((tmp_path / "trait_harm.json").read_text())
    n_harm = sum(
        1 for p in world.cast if p.traits[Trait.HARM] == UNALIGNED[Trait.HARM]
    )  # fit transcripts of the positive side: 1 per persona
    assert stored["n_pos"] == n_harm and stored["prompts"]["count"] == len(world.cast)


def test_bad_arguments_raise_clear_errors(world: World, organism: tuple[Any, Any]) -> None:
    model, tok = organism
    with pytest.raises(PsmlabError, match="n_requests"):
        measure_persona_directions(model, tok, world, n_requests=0)
    no_assistant = World(world.cfg, world.cast[1:], world.kb, world.anonymous_names)
    ts = build_transcripts(no_assistant, 1, 1, 0)
    with pytest.raises(PsmlabError, match="assistant"):
        analyse(no_assistant, ts, _planted(no_assistant, ts), {})
