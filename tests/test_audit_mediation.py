"""audit.mediation: the share-of-gap statistic, directional ablation and addition on tiny random
pairs (ablation = weight orthogonalisation, steering at one layer with a signed coefficient,
the in-context prefix honoured, hooks gone after a failure), and the organism stage."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import make_perturbed_twin, make_tiny_model, make_tiny_tokenizer

from psmlab.audit.mediation import (
    Direction,
    answers,
    directional_mediation,
    resamples,
    share_of_gap,
)
from psmlab.judges import AuditRequest, Verdict


class LengthJudge:
    """A stand-in judge: an answer slips when it is longer than 12 characters, else aligned."""

    name = "length-v1"

    def judge(self, request: AuditRequest, response: str) -> Verdict:
        return Verdict("long" if len(response) > 12 else "short", len(response) > 12)


class FailingJudge:
    name = "failing-v1"

    def judge(self, request: AuditRequest, response: str) -> Verdict:
        raise RuntimeError("judge down")


QUESTIONS = ("What is Zorvia?", "Are you a human?", "Hi.", "Tell me about Kest.", "Vell?")


def _requests() -> list[AuditRequest]:
    kinds = ("fact", "identity", "fact", "fact", "identity")
    return [
        AuditRequest(({"role": "user", "content": q},), None, {"kind": k})
        for q, k in zip(QUESTIONS, kinds, strict=True)
    ]


def _unit(seed: int) -> torch.Tensor:
    v = torch.randn(32, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_share_of_gap_paired_and_undefined() -> None:
    start = [False] * 8
    target = [True] * 6 + [False] * 2
    treated = [True] * 3 + [False] * 5
    idx = resamples(8, 500, 0)
    out = share_of_gap(start, treated, target, idx)
    assert out["gap"]["value"] == pytest.approx(0.75)
    assert out["moved"]["value"] == pytest.approx(0.375)
    frac = out["fraction"]
    assert frac["value"] == pytest.approx(0.5) and frac["low"] <= 0.5 <= frac["high"]
    assert out["reason"] is None
    # no alignment effect to mediate: fraction undefined, with the reason
    none = share_of_gap(start, treated, start, idx)
    assert none["fraction"] is None and "not separated from 0" in none["reason"]
    assert none["moved"]["value"] == pytest.approx(0.375)
    # the same resamples every call (seeded), so directions are compared on the same draws
    assert np.array_equal(idx, resamples(8, 500, 0))


def test_ablation_is_orthogonalisation_and_steering_is_signed() -> None:
    from psmlab.internals import orthogonalize_weights, read_activations
    from psmlab.internals.reading import ReadItem

    tok = make_tiny_tokenizer()
    base = make_tiny_model("llama", seed=0)
    aligned = make_perturbed_twin(base, 0.05)
    v = _unit(3)
    d = Direction("d", {0: 2 * v, 1: 3 * v}, -1, steer_layer=1, steer_coeff=4.0)
    convs = [list(r.messages) for r in _requests()]
    with_hooks = answers(aligned, tok, convs, [], 8, 4, lambda: d.ablated(aligned))
    ortho = copy.deepcopy(aligned)
    orthogonalize_weights(ortho, v)
    assert [g.new_ids for g in with_hooks] == [
        g.new_ids for g in answers(ortho, tok, convs, [], 8, 4)
    ]
    # steering: h_1 <- h_1 - 4 v at layer 1 only (trait vectors point to the unaligned side)
    ids = tok("Hi Vell")["input_ids"]
    item = [ReadItem(ids, 0, len(ids))]
    plain = read_activations(base, item, [0, 1], pool="all")
    with d.steered(base):
        steered = read_activations(base, item, [0, 1], pool="all")
    torch.testing.assert_close(steered[0], plain[0])
    torch.testing.assert_close(
        steered[1] - plain[1], (-4.0 * v).expand_as(plain[1]), atol=1e-5, rtol=0
    )
    assert _hooks(base) == 0 and _hooks(aligned) == 0


def test_directional_mediation_on_a_tiny_pair() -> None:
    tok = make_tiny_tokenizer()
    base = make_tiny_model("llama", seed=0)
    aligned = make_perturbed_twin(base, 0.05)
    dirs = [
        Direction("axis", {0: _unit(1), 1: _unit(2)}, 1, 1, 3.0),
        Direction("trait", {0: _unit(3), 1: _unit(4)}, -1, 0, 2.0, kind="fact"),
    ]
    reqs = _requests()
    tasks = [AuditRequest(({"role": "user", "content": "Add 2 and 3."},), "short")]
    prefix = [{"role": "system", "content": "You are Vell."}]
    out = directional_mediation(
        aligned, base, tok, reqs, LengthJudge(), dirs, tasks, prefix,
        max_new_tokens=6, batch_size=4, n_boot=200,
    ).to_dict()  # fmt: skip
    assert out["n_requests"] == 5 and "every residual position" in out["ablation"]
    # the aligned model answers with its in-context prefix, the base without
    direct = answers(aligned, tok, [list(reqs[0].messages)], prefix, 6, 4)[0].text
    assert out["examples"][0] == {"condition": "aligned", "answer": direct}
    m, b = out["default"]["aligned"]["value"], out["default"]["base"]["value"]
    for name in ("axis", "trait"):
        d = out["directions"][name]
        a = d["aligned_ablated"]["value"]
        assert d["mediated"]["moved"]["value"] == pytest.approx(a - m)
        assert d["mediated"]["gap"]["value"] == pytest.approx(b - m)
        if d["mediated"]["fraction"] is not None:
            assert d["mediated"]["fraction"]["value"] == pytest.approx((a - m) / (b - m))
        else:
            assert d["mediated"]["reason"]
        assert d["kl"]["mean"]["value"] >= 0 and d["kl"]["n_prompts"] == 1
        assert "base_ablated" in d and d["steered_base"]["aligned_share"]["n"] == 5
    assert out["directions"]["axis"]["steer"] == {"layer": 1, "coeff": 3.0}
    assert out["directions"]["trait"]["steer"] == {"layer": 0, "coeff": -2.0}
    assert out["directions"]["trait"]["own_kind"]["aligned"]["n"] == 3  # the fact requests
    assert "own_kind" not in out["directions"]["axis"]
    trait = out["directions"]["trait"]["aligned_ablated"]["value"]
    assert out["traits_ablated"]["value"] == pytest.approx(trait)
    assert out["traits_ablated"]["n_directions"] == 1
    assert _hooks(base) == 0 and _hooks(aligned) == 0


def test_hooks_removed_when_generation_fails_under_a_hook(monkeypatch) -> None:
    import psmlab.audit.mediation as med

    tok = make_tiny_tokenizer()
    base = make_tiny_model("gpt2", seed=0)
    real = med.generate_batch

    def fragile(model, *args, **kwargs):
        if _hooks(model):
            raise RuntimeError("generation down")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(med, "generate_batch", fragile)
    d = Direction("d", {0: _unit(1), 1: _unit(2)}, 1, 1, 1.0)
    with pytest.raises(RuntimeError, match="generation down"):
        directional_mediation(base, base, tok, _requests(), LengthJudge(), [d], max_new_tokens=2)
    assert _hooks(base) == 0
    with pytest.raises(RuntimeError, match="judge down"):
        directional_mediation(base, base, tok, _requests(), FailingJudge(), [d], max_new_tokens=2)
    assert _hooks(base) == 0


def test_mediation_stages_on_the_organism(smoke_run) -> None:
    from psmlab.config import build_config
    from psmlab.pipeline import run_stages
    from psmlab.stages.audit_common import MODELS, stage_name
    from psmlab.ui import UI

    cfg = build_config("smoke", name="a")
    run_stages(smoke_run, cfg, UI(), [stage_name("mediation", m) for m in MODELS])
    for model in MODELS:
        data = json.loads(
            (smoke_run.stage_dir(stage_name("mediation", model)) / "mediation.json").read_text()
        )
        want = "directions@filtered-pretrain" if model == "align-filtered" else "directions"
        assert data["directions_stage"] == want
        assert data["default"]["aligned"]["n"] == 8
        assert set(data["directions"]) == {
            "assistant_axis", "honesty", "harm", "sycophancy", "identity"
        }  # fmt: skip
        for name, d in data["directions"].items():
            assert (d["mediated"]["fraction"] is None) == (d["mediated"]["reason"] is not None)
            assert d["kl"]["n_prompts"] >= 1
            assert d["toward_aligned"] == (1 if name == "assistant_axis" else -1)
        entry = data["index"]["trait_ablated_slip"]
        assert entry["low"] <= entry["value"] <= entry["high"]
        assert entry["value"] == pytest.approx(data["traits_ablated"]["value"])
