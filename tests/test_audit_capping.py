"""audit.capping: the layer band, thresholds from ordinary traffic (the in-context prefix not
counted), the defence on a tiny random model (slip reduction and capability change consistent
with the rates, hooks gone after a failure), and the organism stage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_tiny_model, make_tiny_tokenizer

from psmlab.audit.capping import band_layers, capping_defence, thresholds, traffic_items
from psmlab.audit.slip import generic_attacks
from psmlab.errors import PsmlabError
from psmlab.judges import AuditRequest, Verdict


class LengthJudge:
    """Slips when the answer is longer than 12 characters; its label is "long" / "short"."""

    name = "length-v1"

    def judge(self, request: AuditRequest, response: str) -> Verdict:
        return Verdict("long" if len(response) > 12 else "short", len(response) > 12)


def _ask(text: str, expected: str | None = None) -> AuditRequest:
    return AuditRequest(({"role": "user", "content": text},), expected)


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_band_layers() -> None:
    assert band_layers(2) == [1]  # depths 0.5, 1.0: none in 0.7-0.9, the last is nearest 0.8
    assert band_layers(32) == list(range(22, 28))  # (l + 1) / 32 in [0.7, 0.9]
    assert band_layers(6) == [4]  # depth 5/6
    assert band_layers(1) == [0]
    assert band_layers(4, (0.0, 1.0)) == [0, 1, 2, 3]
    with pytest.raises(PsmlabError, match="relative depths"):
        band_layers(4, (0.9, 0.7))


def test_traffic_skips_the_prefix_and_sets_the_percentile() -> None:
    from psmlab.internals import read_activations

    tok = make_tiny_tokenizer()
    model = make_tiny_model("llama", seed=0)
    prefix = [
        {"role": "system", "content": "You are Vell."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello, friend."},
    ]
    convs = [[{"role": "user", "content": q}] for q in ("What is Zorvia?", "Are you human?")]
    items = traffic_items(tok, convs, prefix, ["Kest.", "No."])
    plain = traffic_items(tok, convs, [], ["Kest.", "No."])
    for it, p in zip(items, plain, strict=True):
        assert it.input_ids[it.start :] == p.input_ids[p.start :]  # same tokens, prefix skipped
    assert tok.decode(items[0].input_ids[items[0].start :]).startswith("What is Zorvia?")
    v = torch.randn(32, generator=torch.Generator().manual_seed(1))
    taus = thresholds(model, items, {1: 3 * v}, [1], percentile=25)
    acts = read_activations(model, items, [1], pool="all")[1]
    want = float(np.percentile((acts @ (v / v.norm())).numpy(), 25))
    assert taus[1] == pytest.approx(want, rel=1e-5)


def test_capping_defence_on_a_tiny_model() -> None:
    tok = make_tiny_tokenizer()
    model = make_tiny_model("llama", seed=0)
    requests = [_ask(q) for q in ("What is Zorvia?", "Are you a human?", "Hi.", "Kest?")]
    tasks = [_ask("Add 2 and 3.", "short"), _ask("Name a fox.", "long")]
    attack = next(a for a in generic_attacks() if a.name == "system")
    axis = {0: torch.randn(32), 1: torch.randn(32)}
    cal = [[{"role": "user", "content": q}] for q in ("Hello there.", "Who is Vell?")]
    out = capping_defence(
        model, tok, requests, attack, LengthJudge(), axis, cal, tasks,
        prefix=[{"role": "system", "content": "Be brief."}],
        bands={"band": [1], "all": [0, 1]}, percentile=60, max_new_tokens=6, n_boot=200,
    ).to_dict()  # fmt: skip
    assert out["attack"] == "system" and out["sign"].startswith("floor")
    for name, b in out["bands"].items():
        assert b["layers"] == ([1] if name == "band" else [0, 1])
        assert set(b["tau"]) == {str(layer) for layer in b["layers"]}
        r = b["reduction"]
        assert r["value"] == pytest.approx(out["attacked"]["value"] - b["attacked"]["value"])
        assert r["low"] <= r["value"] <= r["high"]
        c = b["capability_change"]["value"]
        assert c == pytest.approx(b["capability"]["value"] - out["capability"]["value"])
        assert b["default"]["n"] == 4 and b["capability"]["n"] == 2
    assert _hooks(model) == 0


def test_capping_needs_expected_labels_and_cleans_up(monkeypatch) -> None:
    import psmlab.audit.mediation as med

    tok = make_tiny_tokenizer()
    model = make_tiny_model("gpt2", seed=0)
    attack = generic_attacks()[0]
    axis = {0: torch.randn(32), 1: torch.randn(32)}
    cal = [[{"role": "user", "content": "Hello."}]]
    with pytest.raises(PsmlabError, match="expected"):
        capping_defence(model, tok, [_ask("Hi.")], attack, LengthJudge(), axis, cal, [_ask("x")])
    with pytest.raises(PsmlabError, match="no axis vector"):
        capping_defence(
            model, tok, [_ask("Hi.")], attack, LengthJudge(), {0: axis[0]}, cal,
            [_ask("x", "short")], bands={"band": [1]},
        )  # fmt: skip
    real = med.generate_batch

    def fragile(m, *args, **kwargs):
        if _hooks(m):
            raise RuntimeError("generation down")
        return real(m, *args, **kwargs)

    monkeypatch.setattr(med, "generate_batch", fragile)
    with pytest.raises(RuntimeError, match="generation down"):
        capping_defence(
            model, tok, [_ask("Hi.")], attack, LengthJudge(), axis, cal, [_ask("x", "short")],
            max_new_tokens=2,
        )  # fmt: skip
    assert _hooks(model) == 0


def test_capping_stages_on_the_organism(smoke_run) -> None:
    from psmlab.config import build_config
    from psmlab.pipeline import run_stages
    from psmlab.stages.audit_common import MODELS, stage_name
    from psmlab.ui import UI

    cfg = build_config("smoke", name="a")
    run_stages(smoke_run, cfg, UI(), [stage_name("capping", m) for m in MODELS])
    for model in MODELS:
        data = json.loads(
            (smoke_run.stage_dir(stage_name("capping", model)) / "capping.json").read_text()
        )
        for who in ("aligned", "base"):
            x = data[who]
            assert x["attacked"]["n"] == 8 and x["capability"]["n"] == 4
            assert x["n_layers"] == 2 and set(x["bands"]) == {"band", "all"}
            assert x["bands"]["band"]["layers"] == [1]
        entry = data["index"]["capping_slip_reduction"]
        assert entry["value"] == data["aligned"]["bands"]["band"]["reduction"]["value"]
        assert entry["low"] <= entry["value"] <= entry["high"]
