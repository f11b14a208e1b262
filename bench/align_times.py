"""Where post-training time goes: per-stage wall times of a finished run, then the SFT and RL
phases re-run with timers around their parts (generation, reward scoring, forward + backward,
the rest of a step: optimizer, data, logging).

Usage (after `psmlab run`):
    python bench/align_times.py runs/default [--sft-steps 60] [--rl-steps 20]

The re-runs train throwaway copies in memory (nothing in the run changes) with the run's
config, fewer steps; times are per step, so they compare with the stage's full run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psmlab  # noqa: F401  (offline env before torch)
from psmlab._env import set_torch_threads
from psmlab.align import data as D
from psmlab.align.common import match_special_tokens, quiet_datasets
from psmlab.align.rlhf import train_rl
from psmlab.align.sft import train_sft
from psmlab.config import RunConfig
from psmlab.models import load_model_and_tokenizer
from psmlab.rundir import RunDir
from psmlab.stages.align import SFT, TECHNIQUES
from psmlab.world import World

TIMES: dict[str, list[float]] = defaultdict(list)


def timed(cls: Any, name: str, label: str) -> None:
    """Wrap cls.name so every call's wall time is appended to TIMES[label]."""
    original: Callable[..., Any] = getattr(cls, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[label].append(time.perf_counter() - t0)

    setattr(cls, name, wrapper)


def stage_times(run: RunDir) -> None:
    print("per-stage wall time (manifests)")
    finished = [p.name for p in run.root.iterdir() if (p / "manifest.json").is_file()]
    for stage in sorted(s for s in finished if ".old-" not in s):
        m = run.manifest(stage)
        phases = {k: v for k, v in m["metrics"].items() if k.endswith(("_seconds", "_mean_step_s"))}
        if stage.startswith(("align", "behaviour")):
            print(f"  {stage:28s} {m['wall_time_s']:7.1f} s  {phases}")


def report(label: str, steps: list[float]) -> None:
    n = len(steps)
    total = sum(steps)
    print(f"{label}: {n} steps, {total / n:.4f} s/step")
    for part, values in sorted(TIMES.items()):
        print(f"  {part:34s} {sum(values) / n:.4f} s/step ({100 * sum(values) / total:4.1f} %)")
    parts = sum(sum(v) for v in TIMES.values())
    print(f"  {'rest (optimizer, data, logging)':34s} {(total - parts) / n:.4f} s/step")
    TIMES.clear()


def main() -> None:
    from transformers import Trainer
    from trl import GRPOTrainer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--rl-steps", type=int, default=20)
    args = ap.parse_args()
    run = RunDir.open_existing(args.run)
    cfg = RunConfig.model_validate(json.loads((args.run / "run.json").read_text())["config"])
    set_torch_threads(cfg.pretrain.threads)
    quiet_datasets()
    stage_times(run)
    world = World.from_json((run.stage_dir("world") / "world.json").read_text())
    scratch = Path(tempfile.mkdtemp(prefix="align-times"))

    # SFT: forward + backward (Trainer.training_step) against the whole step
    timed(Trainer, "training_step", "forward + backward")
    model, tok = load_model_and_tokenizer(run.stage_dir("pretrain") / "model")
    match_special_tokens(model, tok)
    demos = D.demonstrations(world, cfg.align.data)
    corpus = run.stage_dir("world") / "corpus.jsonl"
    replay = D.replay_texts(corpus, D.n_replay(len(demos), cfg.align.data.replay_fraction), 0)
    rows = D.sft_rows(tok, demos, replay, cfg.align.data.max_length, 0)
    sft_cfg = cfg.align.sft.model_copy(update={"steps": args.sft_steps})
    log = train_sft(model, tok, rows, sft_cfg, scratch, 0)
    report(f"sft (batch {sft_cfg.batch_size})", log.step_seconds)

    # RL: generation, reward-model scoring, loss forward + backward, the rest
    from transformers import AutoModelForSequenceClassification

    timed(GRPOTrainer, "_generate", "generation")
    timed(GRPOTrainer, "_calculate_rewards", "reward scoring")
    policy, tok = load_model_and_tokenizer(run.stage_dir(SFT) / "model")
    rm_dir = run.stage_dir(TECHNIQUES["rlhf"]) / "reward_model"
    reward_model = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1)
    rl = cfg.align.rlhf.rl
    rl = rl.model_copy(update={"train": rl.train.model_copy(update={"steps": args.rl_steps})})
    n = rl.train.steps * rl.train.batch_size // rl.generations + 1
    requests = D.prompt_requests(world, n, 0, "rl")
    log = train_rl(policy, tok, [reward_model], requests, rl, scratch, 0)
    # generation and scoring happen inside training_step, so take them out of it
    inner = sum(TIMES["generation"]) + sum(TIMES["reward scoring"])
    TIMES["forward + backward"] = [sum(TIMES["forward + backward"]) - inner]
    report(
        f"{rl.algorithm} (batch {rl.train.batch_size}, group {rl.generations})", log.step_seconds
    )


if __name__ == "__main__":
    main()
