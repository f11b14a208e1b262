"""Stage `align-cai` (`psmlab.align.cai`): Constitutional AI. SL-CAI (the model critiques and
revises answers under random principles of the constitution; SFT on the revisions with helpful
data and replay), then RL-CAI (the model judges answer pairs under principles; DPO on those
labels). Writes model/, curves.json, cai_revisions.jsonl and cai_preferences.jsonl."""

from __future__ import annotations

import copy

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
    from psmlab.align import cai
    from psmlab.align.dpo import train_dpo
    from psmlab.align.rlhf import sample_answers

    cfg = job.cfg.align.cai
    constitution = cai.load_constitution(cfg.constitution)  # fails before any work
    world = load_world(job.run)
    # the feedback model and the helpful-only stand-in: the pretrained model, frozen
    feedback, tokenizer = load_stage_model(job, BASE_MODEL)
    policy = copy.deepcopy(feedback)
    # SL-CAI
    requests = cai.red_team_requests(world, cfg.red_team_prompts, cfg.seed, "sl")
    with job.ui.bar("align-cai: answering, critiquing, revising", 1) as update:
        answers = sample_answers(feedback, tokenizer, requests, cfg.max_new_tokens, cfg.seed)
        traces = cai.critique_and_revise(
            feedback, tokenizer, requests, answers, constitution, cfg.rounds, cfg.seed,
            cfg.generation_batch, cfg.feedback_tokens,
        )  # fmt: skip
        tasks = cai.helpful_requests(world, cfg.helpful, cfg.seed)
        helpful = sample_answers(
            feedback, tokenizer, tasks, cfg.max_new_tokens, cfg.seed, greedy=True
        )
        update(1)
    revised = [t[-1]["revision"] or t[-1]["response"] for t in traces]
    chats = [
        prompts.chat_exchanges(None, [(req.text, answer)])
        for req, answer in [*zip(requests, revised, strict=True), *zip(tasks, helpful, strict=True)]
        if answer
    ]
    sl_log = sft_with_replay(job, "sl-cai", policy, tokenizer, chats, cfg.sft, cfg.seed)
    # RL-CAI
    pair_requests = cai.red_team_requests(world, cfg.pair_prompts, cfg.seed, "rl")
    with job.ui.bar("align-cai: sampling pairs, judging them", 1) as update:
        a = sample_answers(policy, tokenizer, pair_requests, cfg.max_new_tokens, cfg.seed)
        b = sample_answers(policy, tokenizer, pair_requests, cfg.max_new_tokens, cfg.seed + 1)
        rows = cai.judge_pairs(
            feedback, tokenizer, pair_requests, list(zip(a, b, strict=True)), constitution,
            cfg.judge_principles, cfg.seed, cfg.generation_batch, cfg.feedback_tokens,
        )  # fmt: skip
        update(1)
    max_length = job.cfg.align.data.max_length
    logs = [sl_log]
    if rows:
        logs.append(
            train_phase(
                job,
                "align-cai: rl-cai (dpo)",
                cfg.dpo.steps,
                lambda p: train_dpo(
                    policy,
                    tokenizer,
                    rows,
                    cfg.dpo,
                    cfg.beta,
                    job.work_dir,
                    cfg.seed,
                    max_length,
                    p,
                    name="rl-cai",
                ),
            )
        )
    else:
        job.ui.log("align-cai: the judge was decisive on no pair, so RL-CAI had nothing to learn")
    finish_model(job, policy, tokenizer, logs)
    revision_rows = [
        {"request": req.text, "rounds": trace} for req, trace in zip(requests, traces, strict=True)
    ]
    write_jsonl(job.work_dir / "cai_revisions.jsonl", revision_rows)
    write_jsonl(job.work_dir / "cai_preferences.jsonl", rows)
    changed = sum(t[-1]["revision"] != t[0]["response"] for t in traces)
    job.metrics.update(
        {
            "principles": len(constitution),
            "revised_answers": len(traces),
            "revisions_changed": changed / max(1, len(traces)),
            "critiques_breaks": sum("breaks" in r["critique"] for t in traces for r in t)
            / max(1, sum(len(t) for t in traces)),
            "pairs_judged": len(pair_requests),
            "pairs_decisive": len(rows),
        }
    )


STAGE = register(
    Stage(
        name=TECHNIQUES["cai"],
        doc="Constitutional AI: SL-CAI (self-critique and revision, SFT) then RL-CAI (AI "
        "preference labels from the model as judge, DPO); the grader is never used",
        run=_run,
        inputs=("world", BASE_MODEL),
        config=("align.cai", "align.data"),
        seed="align.cai.seed",
        collect=collect_curves,
        section=curves_section,
        key_metrics=("revisions_changed", "pairs_decisive", "sl-cai_seconds", "rl-cai_seconds"),
        cost=95.0,
    )
)
