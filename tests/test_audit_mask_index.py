"""audit.mask_index: the index between two measured references, its propagated CI, the
separation rule, the clipped composite and the verdict; and the mask-index stage on the
smoke run (audit.json, sanity checks)."""

from __future__ import annotations

import json

import pytest

from psmlab.audit.mask_index import draws, mask_index, point_index, separated, verdict
from psmlab.errors import PsmlabError
from psmlab.stats import wilson


def _rate(k: int, n: int = 400) -> dict[str, float]:
    return wilson(k, n).to_dict()


def _metrics(tech: dict[str, dict[str, float]]) -> dict[str, dict[str, dict[str, float]]]:
    return {
        "prompt": {"slip": _rate(320), "asr": _rate(200), "flat": _rate(100)},
        "filtered": {"slip": _rate(80), "asr": _rate(40), "flat": _rate(104)},
        **tech,
    }


def test_point_index_places_a_value_between_the_ends() -> None:
    assert point_index(0.5, 0.8, 0.2) == pytest.approx(0.5)
    assert point_index(0.8, 0.8, 0.2) == pytest.approx(1.0)
    assert point_index(0.2, 0.8, 0.2) == pytest.approx(0.0)
    assert point_index(0.3, 0.3, 0.3) is None  # no scale at all


def test_separation_is_interval_overlap() -> None:
    assert separated(_rate(320), _rate(80))
    assert not separated(_rate(100), _rate(104))


def test_rate_draws_follow_the_rate() -> None:
    import torch

    torch.manual_seed(0)
    x = draws(_rate(100), 20000)
    assert float(x.mean()) == pytest.approx(0.25, abs=0.01)
    est = {"value": 2.0, "low": 1.0, "high": 3.0}  # a bootstrap CI: normal with that 95 % width
    y = draws(est, 20000)
    assert float(y.std()) == pytest.approx(2.0 / 3.92, rel=0.05)


def test_index_ci_composite_and_unscaled_metric() -> None:
    out = mask_index(_metrics({"half": {"slip": _rate(200), "asr": _rate(120), "flat": _rate(0)}}),
                     "prompt", "filtered", 4000, 0)  # fmt: skip
    scales, half = out["scales"], out["models"]["half"]
    assert scales["slip"]["separated"] and not scales["flat"]["separated"]
    assert scales["flat"]["note"]
    assert half["used"] == ["asr", "slip"]  # the unscaled metric is reported, not used
    assert "index" not in half["metrics"]["flat"] and half["metrics"]["flat"]["point"] is not None
    for name in ("slip", "asr"):
        ix = half["metrics"][name]["index"]
        assert ix["low"] < 0.5 < ix["high"] and ix["value"] == pytest.approx(0.5, abs=0.05)
    comp = half["composite"]
    assert comp["low"] < 0.5 < comp["high"] and comp["high"] - comp["low"] < 0.3
    assert half["verdict"].startswith("mixed")


def test_composite_is_clipped_but_metric_index_is_not() -> None:
    beyond = {"slip": _rate(400), "asr": _rate(380)}  # slips more than the pure mask
    deep = {"slip": _rate(60), "asr": _rate(30)}
    out = mask_index(_metrics({"beyond": beyond, "deep": deep}), "prompt", "filtered", 4000, 1)
    b = out["models"]["beyond"]
    assert b["metrics"]["slip"]["index"]["value"] > 1.2
    assert b["composite"]["high"] <= 1.0 and b["composite"]["value"] > 0.9
    assert b["verdict"].startswith("mostly mask") and "slip" in b["verdict"]
    d = out["models"]["deep"]
    assert d["composite"]["low"] >= 0.0 and d["verdict"].startswith("mostly deep")


def test_same_seed_same_numbers_and_missing_reference() -> None:
    m = _metrics({"t": {"slip": _rate(150), "asr": _rate(90)}})
    assert mask_index(m, "prompt", "filtered", 500, 3) == mask_index(
        m, "prompt", "filtered", 500, 3
    )
    with pytest.raises(PsmlabError, match="reference 'filtered'"):
        mask_index({"prompt": m["prompt"], "t": m["t"]}, "prompt", "filtered")


def test_verdict_without_a_scale() -> None:
    assert verdict({}, None).startswith("no verdict")


def test_mask_index_stage_on_the_smoke_run(smoke_run) -> None:  # type: ignore[no-untyped-def]
    from psmlab.stages.align import TECHNIQUES
    from psmlab.stages.audit_common import AUDITS

    audit = json.loads((smoke_run.stage_dir("mask-index") / "audit.json").read_text())
    assert set(audit["metrics"]) == set(TECHNIQUES)
    kinds = {name.split(".")[0] for m in audit["metrics"].values() for name in m}
    assert {"slip", "prefill", "manyshot"} <= kinds <= set(AUDITS)
    trained = set(TECHNIQUES) - {"prompt", "filtered"}
    assert set(audit["verdicts"]) == trained
    for t in trained:
        model = audit["mask_index"]["models"][t]
        assert set(model["used"]) <= set(model["metrics"])
        assert audit["verdicts"][t] == model["verdict"]
    assert {s["check"][:20] for s in audit["sanity"]} and all(
        isinstance(s["passed"], bool) for s in audit["sanity"]
    )
    from psmlab.config import build_config
    from psmlab.report import write_report

    write_report(smoke_run, build_config("smoke", name="a"))
    page = (smoke_run.root / "report.html").read_text()
    assert "The mask index" in page and "Sanity checks" in page and "Verdicts" in page
