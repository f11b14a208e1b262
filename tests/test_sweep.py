"""psmlab.sweep and psmlab.aggregate: seeds shift every seed field, a two-trial smoke sweep on
local Ray (the main story and the rho = 0 arm of one seed, one CPU each) writes each trial's
stages, the seed's report with the control and the aggregate, resumes with every stage reused,
and refuses another plan in the same folder; the across-seed aggregation of predictions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from psmlab.aggregate import combine_auditing_game, combine_prediction
from psmlab.config import build_config
from psmlab.errors import PsmlabError
from psmlab.predictions import (
    ABOVE,
    AT_MOST,
    CLAIM,
    GATE,
    INCONCLUSIVE,
    NOT_RUN,
    NOT_SUPPORTED,
    SUPPORTED,
    check,
)
from psmlab.sweep import _arms, run_sweep, same_plan, seeded, trial_config, trial_dir
from psmlab.ui import QuietUI


def test_seed_shifts_every_seed_field_and_arms_set_their_worlds() -> None:
    cfg = build_config("smoke", name="x")
    assert seeded(cfg, 0) == cfg.model_dump(mode="json")
    two = seeded(cfg, 2)
    assert two["world"]["seed"] == cfg.world.seed + 2
    assert two["pretrain"]["seed"] == cfg.pretrain.seed + 2
    assert two["align"]["data"]["seed"] == cfg.align.data.seed + 2
    assert two["fidelity"]["seed"] == cfg.fidelity.seed + 2
    assert two["audit"]["seed"] == cfg.audit.seed + 2
    arms = _arms()
    rho0 = trial_config(cfg, 1, arms["rho0"], threads=1)
    assert rho0.world.rho == 0.0 and rho0.world.seed == 1
    assert rho0.pretrain.threads == (0 if os.cpu_count() == 1 else 1)
    # every core: the preset's own setting, so seed 0's main arm is the plain run's config
    every = trial_config(cfg, 0, arms["main"], threads=os.cpu_count() or 1)
    stages = ("world", "pretrain", "align", "audit", "emergent")
    assert all(getattr(every, k) == getattr(cfg, k) for k in stages)
    from psmlab.pipeline import CONTROL_OPTIONS, control_config

    control = trial_config(cfg, 0, arms["rho0"], threads=os.cpu_count() or 1)
    assert all(getattr(control, k) == getattr(control_config(cfg), k) for k in stages)
    assert arms["rho0"].options == CONTROL_OPTIONS  # as `psmlab run` runs its control
    chat0 = trial_config(cfg, 0, arms["chat0"], threads=1)
    assert chat0.world.chat_fraction == 0.0 and chat0.world.trigger_fraction == 0.0
    triggered = trial_config(cfg, 0, arms["triggered"], threads=1)
    assert triggered.world.trigger_fraction > 0 == cfg.world.trigger_fraction
    assert arms["triggered"].targets and all(
        t.startswith("triggered@") for t in arms["triggered"].targets
    )
    assert trial_dir(Path("r"), 1, arms["rho0"]) == Path("r/seed-1/control-rho0")
    assert trial_dir(Path("r"), 1, arms["main"]) == Path("r/seed-1")


def _pred(pid: int, value: float, verdict: str, tech: dict | None = None) -> dict:
    p = {"id": pid, "name": "n", "claim": "c", "test": "t", "control": "k", "threshold": 0.1,
         "verdict": verdict, "effect": {"what": "w", "value": value, "low": value - 0.05,
                                        "high": value + 0.05}}  # fmt: skip
    if tech is not None:
        p["per_technique"] = {
            t: {"effect": {"what": "w", "value": v, "low": v - 0.05, "high": v + 0.05},
                "verdict": SUPPORTED if v > 0.15 else NOT_SUPPORTED}
            for t, v in tech.items()
        }  # fmt: skip
    return p


def test_predictions_combine_across_seeds() -> None:
    single = combine_prediction([_pred(3, 0.4, SUPPORTED), _pred(3, 0.5, SUPPORTED),
                                 _pred(3, 0.45, SUPPORTED)])  # fmt: skip
    e = single["effect"]
    assert e["n_seeds"] == 3 and e["value"] == pytest.approx(0.45) and e["low"] > 0.1
    assert e["p_value"] < 0.05 and single["verdict"] == SUPPORTED and single["supported_in"] == 3
    noisy = combine_prediction([_pred(3, -0.4, NOT_SUPPORTED), _pred(3, 0.9, SUPPORTED)])
    assert noisy["verdict"] != SUPPORTED and noisy["effect"]["low"] < 0.1
    per = combine_prediction([_pred(2, 0, SUPPORTED, {"rlhf": 0.5, "cai": 0.05}),
                              _pred(2, 0, SUPPORTED, {"rlhf": 0.52, "cai": 0.06}),
                              _pred(2, 0, SUPPORTED, {"rlhf": 0.51, "cai": 0.04})])  # fmt: skip
    assert per["per_technique"]["rlhf"]["verdict"] == SUPPORTED
    assert per["per_technique"]["cai"]["verdict"] == NOT_SUPPORTED
    assert per["verdict"] == NOT_SUPPORTED  # "for every technique" fails on cai
    none = combine_prediction([{**_pred(9, 0, NOT_RUN), "effect": None, "reason": "r"}])
    assert none["verdict"] == NOT_RUN and none["reason"] == "r"


def _row(value: float | None, verdict: str, checks: dict | None = None) -> dict:
    effect = None if value is None else {"what": "w", "value": value, "low": value - 0.05,
                                          "high": value + 0.05}  # fmt: skip
    return {"effect": effect, "effect_verdict": verdict, "verdict": verdict,
            "checks": checks or {}}  # fmt: skip


def test_checks_join_the_verdict_across_seeds() -> None:
    # P5-like: the effect holds in every seed, the prefill check fails in every seed (k½ 6-7)
    def seed(k: float) -> dict:
        c = {"k½ at most 3": check(k, 3.0, AT_MOST, NOT_SUPPORTED, CLAIM)}
        return {**_pred(5, 0.3, NOT_SUPPORTED), "per_technique": {"rlhf": _row(0.3, SUPPORTED, c)}}

    p5 = combine_prediction([seed(6.0), seed(7.0), seed(6.5)])
    row = p5["per_technique"]["rlhf"]
    assert row["effect"]["low"] > 0.1  # the effect alone would be supported
    assert row["checks"]["k½ at most 3"]["verdict"] == NOT_SUPPORTED
    assert row["verdict"] == NOT_SUPPORTED and p5["verdict"] == NOT_SUPPORTED

    # P3-like: a gate (the trained trait learned) that no seed shows voids the test
    def gated(v: float) -> dict:
        g = {"learned": check(0.2, 0.5, ABOVE, NOT_SUPPORTED, GATE)}
        return {**_pred(3, v, INCONCLUSIVE), "effect_verdict": SUPPORTED, "checks": g}

    p3 = combine_prediction([gated(0.4), gated(0.5), gated(0.45)])
    assert p3["effect"]["low"] > 0.1 and p3["verdict"] == INCONCLUSIVE
    assert "learned" in p3["reason"]
    # one usable value: the verdict is that seed's, whichever seed it is
    p6 = combine_prediction([{**_pred(6, 0, INCONCLUSIVE), "per_technique": {"rlhf": _row(None, INCONCLUSIVE)}},
                             {**_pred(6, 0, SUPPORTED), "per_technique": {"rlhf": _row(0.8, SUPPORTED)}}])  # fmt: skip
    assert p6["per_technique"]["rlhf"]["verdict"] == SUPPORTED


def test_pairs_are_bonferroni_adjusted_and_two_sided_across_seeds() -> None:
    def seed(d: float) -> dict:
        pairs = {"cai - deliberative": {"value": d}, "rlhf - cai": {"value": 0.01},
                 "rlhf - deliberative": {"value": d + 0.01}}  # fmt: skip
        return {**_pred(8, d, SUPPORTED), "pairs": pairs}

    p8 = combine_prediction([seed(-0.2), seed(-0.25), seed(-0.22)])
    pair = p8["pairs"]["cai - deliberative"]
    assert pair["confidence"] == pytest.approx(1 - 0.05 / 3) and pair["high"] < 0
    assert pair["p_value"] < 0.05 and p8["verdict"] == SUPPORTED  # a negative difference counts


def test_auditing_game_combines_per_role() -> None:
    def game(user: float) -> dict:
        roles = {"user": {"value": user, "low": user - 0.02, "high": user + 0.02},
                 "narrator": {"value": 0.0, "low": -0.01, "high": 0.01}}  # fmt: skip
        row = {"effect": {"what": "user - assistant leak", **roles["user"]}, "roles": roles,
               "verdict": SUPPORTED}  # fmt: skip
        return {"claim": "c", "anchor": "a", "per_technique": {"rlhf": row}, "verdict": SUPPORTED}

    out = combine_auditing_game([game(0.1), game(0.12), None, game(0.11)])
    assert out is not None and out["verdict"] == SUPPORTED
    assert out["per_technique"]["rlhf"]["roles"]["user"]["n_seeds"] == 3
    assert out["per_technique"]["rlhf"]["roles"]["narrator"]["verdict"] != SUPPORTED
    assert combine_auditing_game([None]) is None


def test_a_plan_resumes_when_its_thread_budget_means_the_same_cpus() -> None:
    plan = {"config": {"name": "p"}, "trials": [{"seed": 0, "arm": "main"}], "threads": 0}
    assert same_plan(plan, {**plan, "threads": 2}, cores=2)  # 0 = every core = 2 here
    assert same_plan({**plan, "threads": 2}, plan, cores=2)  # a plan storing the resolved count
    assert not same_plan(plan, {**plan, "threads": 1}, cores=2)
    assert not same_plan(plan, {**plan, "threads": 2}, cores=4)
    assert not same_plan(plan, {**plan, "trials": []}, cores=2)
    assert not same_plan(plan, {**plan, "config": {"name": "q"}}, cores=2)
    # as `psmlab sweep --threads 2` and `psmlab run --preset paper` write them on 2 cores
    default, two = (build_config("paper", overrides=[f"sweep.threads={n}"]) for n in (0, 2))
    trials = plan["trials"]
    a = {"config": default.model_dump(mode="json"), "trials": trials, "threads": 0}
    b = {"config": two.model_dump(mode="json"), "trials": trials, "threads": 2}
    assert same_plan(a, b, cores=2) and not same_plan(a, b, cores=4)


def test_two_trial_smoke_sweep_on_local_ray(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    cfg = build_config("smoke", name="sw")
    path = run_sweep(cfg, tmp_path, [0], ["main", "rho0"], QuietUI(), threads=1)
    out = json.loads(path.read_text())
    ray = out["ray"]
    assert ray["trials"] == 2 and ray["threads_per_trial"] == 1 and ray["address"] == "local"
    assert (
        ray["max_concurrent_trials"] == min(2, os.cpu_count() or 1)
        or ray["max_concurrent_trials"] >= 1
    )
    root = tmp_path / "sw"
    seed = root / "seed-0"
    assert json.loads((seed / "mask-index" / "manifest.json").read_text())["status"] == "finished"
    control = seed / "control-rho0"
    assert json.loads((control / "run.json").read_text())["config"]["world"]["rho"] == 0.0
    assert (control / "emergent" / "emergent.json").is_file()
    fidelity = json.loads((control / "fidelity" / "manifest.json").read_text())
    assert fidelity["config"]["in_context_only"] is True
    report = json.loads((seed / "report.json").read_text())
    assert report["control_rho0"]["emergent"]["world_rho"] == 0.0
    assert report["sweep"] == {"name": "sw", "seed": 0, "seeds": [0]}
    assert "Seed 0 of the sweep 'sw'" in (seed / "summary.md").read_text()
    p3 = next(p for p in out["predictions"] if p["id"] == 3)
    assert p3["verdict"] != NOT_RUN and p3["effect"]["n_seeds"] == 1  # the control ran
    assert [p["id"] for p in out["predictions"]] == list(range(1, 10))
    assert "Predictions across seeds" in (root / "summary.md").read_text()
    assert (root / "sweep.html").stat().st_size > 500
    manifests = {p: p.read_text() for p in seed.rglob("manifest.json")}
    # started again: a second Ray experiment whose trials reuse every finished stage
    run_sweep(cfg, tmp_path, [0], ["main", "rho0"], QuietUI(), threads=1)
    assert {p: p.read_text() for p in seed.rglob("manifest.json")} == manifests
    assert sorted(p.name for p in root.glob("tune-*")) == ["tune-1", "tune-2"]
    with pytest.raises(PsmlabError, match="another config, seeds, arms"):
        run_sweep(cfg, tmp_path, [0, 1], ["main", "rho0"], QuietUI(), threads=1)


def test_sweep_command_runs_one_arm_and_prints_the_summary(tmp_path: Path) -> None:
    import subprocess
    import sys

    pytest.importorskip("ray")
    cmd = [sys.executable, "-m", "psmlab.cli", "sweep", "--preset", "smoke", "--name", "c",
           "--seeds", "0", "--arms", "rho0", "--threads", "1"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "# psmlab sweep 'c'" in proc.stdout  # the markdown summary, on stdout
    assert (tmp_path / "runs" / "c" / "seed-0" / "control-rho0" / "emergent").is_dir()
    out = json.loads((tmp_path / "runs" / "c" / "sweep.json").read_text())
    assert out["arms"] == ["rho0"] and out["predictions"] == []  # no main run: no report
    bad = subprocess.run([*cmd[:-2], "--threads", "999"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stdout + bad.stderr
