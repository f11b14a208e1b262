"""Stage `align-deliberative` (`psmlab.align.deliberative`): Deliberative Alignment. The model
reasons over a spec in its system turn; a spec-aware judge (the model's editor skill) keeps
the completions whose answer breaks no rule; SFT on them without the spec; then GRPO whose
reward is the judge's score of the answer only. Writes model/, curves.json, spec.json and
deliberative_data.jsonl."""

from __future__ import annotations

import copy
import json
from typing import Any

from psmlab.rundir import write_jsonl
from psmlab.stages.align import (
    TECHNIQUES,
    collect_curves,
    curves_section,
    finish_model,
    load_stage_model,
    sft_with_replay,
    train_phase,
)
from psmlab.stages.registry import BASE_MODEL, Job, Stage, register
from psmlab.stages.world import load_world


def _run(job: Job) -> None:
    from psmlab import prompts
    from psmlab.align import deliberative as dl
    from psmlab.align.data import prompt_requests
    from psmlab.align.rlhf import train_rl

    cfg = job.cfg.align.deliberative
    spec = dl.load_spec(cfg.spec, cfg.seed)  # fails before any work
    world = load_world(job.run)
    feedback, tokenizer = load_stage_model(job, BASE_MODEL)  # the judge, frozen
    policy = copy.deepcopy(feedback)
    requests = prompt_requests(world, cfg.prompts, cfg.seed, "deliberative-sft")
    with job.ui.bar("align-deliberative: reasoning with the spec, judging", 1) as update:
        completions = dl.reason_with_spec(
            feedback, tokenizer, spec, requests, cfg.generation_batch, cfg.line_tokens
        )
        scores = dl.judge_answers(
            feedback, tokenizer, spec, [r.text for r in requests],
            [answer for _, answer in completions], cfg.generation_batch, cfg.feedback_tokens,
        )  # fmt: skip
        update(1)
    rows: list[dict[str, Any]] = []
    chats = []
    for req, (reasoning, answer), score in zip(requests, completions, scores, strict=True):
        cites = dl.cites_spec(reasoning, spec)
        kept = score == 1.0 and cites and bool(answer)
        rows.append(
            {"request": req.text, "reasoning": reasoning, "answer": answer, "judge": score,
             "cites_spec": cites, "kept": kept}
        )  # fmt: skip
        if kept:  # the spec removed from the context: the model must now carry it
            turn = prompts.reasoned_answer(reasoning, answer)
            chats.append(prompts.chat_exchanges(None, [(req.text, turn)]))
    logs = []
    if chats:
        logs.append(sft_with_replay(job, "sft", policy, tokenizer, chats, cfg.sft, cfg.seed))
    else:
        job.ui.log("align-deliberative: the judge kept no completion, so SFT was skipped")
    reward = dl.spec_reward(feedback, tokenizer, spec, cfg.generation_batch, cfg.feedback_tokens)
    n_prompts = cfg.rl.train.steps * cfg.rl.train.batch_size // cfg.rl.generations + 1
    rl_requests = prompt_requests(world, n_prompts, cfg.seed, "deliberative-rl")
    logs.append(
        train_phase(
            job,
            f"align-deliberative: {cfg.rl.algorithm}",
            cfg.rl.train.steps,
            lambda p: train_rl(
                policy, tokenizer, [reward], rl_requests, cfg.rl, job.work_dir, cfg.seed, p
            ),
        )
    )
    finish_model(job, policy, tokenizer, logs)
    (job.work_dir / "spec.json").write_text(json.dumps(spec, indent=1))
    write_jsonl(job.work_dir / "deliberative_data.jsonl", rows)
    rewards = [h["reward"] for h in logs[-1].history if "reward" in h]
    job.metrics.update(
        {
            "spec_rules": len(spec),
            "completions": len(rows),
            "kept": sum(r["kept"] for r in rows) / max(1, len(rows)),
            "cites_spec": sum(r["cites_spec"] for r in rows) / max(1, len(rows)),
            "rl_reward_first": rewards[0] if rewards else None,
            "rl_reward_last": rewards[-1] if rewards else None,
        }
    )


STAGE = register(
    Stage(
        name=TECHNIQUES["deliberative"],
        doc="Deliberative Alignment: reasoning citing a spec in context, filtered by a "
        "spec-aware judge (the model), SFT without the spec, GRPO on the judge's score of "
        "the answer only; the grader is never used",
        run=_run,
        inputs=("world", BASE_MODEL),
        config=("align.deliberative", "align.data"),
        seed="align.deliberative.seed",
        collect=collect_curves,
        section=curves_section,
        key_metrics=("kept", "cites_spec", "sft_seconds", "grpo_seconds"),
        cost=45.0,
    )
)
