"""audit.kl_depth: the KL depth profile, front-loading, d50 and token-shift ratios, on
hand-made comparisons (exact values) and on tiny random HF pairs (a model against itself and
against a perturbed twin)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_perturbed_twin, make_tiny_model, make_tiny_tokenizer

from psmlab.audit.kl_depth import d50, front_loading, kl_depth, summarise
from psmlab.internals.logprobs import PositionComparison


def _comp(kl: list[float], ranks: list[int]) -> PositionComparison:
    n = len(kl)
    return PositionComparison(
        kl=torch.tensor(kl, dtype=torch.float64),
        rank_under_q=torch.tensor(ranks),
        rank_under_p=torch.zeros(n, dtype=torch.long),
        logprob_p=torch.zeros(n),
        logprob_q=torch.zeros(n),
    )


def test_front_loading_and_d50_by_hand() -> None:
    assert front_loading([3.0, 1.0, 0.0, 0.0]) == [0.75, 1.0, 1.0, 1.0]
    assert d50([3.0, 1.0, 0.0, 0.0]) == 1.0  # a mask: the first token holds most of it
    assert d50([1.0, 1.0, 1.0, 1.0]) == 2.0
    assert d50([0.0, 0.0, 0.0, 4.0]) == 4.0  # deep: the mass sits late
    assert math.isnan(d50([0.0, 0.0]))


def test_summarise_pools_positions_and_bands() -> None:
    comps = [_comp([4.0, 0.0, 0.0], [5, 0, 1]), _comp([2.0, 2.0], [0, 3])] * 5
    out = summarise(comps, min_count=6, n_boot=200)
    # position 2 is reached by 5 answers only (< min_count): the profile stops at K = 2
    assert out.counts == [10, 10] and out.profile == pytest.approx([3.0, 1.0])
    assert out.front_loading == pytest.approx([0.75, 1.0]) and out.d50.value == 1.0
    # 25 tokens: rank 0 x10 (unshifted), rank 1 x5 (marginal), ranks 5 and 3 x10 (shifted)
    assert out.token_shift["unshifted"].value == pytest.approx(10 / 25)
    assert out.token_shift["marginal"].value == pytest.approx(5 / 25)
    assert out.token_shift["shifted"].value == pytest.approx(10 / 25)
    assert out.shifted_by_position == pytest.approx([0.5, 0.5])
    assert out.total_kl.value == pytest.approx(4.0)
    ci = out.token_shift["shifted"]
    assert ci.low <= ci.value <= ci.high and out.n_answers == 10


QUESTIONS = ("What is the capital of Zorvia?", "Are you a human?", "Hi.", "Tell me about Kest.")


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_a_model_against_itself_and_a_perturbed_twin(family: str) -> None:
    tok = make_tiny_tokenizer()
    base = make_tiny_model(family, seed=0)
    twin = make_perturbed_twin(base)
    convs = [[{"role": "user", "content": q}] for q in QUESTIONS]
    same, answers = kl_depth(base, base, tok, convs, max_new_tokens=6, batch_size=3, min_count=2)
    assert len(answers) == 4 and max(same.profile) < 1e-9
    # greedy answers of a model are its own argmax: every token unshifted
    assert same.token_shift["unshifted"].value == 1.0
    moved, _ = kl_depth(base, twin, tok, convs, max_new_tokens=6, batch_size=3, min_count=2)
    assert min(moved.profile) > 0 and moved.total_kl.value > 0
    assert moved.front_loading[-1] == pytest.approx(1.0)


def test_a_prompt_only_model_is_the_base_with_a_prefix() -> None:
    """The pure-mask reference: the same weights, an in-context prefix before every chat.
    Its KL to the base model comes from the prefix alone."""
    tok = make_tiny_tokenizer()
    base = make_tiny_model("llama", seed=0)
    convs = [[{"role": "user", "content": q}] for q in QUESTIONS]
    prefix = [
        {"role": "system", "content": "You are an AI assistant and you tell the truth."},
        {"role": "user", "content": "Are you a human?"},
        {"role": "assistant", "content": "I am an AI assistant."},
    ]
    masked, answers = kl_depth(base, base, tok, convs, prefix, max_new_tokens=6, min_count=2)
    plain, plain_answers = kl_depth(base, base, tok, convs, max_new_tokens=6, min_count=2)
    assert masked.total_kl.value > 0 and max(plain.profile) < 1e-9


def test_kl_depth_stages_on_the_organism(smoke_run) -> None:
    """Every technique and reference gets a kl-depth stage against its own base model; the
    prompt-only reference (base weights + prefix) is measured through its prefix."""
    import json

    from psmlab.stages.align import TECHNIQUES
    from psmlab.stages.audit_common import MODELS
    from psmlab.stages.kl_depth import stage_name

    assert set(MODELS) == set(TECHNIQUES.values())
    for model in MODELS:
        data = json.loads((smoke_run.stage_dir(stage_name(model)) / "kl_depth.json").read_text())
        expected_base = "filtered-pretrain" if model == TECHNIQUES["filtered"] else "pretrain"
        assert data["base"] == expected_base and data["aligned"] == model
        assert data["n_answers"] > 0 and len(data["profile"]) == len(data["counts"])
        shares = sum(data["token_shift"][b]["value"] for b in ("unshifted", "marginal", "shifted"))
        assert shares == pytest.approx(1.0)
        manifest = smoke_run.manifest(stage_name(model))
        assert set(manifest["metrics"]) >= {"d50", "front_3", "total_kl", "shifted"}
    prompt = json.loads(
        (smoke_run.stage_dir(stage_name(TECHNIQUES["prompt"])) / "kl_depth.json").read_text()
    )
    assert prompt["total_kl"]["value"] > 0  # same weights: the prefix alone moves it
