"""`psmlab run`: the registered stages in dependency order, the rho = 0 control, the report.

What a stage does lives in its module under `psmlab.stages`; this module only decides which
stages run where. Each stage reuses a finished run of itself whose inputs are unchanged,
resumes an interrupted one, and refuses to overwrite a finished one made from other inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from psmlab.config import RunConfig
from psmlab.report import write_report
from psmlab.rundir import RunDir
from psmlab.stages import StageOutput, plan, run_stage
from psmlab.ui import UI

# The rho = 0 control: the same organism without trait correlation, so cross-trait inference
# has a baseline: the base model's in-context curves, and narrow fine-tuning of its RLHF model
# (emergent misalignment; the align stages it needs run with it).
CONTROL_DIR = "control-rho0"
CONTROL_KEY = "control_rho0"  # its key in report.json
CONTROL_STAGES = ("world", "tokenizer", "pretrain", "fidelity", "emergent")
CONTROL_OPTIONS: dict[str, dict[str, Any]] = {"fidelity": {"in_context_only": True}}


def run_stages(
    run: RunDir,
    cfg: RunConfig,
    ui: UI,
    targets: Iterable[str] | None = None,
    force: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, StageOutput]:
    """Run `targets` and every stage they need (default: all registered), in dependency order;
    `options` maps a stage name to its options for this invocation."""
    options = options or {}
    return {
        stage.name: run_stage(stage, run, cfg, ui, force, options.get(stage.name))
        for stage in plan(targets)
    }


def run_all(cfg: RunConfig, runs_root: Path, ui: UI, force: bool = False, jobs: int = 1) -> Path:
    """`psmlab run`: every registered stage, the control if configured, then the report.

    `jobs` > 1 runs that many stages at a time in worker processes (`psmlab.stages.pool`),
    main run and control side by side, with the same numbers; 1 runs them here in order."""
    from psmlab.stages.align import preflight
    from psmlab.stages.pool import Arm, run_pool

    run = RunDir(runs_root / cfg.name)
    preflight(cfg, run)  # a bad constitution or spec file fails before anything is written
    run.write_run_config(cfg.model_dump(mode="json"), only_if_missing=True)
    ui.log(f"psmlab run '{cfg.name}' (preset {cfg.preset}) -> {run.root}")
    control = RunDir(run.root / CONTROL_DIR)
    arms = [Arm(run, cfg)]
    if cfg.rho_control:
        ui.log(f"control world (rho=0, same everything else) -> {control.root}")
        arms.append(Arm(control, control_config(cfg), CONTROL_STAGES, CONTROL_OPTIONS))
    if jobs > 1:
        ui.log(f"{jobs} stages at a time, in worker processes")
        run_pool(arms, ui, force, jobs)
    else:
        for arm in arms:
            run_stages(arm.run, arm.cfg, ui, arm.targets, force, arm.options)
    run.write_run_config(cfg.model_dump(mode="json"))
    path = write_report(run, cfg, {CONTROL_KEY: control})
    ui.log(f"[bold green]report[/bold green]: {path} and {path.with_suffix('.html')}")
    return path


def control_config(cfg: RunConfig) -> RunConfig:
    """The rho = 0 twin of a run: independent traits, everything else equal."""
    data = cfg.model_dump()
    data["world"]["rho"] = 0.0
    data["rho_control"] = False
    return RunConfig.model_validate(data)
