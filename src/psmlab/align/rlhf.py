"""RLHF in miniature, on TRL: compare responses, a reward model, online RL against it.

1. `sample_pairs`: for each post-split prompt one response sampled (temperature 1) from the SFT
   policy and one from the pretrained model, in random order. As InstructGPT's labellers
   compared outputs of several models, the pair then spans both sides of a trait often enough
   for the raters' preferences (`psmlab.align.raters`) to carry information.
2. `train_reward_model`: TRL `RewardTrainer` (the SFT policy's backbone with a scalar head) on
   the raters' labels; `reward_accuracy` checks it on held-out pairs against the ground truth.
3. `train_rl`: TRL `GRPOTrainer` (or `RLOOTrainer`) with the reward model in `reward_funcs` and
   a KL penalty `beta > 0` to the SFT policy, which keeps the policy near the simulator.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psmlab import prompts
from psmlab.align.common import PhaseLog, Progress, run_trainer, trl_args
from psmlab.align.data import conversation, preference_row
from psmlab.config import AlignTrainConfig, OnlineRLConfig
from psmlab.world import Request


def sample_answers(
    model: Any,
    tokenizer: Any,
    requests: Sequence[Request],
    max_new_tokens: int,
    seed: int,
    greedy: bool = False,
) -> list[str]:
    """One chat-form answer per request (no system turn), sampled at temperature 1."""
    from psmlab.internals.generation import generate_batch

    texts = [prompts.chat(prompts.chat_exchanges(None, [], r.text), True) for r in requests]
    ids = [[tokenizer.bos_token_id, *tokenizer.encode(t, add_special_tokens=False)] for t in texts]
    gens = generate_batch(
        model, tokenizer, ids, max_new_tokens, batch_size=64, greedy=greedy, seed=seed
    )
    return [g.text.strip() for g in gens]


def sample_pairs(
    policy: Any,
    base: Any,
    tokenizer: Any,
    requests: Sequence[Request],
    max_new_tokens: int,
    seed: int,
) -> list[tuple[Request, str, str]]:
    """(request, a, b): one SFT-policy and one base-model sample per request, order shuffled."""
    mine = sample_answers(policy, tokenizer, requests, max_new_tokens, seed)
    theirs = sample_answers(base, tokenizer, requests, max_new_tokens, seed + 1)
    rng = random.Random(f"psmlab-pairs:{seed}")
    out = []
    for req, a, b in zip(requests, mine, theirs, strict=True):
        out.append((req, a, b) if rng.random() < 0.5 else (req, b, a))
    return out


def preference_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """TRL's conversational preference format from rater (or AI-judge) rows."""
    from datasets import Dataset

    return Dataset.from_list(
        [preference_row(r["request"], r["chosen"], r["rejected"]) for r in rows]
    )


def train_reward_model(
    policy_dir: Path,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    cfg: AlignTrainConfig,
    work_dir: Path,
    seed: int,
    max_length: int,
    progress: Progress | None = None,
) -> tuple[Any, PhaseLog]:
    """A reward model initialised from the SFT policy (a new scalar head), trained on the
    raters' labels with TRL's RewardTrainer (Bradley-Terry loss)."""
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(
        **trl_args(cfg, work_dir / "trainer", seed, len(rows)), max_length=max_length
    )
    trainer = RewardTrainer(
        model=str(policy_dir),
        args=args,
        train_dataset=preference_dataset(rows),
        processing_class=tokenizer,
    )
    log = PhaseLog("reward")
    run_trainer(trainer, log, progress)
    model: Any = trainer.model
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, log


def reward_scores(
    reward_model: Any, tokenizer: Any, items: Sequence[tuple[str, str]], batch_size: int = 64
) -> list[float]:
    """The reward model's score of (request, response) pairs, rendered with the chat template."""
    import torch

    texts = [
        tokenizer.apply_chat_template(
            [*conversation(req), {"role": "assistant", "content": resp}], tokenize=False
        )
        for req, resp in items
    ]
    out: list[float] = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"  # a sequence classifier reads the last non-pad token
    try:
        for lo in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[lo : lo + batch_size],
                add_special_tokens=False,
                padding=True,
                return_tensors="pt",
            )
            with torch.no_grad():
                logits = reward_model(**enc).logits[:, 0]
            out += [float(x) for x in logits]
    finally:
        tokenizer.padding_side = side
    return out


def reward_accuracy(
    reward_model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """On held-out pairs whose responses differ in ground-truth quality: how often the reward
    model scores the better one higher (chance = 0.5); and agreement with the raters."""
    from psmlab.stats import rate_of

    items = [(r["request"], r["chosen"]) for r in rows] + [
        (r["request"], r["rejected"]) for r in rows
    ]
    scores = reward_scores(reward_model, tokenizer, items)
    n = len(rows)
    chosen, rejected = scores[:n], scores[n:]
    truth = [
        (c > j) == (r["quality_chosen"] > r["quality_rejected"])
        for r, c, j in zip(rows, chosen, rejected, strict=True)
        if r["quality_chosen"] != r["quality_rejected"]
    ]
    raters = [c > j for c, j in zip(chosen, rejected, strict=True)]
    return {
        "ground_truth": rate_of(truth).to_dict(),
        "raters": rate_of(raters).to_dict(),
    }


def train_rl(
    policy: Any,
    tokenizer: Any,
    reward_funcs: list[Any],
    requests: Sequence[Request],
    cfg: OnlineRLConfig,
    work_dir: Path,
    seed: int,
    progress: Progress | None = None,
) -> PhaseLog:
    """Online RL of `policy` in place against `reward_funcs` (reward models and/or Python
    functions), with a KL penalty (cfg.beta) to the policy as it was at the start (TRL keeps
    that frozen copy as the reference)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    config_cls, trainer_cls = {
        "grpo": (GRPOConfig, GRPOTrainer),
        "rloo": (RLOOConfig, RLOOTrainer),
    }[cfg.algorithm]
    args = config_cls(
        **trl_args(cfg.train, work_dir / "trainer", seed, None),
        beta=cfg.beta,
        num_generations=cfg.generations,
        max_completion_length=cfg.max_new_tokens,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
    )
    dataset = Dataset.from_list([{"prompt": conversation(r.text)} for r in requests])
    policy.train()
    trainer = trainer_cls(
        model=policy,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        # a reward model reads the chat with the policy's tokenizer; a function needs none
        reward_processing_classes=[
            None if callable(f) and not hasattr(f, "config") else tokenizer for f in reward_funcs
        ],
    )
    log = PhaseLog(cfg.algorithm)
    run_trainer(trainer, log, progress)
    policy.eval()
    return log
