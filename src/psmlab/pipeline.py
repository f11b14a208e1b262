"""The pipeline: world -> tokenizer -> pretrain -> fidelity -> report, each a resumable stage.

Each `stage_*` function runs one stage inside `RunDir.stage(...)`: it reuses a finished stage
whose inputs are unchanged, resumes an interrupted one, and refuses to overwrite a finished one
made from other inputs. Later issues (align, audit) add stages here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psmlab.config import RunConfig, WorldConfig
from psmlab.errors import RunDirError
from psmlab.rundir import RunDir, StageResult, write_json_atomic
from psmlab.ui import UI

CONTROL_DIR = "control-rho0"


@dataclass
class StageOutput:
    dir: Path
    reused: bool
    manifest: dict[str, Any]


def _finish(run: RunDir, name: str, reused: bool, ui: UI, t0: float) -> StageOutput:
    manifest = run.manifest(name)
    verb = "reused" if reused else f"done in {time.time() - t0:.1f}s"
    ui.log(f"[green]{name}[/green]: {verb} -> {run.stage_dir(name)}")
    return StageOutput(run.stage_dir(name), reused, manifest)


def stage_world(run: RunDir, cfg: WorldConfig, ui: UI, force: bool = False) -> StageOutput:
    """Write the cast, knowledge base and pretraining corpus."""
    from psmlab.world import World, write_corpus

    t0 = time.time()
    with run.stage("world", cfg.model_dump(mode="json"), seed=cfg.seed, force=force) as st:
        if not isinstance(st, StageResult):
            world = World.build(cfg)
            (st.work_dir / "world.json").write_text(world.to_json())
            with ui.bar("world: writing corpus", cfg.n_documents) as update:
                stats = write_corpus(
                    world,
                    st.work_dir / "corpus.jsonl",
                    cfg.n_documents,
                    seed=cfg.seed,
                    progress=update,
                )
            st.metrics.update(stats)
    return _finish(run, "world", isinstance(st, StageResult), ui, t0)


def stage_tokenizer(run: RunDir, cfg: RunConfig, ui: UI, force: bool = False) -> StageOutput:
    """Train the BPE tokenizer on the corpus and pack the corpus into token ids."""
    from psmlab.pretrain.data import tokenize_corpus
    from psmlab.pretrain.tokenizer import train_tokenizer

    t0 = time.time()
    corpus = run.stage_dir("world") / "corpus.jsonl"
    inputs = {"world": run.output_hash("world")}
    with run.stage("tokenizer", cfg.tokenizer.model_dump(mode="json"), inputs, force=force) as st:
        if not isinstance(st, StageResult):
            texts = _corpus_texts(corpus, cfg.tokenizer.train_documents)
            with ui.bar("tokenizer: training BPE", 1) as update:
                tok = train_tokenizer(texts, cfg.tokenizer, st.work_dir / "tokenizer")
                update(1)
            with ui.bar("tokenizer: encoding corpus", 1) as update:
                stats = tokenize_corpus(corpus, tok, st.work_dir / "tokens.npy")
                update(1)
            st.metrics.update(stats.to_dict())
    return _finish(run, "tokenizer", isinstance(st, StageResult), ui, t0)


def _corpus_texts(corpus: Path, limit: int) -> list[str]:
    texts = []
    with corpus.open() as f:
        for i, line in enumerate(f):
            if i >= limit:
                break
            texts.append(json.loads(line)["text"])
    return texts


def stage_pretrain(run: RunDir, cfg: RunConfig, ui: UI, force: bool = False) -> StageOutput:
    """Pretrain the organism on the packed corpus (resumes from checkpoints after a kill)."""
    from psmlab.pretrain.tokenizer import load_tokenizer
    from psmlab.pretrain.train import pretrain

    t0 = time.time()
    inputs = {"tokenizer": run.output_hash("tokenizer")}
    config = {
        "model": cfg.model.model_dump(mode="json"),
        "pretrain": cfg.pretrain.model_dump(mode="json"),
    }
    with run.stage("pretrain", config, inputs, seed=cfg.pretrain.seed, force=force) as st:
        if not isinstance(st, StageResult):
            tok_dir = run.stage_dir("tokenizer")
            tokenizer = load_tokenizer(tok_dir / "tokenizer")
            if st.resumed:
                ui.log("pretrain: resuming an interrupted run from its last checkpoint")
            with ui.bar("pretrain", cfg.pretrain.max_steps) as update:

                def progress(step: int, info: dict[str, float]) -> None:
                    update(
                        step,
                        info=f"loss {info.get('loss', float('nan')):.3f} "
                        f"{info.get('tokens_per_s', 0):.0f} tok/s",
                    )

                result = pretrain(
                    st.work_dir,
                    tok_dir / "tokens.npy",
                    tokenizer,
                    cfg.model,
                    cfg.pretrain,
                    progress=progress,
                )
            st.metrics.update(
                {
                    "steps": result.steps,
                    "final_loss": result.final_loss,
                    "tokens_per_s": result.tokens_per_s,
                    "n_params": result.n_params,
                    "train_seconds": result.seconds,
                    "resumed_from": result.resumed_from,
                }
            )
    return _finish(run, "pretrain", isinstance(st, StageResult), ui, t0)


def stage_fidelity(
    run: RunDir, cfg: RunConfig, ui: UI, force: bool = False, in_context_only: bool = False
) -> StageOutput:
    """Grade the base model's persona fidelity on held-out requests."""
    t0 = time.time()
    inputs = {"world": run.output_hash("world"), "pretrain": run.output_hash("pretrain")}
    config = {**cfg.fidelity.model_dump(mode="json"), "in_context_only": in_context_only}
    with run.stage("fidelity", config, inputs, force=force) as st:
        if not isinstance(st, StageResult):
            world = load_world(run)
            result = evaluate_checkpoint(
                run.stage_dir("pretrain") / "model", world, cfg, ui, in_context_only=in_context_only
            )
            write_json_atomic(st.work_dir / "fidelity.json", result)
            st.metrics.update(result["summary"])
    return _finish(run, "fidelity", isinstance(st, StageResult), ui, t0)


def stage_directions(run: RunDir, cfg: RunConfig, ui: UI, force: bool = False) -> StageOutput:
    """Trait vectors, persona space and Assistant axis of the base model (saved unit-norm)."""
    from psmlab.organism_directions import DEFAULTS, measure_checkpoint

    t0 = time.time()
    inputs = {"world": run.output_hash("world"), "pretrain": run.output_hash("pretrain")}
    with run.stage("directions", dict(DEFAULTS), inputs, force=force) as st:
        if not isinstance(st, StageResult):
            world = load_world(run)
            model_dir = run.stage_dir("pretrain") / "model"
            result = measure_checkpoint(model_dir, world, ui, cfg.pretrain.threads, st.work_dir)
            write_json_atomic(st.work_dir / "directions.json", result)
            st.metrics.update(result["summary"])
    return _finish(run, "directions", isinstance(st, StageResult), ui, t0)


def evaluate_checkpoint(
    model_dir: Path, world: Any, cfg: RunConfig, ui: UI, in_context_only: bool = False
) -> dict[str, Any]:
    """Load a checkpoint offline and measure its persona fidelity; returns a JSON-able dict."""
    from psmlab._env import set_torch_threads
    from psmlab.fidelity import evaluate_fidelity
    from psmlab.models import load_model_and_tokenizer

    set_torch_threads(cfg.pretrain.threads)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    t0 = time.time()
    with ui.bar("fidelity: answering probes", 1) as update:
        result = evaluate_fidelity(
            model,
            tokenizer,
            world,
            cfg.fidelity,
            in_context_only=in_context_only,
            progress=lambda done, total: update(done, total=total),
        )
    out = result.to_dict()
    out["summary"] = result.summary()
    out["eval_seconds"] = round(time.time() - t0, 2)
    out["model_dir"] = str(model_dir)
    return out


def run_all(cfg: RunConfig, runs_root: Path, ui: UI, force: bool = False) -> Path:
    """`psmlab run`: every stage that exists, then the report."""
    from psmlab.report import write_report

    run = RunDir(runs_root / cfg.name)
    run.write_run_config(cfg.model_dump(mode="json"), only_if_missing=True)
    ui.log(f"psmlab run '{cfg.name}' (preset {cfg.preset}) -> {run.root}")
    stage_world(run, cfg.world, ui, force)
    stage_tokenizer(run, cfg, ui, force)
    stage_pretrain(run, cfg, ui, force)
    stage_fidelity(run, cfg, ui, force)
    stage_directions(run, cfg, ui, force)
    if cfg.rho_control:
        control = control_config(cfg)
        crun = RunDir(run.root / CONTROL_DIR)
        ui.log(f"control world (rho=0, same everything else) -> {crun.root}")
        stage_world(crun, control.world, ui, force)
        stage_tokenizer(crun, control, ui, force)
        stage_pretrain(crun, control, ui, force)
        stage_fidelity(crun, control, ui, force, in_context_only=True)
    run.write_run_config(cfg.model_dump(mode="json"))
    path = write_report(run, cfg)
    ui.log(f"[bold green]report[/bold green]: {path} and {path.with_suffix('.html')}")
    return path


def control_config(cfg: RunConfig) -> RunConfig:
    """The rho = 0 twin of a run: independent traits, everything else equal."""
    data = cfg.model_dump()
    data["world"]["rho"] = 0.0
    data["rho_control"] = False
    return RunConfig.model_validate(data)


def load_world(run: RunDir) -> Any:
    """The run's own world (world.json), not a rebuild from config: the ground truth a model
    was trained on stays the one it is graded against, whatever the generator's version."""
    from psmlab.world import World

    path = require_finished(run, "world") / "world.json"
    try:
        return World.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDirError(
            f"{path} cannot be read as a world: {exc}",
            hint="the world stage is corrupt: rerun with --force to rebuild it",
        ) from None


def require_finished(run: RunDir, stage: str) -> Path:
    if not run.is_finished(stage):
        raise RunDirError(
            f"{run.root} has no finished '{stage}' stage",
            hint="run `psmlab run` (or the stage's command) for this run first",
        )
    return run.stage_dir(stage)
