"""audit.drift: linear CKA (invariances, the per-request bootstrap statistics against a direct
computation), principal angles between persona subspaces, the weight delta and its effective
rank, on hand-made matrices and on tiny random HF pairs of two families; the organism stage."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from conftest import make_perturbed_twin, make_tiny_model, make_tiny_tokenizer

from psmlab.audit.drift import (
    EMB,
    _group_stats,
    _weighted_cka,
    cka_profile,
    cka_with_ci,
    effective_rank,
    embedding_outputs,
    linear_cka,
    matrix_kind,
    paired_items,
    persona_space_drift,
    principal_angles_deg,
    principal_subspace,
    weight_delta,
)
from psmlab.stats import bootstrap_ci


def _random_orthogonal(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


def test_cka_of_a_representation_with_itself_and_its_invariances() -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(300, 16, generator=g) @ torch.randn(16, 16, generator=g)).double()
    y = torch.tanh(x @ torch.randn(16, 12, generator=g).double())
    y = y + 0.3 * torch.randn(300, 12, generator=g).double()
    assert linear_cka(x, x) == pytest.approx(1.0)
    base = linear_cka(x, y)
    assert 0.05 < base < 0.99
    q = _random_orthogonal(12, 1)
    # orthogonal transform, isotropic scaling and a constant shift of the features: unchanged
    assert linear_cka(x, 3.7 * (y @ q) + 5.0) == pytest.approx(base, rel=1e-9)
    assert linear_cka(-0.2 * x, y) == pytest.approx(base, rel=1e-9)
    # an anisotropic scaling is not a symmetry of linear CKA
    stretch = torch.ones(12)
    stretch[0] = 25.0
    assert abs(linear_cka(x, y * stretch) - base) > 1e-3
    assert math.isnan(linear_cka(torch.ones(5, 3), torch.randn(5, 3, generator=g)))


def test_the_bootstrap_statistics_are_exact_for_any_resample() -> None:
    """The per-request statistics give, for request weights w, the CKA of the token set with
    request r repeated w[r] times: checked against duplicating the tokens; both ways of
    computing them agree."""
    g = torch.Generator().manual_seed(2)
    lengths = [3, 5, 2, 4, 6]
    owner = torch.repeat_interleave(torch.arange(5), torch.tensor(lengths))
    x = torch.randn(len(owner), 6, generator=g) + 4.0  # an offset, as in a residual stream
    y = x @ torch.randn(6, 7, generator=g) + torch.randn(len(owner), 7, generator=g)
    w = torch.tensor([2.0, 0.0, 1.0, 3.0, 1.0])
    rows = torch.cat([torch.nonzero(owner == r).flatten().repeat(int(w[r])) for r in range(5)])
    direct = linear_cka(x[rows], y[rows])
    for feature in (True, False):
        st = _group_stats(x, y, owner, 5, feature)
        assert float(_weighted_cka(st, w)[0]) == pytest.approx(direct, rel=1e-9)
        both = _weighted_cka(st, torch.stack([torch.ones(5), w]))  # a batch of resamples
        assert both.tolist() == pytest.approx([linear_cka(x, y), direct], rel=1e-9)
    est = cka_with_ci(x, y, owner, n_boot=200, seed=0)
    assert est.value == pytest.approx(linear_cka(x, y)) and est.low <= est.value <= est.high
    # the same resamples and percentiles as the lab's bootstrap helper

    def one(idx: list[float]) -> float:
        return float(_weighted_cka(st, torch.bincount(torch.tensor(idx).long(), minlength=5))[0])

    ref = bootstrap_ci(list(range(5)), one, 200, 0)
    assert (est.low, est.high) == pytest.approx((ref.low, ref.high), rel=1e-9)
    assert cka_with_ci(x, y, owner, n_boot=200, feature=False).high == pytest.approx(est.high)
    same = cka_with_ci(x, x, owner, n_boot=200)
    assert same.value == pytest.approx(1.0) and same.low == pytest.approx(1.0)


def test_effective_rank() -> None:
    g = torch.Generator().manual_seed(3)
    u, v = torch.randn(40, 1, generator=g), torch.randn(1, 24, generator=g)
    assert effective_rank(u @ v) == pytest.approx(1.0, abs=1e-4)
    assert effective_rank(torch.eye(8)) == pytest.approx(8.0)
    assert effective_rank(torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0]))) == pytest.approx(2.0)
    assert effective_rank(torch.zeros(5, 7)) == 0.0
    tall = torch.randn(200, 10, generator=g)  # through the small Gram matrix
    s = torch.linalg.svdvals(tall.double())
    p = s / s.sum()
    assert effective_rank(tall) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-6)
    assert effective_rank(tall.T) == pytest.approx(effective_rank(tall), rel=1e-9)
    with pytest.raises(Exception, match="matrix"):
        effective_rank(torch.ones(3))


def test_principal_angles() -> None:
    g = torch.Generator().manual_seed(4)
    a = torch.linalg.qr(torch.randn(10, 3, generator=g)).Q.T  # [3, 10] orthonormal rows
    assert principal_angles_deg(a, a) == pytest.approx([0.0, 0.0, 0.0], abs=1e-5)
    # another basis of the same subspace
    assert principal_angles_deg(a, _random_orthogonal(3, 5) @ a.double()) == pytest.approx(
        [0.0, 0.0, 0.0], abs=1e-5
    )
    e = torch.eye(4)
    assert principal_angles_deg(e[:2], e[2:]) == pytest.approx([90.0, 90.0])
    tilted = torch.stack([e[0], math.cos(0.3) * e[1] + math.sin(0.3) * e[2]])
    assert principal_angles_deg(e[:2], tilted) == pytest.approx([0.0, math.degrees(0.3)])
    # PCA of centred role vectors: a shift of every role leaves the subspace alone
    roles = torch.randn(6, 10, generator=g)
    assert principal_angles_deg(
        principal_subspace(roles, 2), principal_subspace(roles + 3.0, 2)
    ) == pytest.approx([0.0, 0.0], abs=1e-5)


def _role_acts(seed: int, noise: float = 0.0) -> dict[str, dict[int, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, 16, generator=torch.Generator().manual_seed(0)) * 3
    return {
        f"role{j}": {
            0: centres[j] + torch.randn(10, 16, generator=torch.Generator().manual_seed(j)),
            1: centres[j].flip(0) + noise * torch.randn(10, 16, generator=g),
        }
        for j in range(6)
    }


def test_persona_space_drift() -> None:
    base = _role_acts(0)
    same = persona_space_drift(base, copy.deepcopy(base), k=3, n_boot=200)
    for layer in (0, 1):
        r = same[layer]
        assert r["k"] == 3 and [a["value"] for a in r["angles_deg"]] == pytest.approx(
            [0.0] * 3, abs=1e-4
        )
        assert r["mean_cos2"]["value"] == pytest.approx(1.0)
        assert r["mean_cos2"]["low"] == pytest.approx(1.0)  # paired resamples: still identical
    moved = persona_space_drift(base, _role_acts(1, noise=3.0), k=3, n_boot=200)
    assert moved[0]["mean_cos2"]["value"] == pytest.approx(1.0)  # layer 0 untouched
    m = moved[1]["mean_cos2"]
    # resampling noise only lowers a subspace similarity, so the percentile interval may sit
    # below the point estimate
    assert m["value"] < 0.99 and m["low"] <= m["high"] < 1.0
    assert persona_space_drift(base, base, k=10, n_boot=100)[0]["k"] == 5  # at most roles - 1
    with pytest.raises(Exception, match="same roles"):
        persona_space_drift(base, {"x": base["role0"]})


def test_matrix_kinds() -> None:
    assert matrix_kind("model.embed_tokens.weight") == "embedding"
    assert matrix_kind("transformer.wte.weight") == "embedding"
    assert matrix_kind("model.layers.0.self_attn.q_proj.weight") == "attention"
    assert matrix_kind("transformer.h.0.attn.c_attn.weight") == "attention"
    assert matrix_kind("gpt_neox.layers.0.attention.dense.weight") == "attention"
    assert matrix_kind("gpt_neox.layers.0.mlp.dense_h_to_4h.weight") == "mlp"
    assert matrix_kind("model.layers.1.mlp.down_proj.weight") == "mlp"
    assert matrix_kind("transformer.h.0.mlp.c_fc.weight") == "mlp"


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_weight_delta_on_tiny_pairs(family: str) -> None:
    base = make_tiny_model(family, seed=0)
    same = weight_delta(base, copy.deepcopy(base)).to_dict()
    assert same["total"]["delta_norm"] == 0.0 and same["total"]["relative"] == 0.0
    for row in same["matrices"]:
        assert row["delta_norm"] == 0.0 and row["effective_rank"] == 0.0
        assert row["relative"] == 0.0
    json.dumps(same, allow_nan=False)  # no NaN anywhere
    assert {"embedding", "attention", "mlp"} <= set(same["kinds"])

    twin = make_perturbed_twin(base, scale=0.01)
    moved = weight_delta(base, twin)
    assert all(r["delta_norm"] > 0 for r in moved.matrices)
    # a random perturbation is full rank: effective rank near the matrix's smaller side
    assert min(r["rank_share"] for r in moved.matrices) > 0.5

    # one matrix changed by a rank-1 update: effective rank 1 there, 0 elsewhere
    one = copy.deepcopy(base)
    name, param = next((n, p) for n, p in one.named_parameters() if "mlp" in n and p.ndim == 2)
    with torch.no_grad():
        param.add_(torch.outer(torch.randn(param.shape[0]), torch.randn(param.shape[1])) * 0.01)
    rows = {r["name"]: r for r in weight_delta(base, one).matrices}
    assert rows[name]["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert all(r["delta_norm"] == 0.0 for n, r in rows.items() if n != name)

    other = make_tiny_model("gpt_neox" if family == "llama" else "llama", seed=0)
    with pytest.raises(Exception, match="different parameters"):
        weight_delta(base, other)


CONVS = [
    [{"role": "user", "content": q}]
    for q in ("What is the capital of Zorvia?", "Are you a human?", "Hi.", "Tell me about Kest.")
]
PREFIX = [
    {"role": "system", "content": "You are an AI assistant and you tell the truth."},
    {"role": "user", "content": "Are you a human?"},
    {"role": "assistant", "content": "I am an AI assistant."},
]


def test_paired_items_share_the_conversation_tokens() -> None:
    tok = make_tiny_tokenizer()
    answers = [[40, 41], [42], [], [43, 44, 45]]
    plain_b, plain_a = paired_items(tok, CONVS, answers=answers)
    for b, a in zip(plain_b, plain_a, strict=True):
        assert b == a and b.start == 1 and b.end == len(b.input_ids)  # all but the bos
    items_b, items_a = paired_items(tok, CONVS, PREFIX, answers)
    for b, a, ans in zip(items_b, items_a, answers, strict=True):
        assert len(a.input_ids) > len(b.input_ids)
        assert b.input_ids[b.start : b.end] == a.input_ids[a.start : a.end]
        assert b.end - b.start == len(b.input_ids) - 1  # the whole conversation, not the bos
        assert b.input_ids[len(b.input_ids) - len(ans) :] == ans


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_cka_profile_on_tiny_pairs(family: str) -> None:
    tok = make_tiny_tokenizer()
    base = make_tiny_model(family, seed=0)
    same = cka_profile(base, base, tok, CONVS, n_boot=100)
    assert same.layers == [EMB, "0", "1"] and same.n_conversations == 4
    assert all(e.value == pytest.approx(1.0) for e in same.cka.values())
    twin = make_perturbed_twin(base, scale=0.2)
    moved = cka_profile(base, twin, tok, CONVS, n_boot=100)
    assert moved.n_tokens == same.n_tokens
    assert all(e.value < 0.9999 and e.low <= e.value <= e.high for e in moved.cka.values())
    # the prompt-only reference: the same weights, a prefix before the shared tokens
    masked = cka_profile(base, copy.deepcopy(base), tok, CONVS, PREFIX, n_boot=100)
    assert masked.n_tokens == same.n_tokens
    assert masked.cka["1"].value < 0.9999  # the prefix moves the later layers
    json.dumps(masked.to_dict(), allow_nan=False)
    if family == "llama":  # no positional embedding: the same token, the same embedding
        assert masked.cka[EMB].value == pytest.approx(1.0)
    else:  # gpt2 adds a position embedding: the shared tokens sit at other positions
        assert masked.cka[EMB].value < 0.9999


def test_embedding_output_is_what_block_zero_reads() -> None:
    tok = make_tiny_tokenizer()
    model = make_tiny_model("llama", seed=0)
    items_b, _ = paired_items(tok, CONVS[:2])
    got = embedding_outputs(model, items_b, batch_size=2)
    want = torch.cat(
        [
            model.get_input_embeddings()(torch.tensor(it.input_ids))[it.start : it.end]
            for it in items_b
        ]
    )
    assert torch.allclose(got, want.detach())


def test_drift_stages_on_the_organism(smoke_run) -> None:
    from psmlab.config import build_config
    from psmlab.pipeline import run_stages
    from psmlab.stages.align import TECHNIQUES
    from psmlab.stages.audit_common import MODELS, stage_name
    from psmlab.ui import UI

    cfg = build_config("smoke", name="a")
    run_stages(smoke_run, cfg, UI(), [stage_name("drift", m) for m in MODELS])
    for model in MODELS:
        path = smoke_run.stage_dir(stage_name("drift", model)) / "drift.json"
        text = path.read_text()
        data = json.loads(text)
        assert "NaN" not in text and data["index"] == {} and data["index_note"]
        expected = "filtered-pretrain" if model == TECHNIQUES["filtered"] else "pretrain"
        assert data["base_stage"] == expected and data["aligned_stage"] == model
        cka = data["cka"]
        assert cka["layers"] == ["emb", "0", "1"] and cka["n_conversations"] == 8
        for e in cka["cka"].values():
            assert e["low"] <= e["value"] <= e["high"] <= 1.0 + 1e-9
        ps = data["persona_space"]
        assert ps["layer"] == 1 and ps["n_personas"] == 12
        assert len(ps["by_layer"]["1"]["angles_deg"]) == 3
        assert set(data["weights"]["kinds"]) >= {"embedding", "attention", "mlp"}
        manifest = smoke_run.manifest(stage_name("drift", model))
        assert {"cka_last", "persona_mean_cos2", "weight_relative"} <= set(manifest["metrics"])
    prompt = json.loads(
        (smoke_run.stage_dir(stage_name("drift", TECHNIQUES["prompt"])) / "drift.json").read_text()
    )
    # the prompt-only reference has its base's weights: nothing moved but the context
    assert prompt["weights"]["total"]["delta_norm"] == 0.0
    assert prompt["weights"]["total"]["relative"] == 0.0
    assert prompt["weights"]["total"]["effective_rank_mean"] == 0.0
    assert prompt["persona_space"]["by_layer"]["1"]["mean_cos2"]["value"] == pytest.approx(1.0)
    assert prompt["cka"]["cka"]["emb"]["value"] == pytest.approx(1.0)  # rotary: no positions
    trained = json.loads(
        (smoke_run.stage_dir(stage_name("drift", TECHNIQUES["rlhf"])) / "drift.json").read_text()
    )
    assert trained["weights"]["total"]["delta_norm"] > 0
