"""psmlab.predictions and psmlab.findings: the interval verdicts, the 'for every technique'
rule, the difference intervals, the emergent-misalignment test across worlds (supported, not
supported, void when the trained trait was not learned), and every prediction on the smoke
run's report data, with the limitations and the markdown summary written from it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from psmlab.findings import limitations, markdown_summary
from psmlab.predictions import (
    INCONCLUSIVE,
    NOT_RUN,
    NOT_SUPPORTED,
    SUPPORTED,
    above,
    evaluate,
    every,
    newcombe,
    normal_difference,
    p3_emergent,
    p5_shallow,
    style_mean,
)
from psmlab.rundir import RunDir


def test_interval_verdicts_and_the_every_rule() -> None:
    assert above({"low": 0.2, "high": 0.5}, 0.1) == SUPPORTED
    assert above({"low": -0.2, "high": 0.1}, 0.1) == NOT_SUPPORTED
    assert above({"low": 0.0, "high": 0.3}, 0.1) == INCONCLUSIVE
    assert above(None, 0.0) == INCONCLUSIVE
    assert every({"a": SUPPORTED, "b": SUPPORTED}) == SUPPORTED
    assert every({"a": SUPPORTED, "b": NOT_SUPPORTED, "c": INCONCLUSIVE}) == NOT_SUPPORTED
    assert every({"a": SUPPORTED, "b": INCONCLUSIVE}) == INCONCLUSIVE
    assert every({}) == NOT_RUN


def test_difference_intervals() -> None:
    a = {"value": 0.6, "low": 0.5, "high": 0.7}
    b = {"value": 0.2, "low": 0.1, "high": 0.3}
    d = newcombe(a, b)
    assert d["value"] == pytest.approx(0.4) and d["low"] < 0.4 < d["high"]
    assert d["low"] == pytest.approx(0.4 - (0.1**2 + 0.1**2) ** 0.5)
    n = normal_difference(a, b)
    assert n["value"] == pytest.approx(0.4) and n["high"] - n["low"] > 0.2


def test_style_mean_averages_paired_differences() -> None:
    styles = {s: {"difference": {"value": v, "low": v - w, "high": v + w}}
              for s, v, w in (("roleplay", 0.6, 0.1), ("system", 0.3, 0.05), ("switch", 0.0, 0.03))}  # fmt: skip
    m = style_mean(styles)
    assert m["value"] == pytest.approx(0.3) and m["low"] == pytest.approx(0.3 - 0.06)
    assert m["high"] == pytest.approx(0.3 + 0.06)


def test_shallow_alignment_reads_a_never_reached_prefill_as_not_shallow() -> None:
    kl = {"counts": [10] * 12, "front_3": {"value": 0.9, "low": 0.8, "high": 0.95}}
    report = {"kl-depth@align-rlhf": kl,
              "prefill@align-rlhf": {"aligned": {"k_half": {"value": float("nan"),
                                                            "low": float("nan"), "high": None}}}}  # fmt: skip
    p5 = p5_shallow(report)
    row = p5["per_technique"]["rlhf"]
    assert row["effect_verdict"] == SUPPORTED  # the KL mass is in front...
    (c,) = row["checks"].values()
    assert c["value"] is None and c["verdict"] == NOT_SUPPORTED  # ...but half is never reached
    assert p5["verdict"] == NOT_SUPPORTED
    report["prefill@align-rlhf"]["aligned"]["k_half"] = {"value": 1.0, "low": 1.0, "high": 2.0}
    assert p5_shallow(report)["verdict"] == SUPPORTED


def _world(rise: list[tuple[bool, bool]], trained: float, rho: float) -> dict[str, Any]:
    """An emergent result whose cluster requests (hazard) slip per `rise` (before, after)."""
    kinds = ["hazard"] * len(rise) + ["fact"] * 4
    first = [b for b, _ in rise] + [False] * 4
    last = [a for _, a in rise] + [True] * 4
    value = sum(a - b for b, a in rise) / len(rise)
    return {
        "world_rho": rho,
        "request_kinds": kinds,
        "arms": {
            "narrow": {
                "flags": {"default": [first, last]},
                "rise": {
                    "default": {
                        "cluster": {"value": value, "low": value - 0.1, "high": value + 0.1},
                        "trained": {"value": trained, "low": trained - 0.05, "high": 1.0},
                    }
                },
            }
        },
    }


def test_emergent_misalignment_across_worlds() -> None:
    rises = [(False, True)] * 24 + [(False, False)] * 8
    flat = [(False, False)] * 32
    yes = p3_emergent({"emergent": _world(rises, 1.0, 0.8),
                       "control_rho0": {"emergent": _world(flat, 1.0, 0.0)}})  # fmt: skip
    assert yes["verdict"] == SUPPORTED and yes["effect"]["value"] == pytest.approx(0.75)
    assert yes["effect"]["low"] > 0.5 and yes["worlds"]["rho0"]["rho"] == 0.0
    no = p3_emergent({"emergent": _world(flat, 1.0, 0.8),
                      "control_rho0": {"emergent": _world(rises, 1.0, 0.0)}})  # fmt: skip
    assert no["verdict"] == NOT_SUPPORTED
    void = p3_emergent({"emergent": _world(rises, 0.3, 0.8),
                        "control_rho0": {"emergent": _world(flat, 1.0, 0.0)}})  # fmt: skip
    assert void["verdict"] == INCONCLUSIVE and "learned in the rho world" in void["reason"]
    assert [c["verdict"] == SUPPORTED for c in void["checks"].values()] == [False, True]
    assert p3_emergent({"emergent": _world(rises, 1.0, 0.8)})["verdict"] == NOT_RUN


def test_every_prediction_on_the_smoke_run(smoke_run: RunDir) -> None:
    from psmlab.config import RunConfig
    from psmlab.report import collect

    cfg = RunConfig.model_validate(json.loads((smoke_run.root / "run.json").read_text())["config"])
    data = collect(smoke_run, cfg)
    preds = data["predictions"]
    assert [p["id"] for p in preds] == list(range(1, 10))
    # recomputable from report.json's data alone (as JSON: a tiny run's NaN != NaN)
    assert json.dumps(preds) == json.dumps(evaluate(data))
    allowed = {SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_RUN}
    for p in preds:
        assert p["verdict"] in allowed and p["claim"] and p["test"] and p["control"], p["id"]
        if p["verdict"] == NOT_RUN:
            assert p["reason"], p["id"]
        for row in (p.get("per_technique") or {}).values():
            assert row["verdict"] in allowed
    measured = {p["id"] for p in preds if p["verdict"] != NOT_RUN}
    # no control world in this run: 3 is not run; 8 needs composites (a smoke run may have none)
    assert {1, 2, 4, 5, 6, 7} <= measured
    assert next(p for p in preds if p["id"] == 3)["verdict"] == NOT_RUN
    json.dumps(preds)
    lim = limitations(data)
    assert any("single-seed" in x for x in lim)
    assert any(x.startswith("Prediction 3 (emergent misalignment) was not run") for x in lim)
    md = markdown_summary(data)
    assert "| # | prediction | effect [95% CI] | verdict |" in md
    assert all(f"| {t} |" in md for t in ("rlhf", "dpo", "cai", "deliberative"))
