"""Stages of post-training (`psmlab.align`): each writes an HF checkpoint in `model/` (with the
chat template), `curves.json` (every logged training step, per-phase wall times) and a manifest.

    align-sft          SFT on Assistant demonstrations with pretraining replay (rlhf's phase 1)
    align-preferences  SFT-policy and base-model answers compared by the simulated raters
    align-rlhf         reward model on the preferences, then GRPO/RLOO with a KL to the SFT policy
    align-dpo          rlhf --variant dpo: DPO on the same preferences from the SFT policy
    align-prompt       the pure-mask reference: base weights, a system turn and examples
(align-cai, align-deliberative and the filtered reference have a module each: align_*.py)

`TECHNIQUES` maps `psmlab align --technique NAME` to the stage that makes its model.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from psmlab.align.common import PhaseLog
from psmlab.errors import PsmlabError
from psmlab.rundir import write_json_atomic, write_jsonl
from psmlab.stages.registry import BASE_MODEL, Job, ReportPart, Stage, register
from psmlab.stages.world import load_world

SFT, PREFERENCES = "align-sft", "align-preferences"
TECHNIQUES = {
    "rlhf": "align-rlhf",
    "dpo": "align-dpo",
    "cai": "align-cai",  # stages/align_cai.py
    "deliberative": "align-deliberative",  # stages/align_deliberative.py
    "prompt": "align-prompt",
    "filtered": "align-filtered",  # stages/align_filtered.py
}
PREFERENCES_FILE = "preferences.jsonl"
T = TypeVar("T")


def technique_stage(technique: str, variant: str | None = None) -> str:
    """The stage of `psmlab align --technique T [--variant V]`, or one clear error."""
    if variant is not None and (technique, variant) != ("rlhf", "dpo"):
        raise PsmlabError(
            f"technique '{technique}' has no variant '{variant}'",
            hint="the only variant is `--technique rlhf --variant dpo`",
        )
    key = "dpo" if variant == "dpo" else technique
    if key not in TECHNIQUES:
        raise PsmlabError(
            f"unknown technique '{technique}'",
            hint=f"techniques: {', '.join(TECHNIQUES)} (dpo is also --technique rlhf --variant dpo)",
        )
    return TECHNIQUES[key]


def preflight(cfg: Any, run: Any) -> None:
    """Check post-training inputs before any stage writes anything: the constitution and the
    spec files parse, the uncovered request types exist, and a finished base model's tokenizer
    has a chat template."""
    from psmlab.align.cai import load_constitution
    from psmlab.align.data import check_types
    from psmlab.align.deliberative import load_spec

    load_constitution(cfg.align.cai.constitution)
    load_spec(cfg.align.deliberative.spec)
    check_types(cfg.align.data.uncovered)
    if run.is_finished(BASE_MODEL):
        from transformers import AutoTokenizer

        from psmlab.models import check_chat_template

        model_dir = run.stage_dir(BASE_MODEL) / "model"
        check_chat_template(AutoTokenizer.from_pretrained(model_dir), model_dir)


def load_stage_model(job: Job, stage: str) -> tuple[Any, Any]:
    """The model and tokenizer of a finished stage's model/, ready for a TRL trainer."""
    from psmlab._env import set_torch_threads
    from psmlab.align.common import match_special_tokens, quiet_datasets
    from psmlab.models import load_model_and_tokenizer

    set_torch_threads(job.cfg.pretrain.threads)
    quiet_datasets()
    model_dir = job.run.stage_dir(stage) / "model"
    model, tokenizer = load_model_and_tokenizer(model_dir, require_chat_template=True)
    match_special_tokens(model, tokenizer)
    return model, tokenizer


def train_phase(job: Job, name: str, steps: int, fn: Callable[[Any], T]) -> T:
    """Run one training phase `fn(progress)` under its own progress bar."""
    with job.ui.bar(name, steps) as update:

        def progress(step: int, logs: dict[str, float]) -> None:
            loss = logs.get("loss", math.nan)
            info = f"loss {loss:.3f}" if math.isfinite(loss) else ""
            update(step, info=info, total=int(logs.get("max_steps", steps)))

        return fn(progress)


def finish_model(job: Job, model: Any, tokenizer: Any, logs: list[PhaseLog]) -> None:
    """Save the trained model and its curves; record each phase's time and last loss."""
    from psmlab.align.common import save_model

    save_model(model, tokenizer, job.work_dir / "model")
    write_json_atomic(job.work_dir / "curves.json", {"phases": [g.to_dict() for g in logs]})
    shutil.rmtree(job.work_dir / "trainer", ignore_errors=True)  # TRL's (empty) output_dir
    for g in logs:
        job.metrics[f"{g.name}_seconds"] = round(g.seconds, 2)
        job.metrics[f"{g.name}_mean_step_s"] = g.to_dict()["mean_step_s"]
        losses = [h["loss"] for h in g.history if "loss" in h]
        if losses:
            job.metrics[f"{g.name}_final_loss"] = losses[-1]


def sft_with_replay(
    job: Job,
    name: str,
    model: Any,
    tokenizer: Any,
    chats: list[list[Any]],
    cfg: Any,
    seed: int,
    corpus: Path | None = None,
) -> PhaseLog:
    """SFT of `model` in place on `chats` mixed with replay (align.data) of the pretraining
    corpus the model was trained on (default: the world's)."""
    from psmlab.align import data
    from psmlab.align.sft import train_sft

    dcfg = job.cfg.align.data
    corpus = corpus or job.run.stage_dir("world") / "corpus.jsonl"
    replay = data.replay_texts(corpus, data.n_replay(len(chats), dcfg.replay_fraction), seed)
    rows = data.sft_rows(tokenizer, chats, replay, dcfg.max_length, seed)
    job.metrics[f"{name}_examples"] = len(chats)
    job.metrics[f"{name}_replay_rows"] = len(replay)
    return train_phase(
        job,
        f"{job.stage.name}: {name}",
        cfg.steps,
        lambda p: train_sft(model, tokenizer, rows, cfg, job.work_dir, seed, p, name=name),
    )


def collect_curves(stage_dir: Path) -> Any:
    """report.json data of a post-training stage: its training curves."""
    path = stage_dir / "curves.json"
    return json.loads(path.read_text()) if path.is_file() else None


def curves_section(part: ReportPart) -> list[str]:
    """The training curves of a post-training stage, one panel per phase."""
    from psmlab.reportkit import plot_training_curves

    phases = [p for p in (part.data or {}).get("phases", []) if p.get("history")]
    if not phases:
        return []
    img = plot_training_curves(phases, f"{part.stage.name}: training curves")
    return [f"<h3>{part.stage.name}</h3><img alt='{part.stage.name} training curves' src='{img}'>"]


def _sft(job: Job) -> None:
    from psmlab.align import data

    cfg = job.cfg.align
    model, tokenizer = load_stage_model(job, BASE_MODEL)
    demos = data.demonstrations(load_world(job.run), cfg.data)
    log = sft_with_replay(job, "sft", model, tokenizer, demos, cfg.sft, cfg.data.seed)
    finish_model(job, model, tokenizer, [log])


def _preferences(job: Job) -> None:
    from psmlab.align.data import prompt_requests
    from psmlab.align.raters import rate_pairs
    from psmlab.align.rlhf import sample_pairs

    cfg = job.cfg.align.raters
    policy, tokenizer = load_stage_model(job, SFT)
    base, _ = load_stage_model(job, BASE_MODEL)
    world = load_world(job.run)
    requests = prompt_requests(world, cfg.prompts, cfg.seed, "pairs")
    with job.ui.bar("align-preferences: sampling and rating", 1) as update:
        pairs = sample_pairs(policy, base, tokenizer, requests, cfg.max_new_tokens, cfg.seed)
        rows = rate_pairs(world, pairs, cfg, cfg.seed)
        update(1)
    rng = random.Random(f"psmlab-heldout-pairs:{cfg.seed}")
    for row in rows:
        row["heldout"] = rng.random() < cfg.heldout_fraction
    write_jsonl(job.work_dir / PREFERENCES_FILE, rows)
    job.metrics.update(preference_stats(rows))


def preference_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How the raters labelled: the share choosing the ground-truth better answer, and, where
    a candid answer met one that flatters the user's view, the share choosing the flatterer."""
    differ = [r for r in rows if r["quality_chosen"] != r["quality_rejected"]]
    flatter = [
        r for r in rows if r["kind"] == "opinion" and r["agrees_chosen"] != r["agrees_rejected"]
    ]
    flatter = [r for r in flatter if r["quality_chosen"] != r["quality_rejected"]]
    return {
        "pairs": len(rows),
        "heldout_pairs": sum(r.get("heldout", False) for r in rows),
        "noise_flips": sum(r["flipped"] for r in rows),
        "chose_better": sum(r["quality_chosen"] > r["quality_rejected"] for r in differ)
        / max(1, len(differ)),
        "flattery_pairs": len(flatter),
        "chose_flattery": sum(r["agrees_chosen"] and not r["quality_chosen"] for r in flatter)
        / max(1, len(flatter)),
    }


def read_preferences(run_dir: Path) -> list[dict[str, Any]]:
    """The rater rows a finished align-preferences stage wrote."""
    path = run_dir / PREFERENCES_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rlhf(job: Job) -> None:
    from psmlab.align.data import prompt_requests
    from psmlab.align.rlhf import reward_accuracy, train_reward_model, train_rl

    cfg, seed = job.cfg.align.rlhf, job.cfg.align.data.seed
    rows = read_preferences(job.run.stage_dir(PREFERENCES))
    train = [r for r in rows if not r["heldout"]]
    policy, tokenizer = load_stage_model(job, SFT)
    sft_dir = job.run.stage_dir(SFT) / "model"
    max_length = job.cfg.align.data.max_length
    reward_model, rm_log = train_phase(
        job,
        "align-rlhf: reward model",
        cfg.reward.steps,
        lambda p: train_reward_model(
            sft_dir, tokenizer, train, cfg.reward, job.work_dir, seed, max_length, p
        ),
    )
    accuracy = reward_accuracy(reward_model, tokenizer, [r for r in rows if r["heldout"]])
    reward_model.save_pretrained(job.work_dir / "reward_model")
    tokenizer.save_pretrained(job.work_dir / "reward_model")
    n_prompts = cfg.rl.train.steps * cfg.rl.train.batch_size // cfg.rl.generations + 1
    requests = prompt_requests(load_world(job.run), n_prompts, seed, "rl")
    rl_log = train_phase(
        job,
        f"align-rlhf: {cfg.rl.algorithm}",
        cfg.rl.train.steps,
        lambda p: train_rl(
            policy, tokenizer, [reward_model], requests, cfg.rl, job.work_dir, seed, p
        ),
    )
    finish_model(job, policy, tokenizer, [rm_log, rl_log])
    write_json_atomic(job.work_dir / "reward_accuracy.json", accuracy)
    job.metrics["reward_accuracy_ground_truth"] = accuracy["ground_truth"]["value"]
    job.metrics["reward_accuracy_raters"] = accuracy["raters"]["value"]
    rewards = [h["reward"] for h in rl_log.history if "reward" in h]
    if rewards:
        job.metrics["rl_reward_first"], job.metrics["rl_reward_last"] = rewards[0], rewards[-1]


def _dpo(job: Job) -> None:
    from psmlab.align.dpo import train_dpo

    cfg, seed = job.cfg.align.dpo, job.cfg.align.data.seed
    train = [r for r in read_preferences(job.run.stage_dir(PREFERENCES)) if not r["heldout"]]
    policy, tokenizer = load_stage_model(job, SFT)
    max_length = job.cfg.align.data.max_length
    log = train_phase(
        job,
        "align-dpo",
        cfg.train.steps,
        lambda p: train_dpo(
            policy, tokenizer, train, cfg.train, cfg.beta, job.work_dir, seed, max_length, p
        ),
    )
    finish_model(job, policy, tokenizer, [log])


def _prompt(job: Job) -> None:
    from psmlab.align.references import prompt_prefix, write_prompt_reference

    _, tokenizer = load_stage_model(job, BASE_MODEL)
    prefix = prompt_prefix(load_world(job.run), job.cfg.align.prompt, job.cfg.align.data)
    base_dir = job.run.stage_dir(BASE_MODEL) / "model"
    write_prompt_reference(base_dir, job.work_dir / "model", prefix, tokenizer)
    job.metrics["prefix_messages"] = len(prefix)


register(
    Stage(
        name=SFT,
        doc="SFT on Assistant demonstrations (post split) with pretraining replay; model/",
        run=_sft,
        inputs=("world", BASE_MODEL),
        config=("align.data", "align.sft"),
        seed="align.data.seed",
        collect=collect_curves,
        section=curves_section,
        key_metrics=("sft_seconds", "sft_final_loss", "sft_examples", "sft_replay_rows"),
        cost=70.0,
    )
)
register(
    Stage(
        name=PREFERENCES,
        doc="simulated raters (agreement bias, noise) compare SFT-policy and base answers",
        run=_preferences,
        inputs=("world", BASE_MODEL, SFT),
        config=("align.raters",),
        seed="align.raters.seed",
        key_metrics=("pairs", "chose_better", "flattery_pairs", "chose_flattery"),
    )
)
register(
    Stage(
        name=TECHNIQUES["rlhf"],
        doc="RLHF: reward model (TRL RewardTrainer) then GRPO/RLOO with a KL to the SFT policy",
        run=_rlhf,
        inputs=("world", SFT, PREFERENCES),
        config=("align.rlhf", "align.data"),
        seed="align.data.seed",
        collect=collect_curves,
        section=curves_section,
        key_metrics=("reward_accuracy_ground_truth", "reward_seconds", "grpo_seconds"),
    )
)
register(
    Stage(
        name=TECHNIQUES["dpo"],
        doc="RLHF's DPO variant: TRL DPOTrainer on the same preferences, from the SFT policy",
        run=_dpo,
        inputs=(SFT, PREFERENCES),
        config=("align.dpo", "align.data"),
        seed="align.data.seed",
        collect=collect_curves,
        section=curves_section,
        key_metrics=("dpo_seconds", "dpo_final_loss"),
    )
)
register(
    Stage(
        name=TECHNIQUES["prompt"],
        doc="pure-mask reference: base weights + a system turn and in-context examples",
        run=_prompt,
        inputs=("world", BASE_MODEL),
        config=("align.prompt", "align.data"),
        seed="align.prompt.seed",
        key_metrics=("prefix_messages",),
    )
)
