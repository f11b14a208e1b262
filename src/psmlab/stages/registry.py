"""The stage registry: `psmlab run`, the CLI and the report are all built from it.

A stage is declared once, in its own module under `psmlab.stages`, as a `Stage` and passed to
`register`. The declaration says what the stage reads (upstream stages, RunConfig fields), how
it works (`run`, handed a `Job`) and how it appears in the report (`collect`, `section`).
Executing it (`run_stage`) goes through `RunDir.stage`, so every registered stage is reused when
its inputs are unchanged, resumed after a kill, and never overwritten silently.

Evaluation stages measure a model folder (`<model stage>/model/`). The same measurement must
later run on the base model and on every aligned model, so it is declared once, bound to the
base model (`model_input=BASE_MODEL`), and rebound with `evaluation_stage(kind, model_stage)`,
which yields e.g. `fidelity@align-rlhf` with the same body, config and report hooks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from psmlab.config import RunConfig
from psmlab.errors import PsmlabError, RunDirError
from psmlab.rundir import RunDir, StageContext, StageResult
from psmlab.ui import UI

BASE_MODEL = "pretrain"  # the stage whose model/ is the base model
# top-level keys of report.json that are not stage names (control_rho0: the rho=0 sub-run)
RESERVED = frozenset(
    {"run", "config", "stages", "targets", "control_rho0", "arm_chat0", "arm_triggered",
     "predictions",
     "limitations", "seeds"}
)  # fmt: skip

ConfigOf = Callable[[RunConfig], BaseModel]


@dataclass
class Job:
    """What a stage's `run` is handed: the run, its config, and the folder to fill."""

    stage: Stage
    run: RunDir
    cfg: RunConfig
    ui: UI
    ctx: StageContext
    options: Mapping[str, Any]  # the stage's options for this invocation (defaults filled in)

    @property
    def work_dir(self) -> Path:
        return self.ctx.work_dir

    @property
    def metrics(self) -> dict[str, Any]:
        """Recorded in the stage's manifest."""
        return self.ctx.metrics

    @property
    def model_dir(self) -> Path:
        """The model folder an evaluation stage measures."""
        if self.stage.model_input is None:
            raise TypeError(f"stage '{self.stage.name}' evaluates no model (no model_input)")
        return self.run.stage_dir(self.stage.model_input) / "model"

    def config(self) -> Any:
        """The stage's validated config: one pydantic model, or {key: model} for several."""
        return self.stage.config_models(self.cfg)


@dataclass(frozen=True)
class ReportPart:
    """What a stage's `section` is handed to render its part of report.html."""

    stage: Stage
    data: Any  # what the stage's `collect` returned (as stored in report.json)
    report: Mapping[str, Any]  # the whole report: config, other stages' data, control runs

    @property
    def model_label(self) -> str:
        """Which model an evaluation section is about, for its heading."""
        model = self.stage.model_input
        return "base model" if model in (None, BASE_MODEL) else f"'{model}' model"


@dataclass(frozen=True)
class Stage:
    """One resumable step of `psmlab run`, declared in one module under `psmlab.stages`."""

    name: str  # folder name under runs/<name>/ and key in report.json
    doc: str  # one line, for `psmlab stages` and the CLI help
    run: Callable[[Job], None]  # does the work in job.work_dir, fills job.metrics
    inputs: tuple[str, ...] = ()  # upstream stages whose output hashes feed the input hash
    # RunConfig fields (dotted paths) whose values are the stage config; several are recorded
    # as {path: values}. A callable returning a pydantic model is for configs outside RunConfig
    # (toy stages in tests); such a config cannot be set with --set.
    config: tuple[str, ...] | ConfigOf = ()
    seed: str | None = None  # dotted RunConfig path recorded as the manifest's seed
    model_input: str | None = None  # evaluation stages: the stage whose model/ they measure
    # per-invocation switches with their defaults (e.g. fidelity's in_context_only for the
    # rho=0 control); recorded in the stage config, so they change the input hash
    options: Mapping[str, Any] = field(default_factory=dict)
    collect: Callable[[Path], Any] | None = None  # finished stage dir -> report.json data
    section: Callable[[ReportPart], list[str]] | None = None  # -> HTML fragments
    key_metrics: tuple[str, ...] = ()  # manifest metrics shown in the report's stage table
    # rough wall time on the quick preset, in seconds: only a scheduling hint, so that the
    # stage pool starts the longest chains (the pretrainings) first; results never depend on it
    cost: float = 10.0

    @property
    def kind(self) -> str:
        """The measurement an evaluation stage makes, whatever model it is bound to."""
        return self.name.split("@", 1)[0]

    @property
    def upstream(self) -> tuple[str, ...]:
        return self.inputs + ((self.model_input,) if self.model_input else ())

    @property
    def config_keys(self) -> tuple[str, ...]:
        return self.config if isinstance(self.config, tuple) else ()

    def config_models(self, cfg: RunConfig) -> Any:
        if not isinstance(self.config, tuple):
            return self.config(cfg)
        if len(self.config) == 1:
            return resolve(cfg, self.config[0])
        return {key: resolve(cfg, key) for key in self.config}

    def config_record(self, cfg: RunConfig, options: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON config of one invocation, as hashed and stored in the manifest."""
        models = self.config_models(cfg)
        if isinstance(models, BaseModel):
            record = models.model_dump(mode="json")
        else:
            record = {key: m.model_dump(mode="json") for key, m in models.items()}
        return {**record, **options}


@dataclass
class StageOutput:
    dir: Path
    reused: bool
    manifest: dict[str, Any]


_REGISTRY: dict[str, Stage] = {}


def resolve(cfg: RunConfig, path: str) -> Any:
    """`resolve(cfg, "pretrain.seed")` -> cfg.pretrain.seed."""
    node: Any = cfg
    for part in path.split("."):
        node = getattr(node, part)
    return node


def register(stage: Stage) -> Stage:
    """Add a stage (at import of its module); returns it so a module can keep a handle."""
    if stage.name in _REGISTRY:
        raise ValueError(f"stage '{stage.name}' is already registered")
    if stage.name in RESERVED or "/" in stage.name or stage.name.endswith(".partial"):
        raise ValueError(f"'{stage.name}' cannot be a stage name")
    defaults = RunConfig()
    for path in (*stage.config_keys, *([stage.seed] if stage.seed else [])):
        try:
            resolve(defaults, path)
        except AttributeError:
            raise ValueError(f"stage '{stage.name}': RunConfig has no field '{path}'") from None
    _REGISTRY[stage.name] = stage
    return stage


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> Stage:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PsmlabError(
            f"unknown stage '{name}'", hint=f"registered stages: {', '.join(_REGISTRY)}"
        ) from None


def stages() -> list[Stage]:
    """Every registered stage, in registration order."""
    return list(_REGISTRY.values())


def evaluation_stage(kind: str, model_stage: str, tag: str | None = None) -> Stage:
    """The evaluation `kind` (a registered stage with a model_input) bound to the model of
    `model_stage`: same body, config and report hooks, named `kind@tag` (tag: model_stage)."""
    base = get(kind)
    if base.model_input is None:
        raise ValueError(f"stage '{kind}' evaluates no model, so it cannot be rebound")
    return replace(base, name=f"{kind}@{tag or model_stage}", model_input=model_stage)


def plan(targets: Iterable[str] | None = None) -> list[Stage]:
    """Stages in dependency order: all registered ones, or `targets` and what they need.
    Ties keep registration order, so the order of `psmlab run` is stable."""
    names = list(_REGISTRY) if targets is None else list(targets)
    order: list[Stage] = []
    visiting: set[str] = set()

    def visit(name: str, needed_by: str | None) -> None:
        if name in (s.name for s in order):
            return
        if name in visiting:
            raise ValueError(f"stage dependency cycle through '{name}'")
        if name not in _REGISTRY and needed_by is not None:
            raise ValueError(f"stage '{needed_by}' needs '{name}', which is not registered")
        stage = get(name)
        visiting.add(name)
        for up in stage.upstream:
            visit(up, name)
        visiting.discard(name)
        order.append(stage)

    for name in names:
        visit(name, None)
    return order


def run_stage(
    stage: Stage,
    run: RunDir,
    cfg: RunConfig,
    ui: UI,
    force: bool = False,
    options: Mapping[str, Any] | None = None,
) -> StageOutput:
    """Run one stage inside `RunDir.stage`: reuse it, resume it, or do it."""
    unknown = set(options or {}) - set(stage.options)
    if unknown:
        raise ValueError(f"stage '{stage.name}' has no option(s) {sorted(unknown)}")
    opts = {**stage.options, **(options or {})}
    config = stage.config_record(cfg, opts)
    inputs = {name: run.output_hash(name) for name in stage.upstream}
    seed = resolve(cfg, stage.seed) if stage.seed else None
    t0 = time.time()
    with run.stage(stage.name, config, inputs, seed=seed, force=force) as st:
        if isinstance(st, StageContext):
            stage.run(Job(stage, run, cfg, ui, st, opts))
    reused = isinstance(st, StageResult)
    verb = "reused" if reused else f"done in {time.time() - t0:.1f}s"
    ui.log(f"[green]{stage.name}[/green]: {verb} -> {run.stage_dir(stage.name)}")
    return StageOutput(run.stage_dir(stage.name), reused, run.manifest(stage.name))


def require_finished(run: RunDir, stage: str) -> Path:
    if not run.is_finished(stage):
        raise RunDirError(
            f"{run.root} has no finished '{stage}' stage",
            hint="run `psmlab run` (or the stage's command) for this run first",
        )
    return run.stage_dir(stage)
