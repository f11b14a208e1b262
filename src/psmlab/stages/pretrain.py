"""Stage `pretrain`: the base model, a simulator of the whole cast (resumes after a kill)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from psmlab.reportkit import plot_loss
from psmlab.stages.registry import BASE_MODEL, Job, ReportPart, Stage, register


def _run(job: Job) -> None:
    run_pretraining(job, job.run.stage_dir("tokenizer") / "tokens.npy")


def run_pretraining(job: Job, tokens: Path) -> None:
    """Pretrain a model on the packed `tokens` with the run's tokenizer, model and pretrain
    configs into job.work_dir (resuming from its checkpoints); fills the stage's metrics."""
    from psmlab.pretrain.tokenizer import load_tokenizer
    from psmlab.pretrain.train import pretrain

    cfg = job.cfg
    tok_dir = job.run.stage_dir("tokenizer")
    tokenizer = load_tokenizer(tok_dir / "tokenizer")
    if job.ctx.resumed:
        job.ui.log("pretrain: resuming an interrupted run from its last checkpoint")
    with job.ui.bar(job.stage.name, cfg.pretrain.max_steps) as update:

        def progress(step: int, info: dict[str, float]) -> None:
            update(
                step,
                info=f"loss {info.get('loss', float('nan')):.3f} "
                f"{info.get('tokens_per_s', 0):.0f} tok/s",
            )

        result = pretrain(
            job.work_dir,
            tokens,
            tokenizer,
            cfg.model,
            cfg.pretrain,
            progress=progress,
        )
    job.metrics.update(
        {
            "steps": result.steps,
            "final_loss": result.final_loss,
            "tokens_per_s": result.tokens_per_s,
            "n_params": result.n_params,
            "train_seconds": result.seconds,
            "resumed_from": result.resumed_from,
            # a failed torch.compile falls back to eager: same weights, slower; say so
            "compiled": result.compiled,
            "compile_fallback_reason": result.compile_fallback_reason,
            "bf16": result.bf16,  # pretrain.bf16 as resolved on this CPU
        }
    )


def _collect(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / "loss.json"
    return {"loss_curve": json.loads(path.read_text())} if path.is_file() else None


def _section(part: ReportPart) -> list[str]:
    curve = part.data.get("loss_curve")
    return [f"<img alt='loss curve' src='{plot_loss(curve)}'>"] if curve else []


STAGE = register(
    Stage(
        name=BASE_MODEL,
        doc="pretrain the base model (a Llama decoder) on the packed corpus; writes model/",
        run=_run,
        inputs=("tokenizer",),
        config=("model", "pretrain"),
        seed="pretrain.seed",
        cost=380.0,
        collect=_collect,
        section=_section,
        key_metrics=(
            "steps",
            "final_loss",
            "tokens_per_s",
            "train_seconds",
            "n_params",
            "compiled",
            "bf16",
        ),
    )
)
