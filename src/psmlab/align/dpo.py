"""rlhf --variant dpo: TRL's DPOTrainer on the same rater preferences, from the SFT policy.

DPO optimises the RLHF objective (reward minus beta * KL to the reference) in closed form,
with the SFT policy as the frozen reference, so the KL tie that keeps the simulator intact is
built into the loss (`align.dpo_beta`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psmlab.align.common import PhaseLog, Progress, run_trainer, trl_args
from psmlab.align.rlhf import preference_dataset
from psmlab.config import AlignTrainConfig


def train_dpo(
    policy: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    cfg: AlignTrainConfig,
    beta: float,
    work_dir: Path,
    seed: int,
    max_length: int,
    progress: Progress | None = None,
    name: str = "dpo",
) -> PhaseLog:
    """Train `policy` in place on rater rows; the reference is a frozen copy made by TRL."""
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        **trl_args(cfg, work_dir / "trainer", seed, len(rows)), beta=beta, max_length=max_length
    )
    policy.train()
    trainer = DPOTrainer(
        model=policy,
        args=args,
        train_dataset=preference_dataset(rows),
        processing_class=tokenizer,
    )
    log = PhaseLog(name)
    run_trainer(trainer, log, progress)
    policy.eval()
    return log
