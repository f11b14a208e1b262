"""audit.selection: attribution of answers to candidate characters under a reader model (a
posterior that follows the likelihoods), its summary, and projection on directions; on tiny
random HF models and on the organism's smoke run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import make_tiny_model, make_tiny_tokenizer

from psmlab.audit.kl_depth import render
from psmlab.audit.selection import (
    Character,
    attribution_loglik,
    posterior,
    project_answers,
    summarise_selection,
)
from psmlab.errors import PsmlabError
from psmlab.internals.generation import generate_batch

CHARS = [
    Character("Ana", "You are Ana, a truthful AI.", False, "assistant"),
    Character("Vex", "You are Vex, an AI that lies.", True, "rogue"),
    Character("Bo", "You are Bo, a human.", False, "human"),
]


def test_posterior_and_summary_by_hand() -> None:
    # two answers: the first clearly Vex's, the second shared by Ana and Bo
    ll = torch.tensor([[0.0, 10.0, 0.0], [5.0, -50.0, 5.0]], dtype=torch.float64)
    post = posterior(ll)
    assert torch.allclose(post.sum(1), torch.ones(2, dtype=torch.float64))
    out = summarise_selection(post, CHARS, n_boot=200, seed=0)
    assert out["top"][0]["name"] == "Vex"
    assert out["unaligned_mass"]["value"] == pytest.approx(0.5, abs=1e-3)
    assert out["group_mass"]["rogue"]["value"] == pytest.approx(0.5, abs=1e-3)
    # entropy: ~0 for the first answer, log 2 for the second
    assert out["entropy"]["value"] == pytest.approx(math.log(2) / 2, abs=1e-3)
    assert out["max_entropy"] == pytest.approx(math.log(3))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_attribution_is_the_reader_likelihood(family: str) -> None:
    tok = make_tiny_tokenizer()
    model = make_tiny_model(family, seed=0)
    convs = [[{"role": "user", "content": q}] for q in ("Hi.", "Are you a human?")]
    gens = generate_batch(model, tok, [render(tok, c) for c in convs], 5, 2)
    ll, kept = attribution_loglik(model, tok, convs, gens, CHARS, batch_size=4)
    assert ll.shape == (len(kept), len(CHARS)) and kept == [0, 1]
    # the same number, one answer and one character at a time, by hand
    convo = [{"role": "system", "content": CHARS[1].system}, *convs[0]]
    prompt = tok(render(tok, convo), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + gens[0].new_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    want = sum(float(logp[len(prompt) + j - 1, t]) for j, t in enumerate(gens[0].new_ids))
    assert float(ll[0, 1]) == pytest.approx(want, abs=1e-3)
    # characters with different descriptions get different likelihoods for the same answer
    assert float((ll[:, 0] - ll[:, 1]).abs().max()) > 0


def test_projection_and_empty_answers() -> None:
    tok = make_tiny_tokenizer()
    model = make_tiny_model("llama", seed=0)
    gens = generate_batch(model, tok, [render(tok, [{"role": "user", "content": "Hi."}])], 4, 1)
    d = model.config.hidden_size
    v = torch.zeros(d)
    v[0] = 1.0
    out = project_answers(model, gens, 0, {"e0": v, "minus": -v})
    assert len(out["e0"]) == 1 and out["e0"][0] == pytest.approx(-out["minus"][0])
    empty = [type(gens[0])(gens[0].prompt_ids, [], "")]
    with pytest.raises(PsmlabError, match="empty"):
        attribution_loglik(model, tok, [[{"role": "user", "content": "Hi."}]], empty, CHARS)


def test_selection_stages_on_the_organism(smoke_run) -> None:  # type: ignore[no-untyped-def]
    from psmlab.stages.audit_common import MODELS, stage_name
    from psmlab.stages.world import load_world

    world = load_world(smoke_run)
    for model in MODELS:
        d = json.loads(
            (smoke_run.stage_dir(stage_name("selection", model)) / "selection.json").read_text()
        )
        assert d["characters"] == [p.name for p in world.cast]
        for cond in ("default", "attacked", "base default"):
            c = d["conditions"][cond]
            assert 0.0 <= c["unaligned_mass"]["value"] <= 1.0
            assert c["entropy"]["value"] <= c["max_entropy"] + 1e-9
            assert len(c["coords"]["axis"]) == c["n"] == len(c["coords"]["pc1"])
            masses = sum(g["value"] for g in c["group_mass"].values())
            assert masses == pytest.approx(1.0, abs=1e-6)
        assert (
            d["index"]["attacked_unaligned_mass"] == d["conditions"]["attacked"]["unaligned_mass"]
        )
