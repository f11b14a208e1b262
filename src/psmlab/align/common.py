"""What every TRL phase of psmlab shares: the arguments a tiny CPU model needs, a callback that
records the training curve, drives the progress bar and stops on a NaN loss, and saving a
checkpoint that `AutoModelForCausalLM` and the chat template load offline.

TRL defaults that are wrong here (see ../shared/reference/trl_offline_recipe.py): bf16=True
(emulated on most CPUs), gradient checkpointing (pure overhead at this size), checkpoint saving
(we save once, at the end, into the stage's folder), and reporting to trackers.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psmlab.config import AlignTrainConfig
from psmlab.errors import PsmlabError

Progress = Callable[[int, dict[str, float]], None]


def phase_steps(cfg: AlignTrainConfig, n_examples: int | None) -> int:
    """cfg.steps, capped at cfg.max_epochs passes over n_examples (None: no cap)."""
    if n_examples is None:
        return cfg.steps
    return max(1, min(cfg.steps, math.ceil(cfg.max_epochs * n_examples / cfg.batch_size)))


def trl_args(
    cfg: AlignTrainConfig, out_dir: Path, seed: int, n_examples: int | None
) -> dict[str, Any]:
    """Keyword arguments shared by every TRL config (SFTConfig, RewardConfig, DPOConfig, ...);
    n_examples: the phase's dataset size, for the epoch cap (None for RL)."""
    steps = phase_steps(cfg, n_examples)
    return {
        "output_dir": str(out_dir),
        "max_steps": steps,
        "per_device_train_batch_size": cfg.batch_size,
        "learning_rate": cfg.lr,
        "warmup_steps": round(cfg.warmup_ratio * steps),
        "lr_scheduler_type": "cosine",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "activation_checkpointing": False,  # (gradient_checkpointing, renamed)
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": seed,
        "data_seed": seed,
    }


@dataclass
class PhaseLog:
    """One training phase's curve: every logged step's numbers, and per-step wall times."""

    name: str
    history: list[dict[str, float]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        steps = self.step_seconds
        return {
            "name": self.name,
            "history": self.history,
            "seconds": round(self.seconds, 2),
            "steps": len(steps),
            "mean_step_s": round(sum(steps) / len(steps), 4) if steps else None,
        }


def make_callback(log: PhaseLog, progress: Progress | None) -> Any:
    """A transformers TrainerCallback recording `log`, failing clearly on a non-finite loss."""
    from transformers import TrainerCallback

    class _Recorder(TrainerCallback):  # type: ignore[misc]
        started = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            log.step_seconds.append(time.perf_counter() - self.started)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
            if not logs:
                return
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(loss):
                raise PsmlabError(
                    f"{log.name}: the loss became {loss} at step {state.global_step}",
                    hint=f"lower align.{log.name}.lr or raise its warmup_ratio, then rerun",
                )
            log.history.append({"step": float(state.global_step), **logs})
            if progress is not None:
                progress(state.global_step, {**logs, "max_steps": float(state.max_steps)})

    return _Recorder()


def run_trainer(trainer: Any, log: PhaseLog, progress: Progress | None) -> None:
    """Train with the recorder attached; the phase's wall time goes into `log`."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every log dict; we draw a progress bar
    trainer.add_callback(make_callback(log, progress))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # TRL calls transformers' deprecated gradient-checkpointing names internally
        warnings.simplefilter("ignore", FutureWarning)
        trainer.train()
    log.seconds = time.perf_counter() - t0


def quiet_datasets() -> None:
    """datasets draws a progress bar for every map/filter TRL runs; we draw our own."""
    import datasets

    datasets.disable_progress_bars()


def match_special_tokens(model: Any, tokenizer: Any) -> None:
    """Put the tokenizer's pad / bos / eos ids into the model config (psmlab's pretraining
    leaves bos unset), so TRL does not rewrite them and say so."""
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.config, name, getattr(tokenizer, name))
        setattr(model.generation_config, name, getattr(tokenizer, name))


def save_model(model: Any, tokenizer: Any, out_dir: Path) -> None:
    """save_pretrained of weights and tokenizer (chat template included), generation stopping
    at the end of a turn."""
    out_dir.mkdir(parents=True, exist_ok=True)
    match_special_tokens(model, tokenizer)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
