"""Supervised fine-tuning on Assistant demonstrations with pretraining replay (TRL SFTTrainer).

The rows are pre-tokenized (`psmlab.align.data.sft_rows`): demonstration rows carry the loss on
assistant turns only, replay rows on every token, so one batch mixes selecting the Assistant
with rehearsing the simulator. This is the first phase of rlhf (and dpo), of SL-CAI and of the
filtered reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psmlab.align.common import PhaseLog, Progress, run_trainer, trl_args
from psmlab.config import AlignTrainConfig
from psmlab.models import check_chat_template


def train_sft(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    cfg: AlignTrainConfig,
    work_dir: Path,
    seed: int,
    progress: Progress | None = None,
    name: str = "sft",
) -> PhaseLog:
    """Train `model` in place on `rows` ({"input_ids", "labels"}); returns its curve."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    check_chat_template(tokenizer, work_dir)
    max_length = max(len(r["input_ids"]) for r in rows)
    args = SFTConfig(
        **trl_args(cfg, work_dir / "trainer", seed, len(rows)),
        max_length=max_length,
        packing=False,
    )
    model.train()
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    log = PhaseLog(name)
    run_trainer(trainer, log, progress)
    model.eval()
    return log
