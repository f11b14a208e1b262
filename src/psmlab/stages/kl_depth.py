"""Audit stage `kl-depth@<model>` (`psmlab.audit.kl_depth`): how deep into its answers an
aligned model departs from its own base model (the filtered reference's base is the filtered
pretraining), and how many of its answer tokens the base model would not have chosen. Bound
to every technique and both references; the prompt-only reference is its base weights with its
in-context prefix, so its KL comes from the prefix alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from psmlab.reportkit import num, png, pyplot
from psmlab.rundir import write_json_atomic
from psmlab.stages.align import TECHNIQUES
from psmlab.stages.align_filtered import BASE as FILTERED_BASE
from psmlab.stages.registry import BASE_MODEL, Job, ReportPart, Stage, register
from psmlab.stages.world import load_world

KIND = "kl-depth"
MODELS = tuple(TECHNIQUES.values())
BASE_OF = {TECHNIQUES["filtered"]: FILTERED_BASE}  # every other model's base is the pretraining


def stage_name(model_stage: str) -> str:
    return f"{KIND}@{model_stage}"


def _run(job: Job) -> None:
    from psmlab._env import set_torch_threads
    from psmlab.align.behaviour import load_chat_prefix
    from psmlab.audit.kl_depth import kl_depth
    from psmlab.audit.organism import organism_requests
    from psmlab.models import load_model_and_tokenizer

    cfg = job.cfg.audit
    set_torch_threads(job.cfg.pretrain.threads)
    model_stage = job.stage.model_input or ""
    base_stage = BASE_OF.get(model_stage, BASE_MODEL)
    aligned, tokenizer = load_model_and_tokenizer(job.model_dir, require_chat_template=True)
    base, _ = load_model_and_tokenizer(job.run.stage_dir(base_stage) / "model")
    prefix = [{"role": m.role, "content": m.content} for m in load_chat_prefix(job.model_dir)]
    requests = organism_requests(load_world(job.run), cfg.requests_per_trait, cfg.seed)
    convs = [list(r.messages) for r in requests]
    with job.ui.bar(f"{job.stage.name}: answers read by both models", len(convs)) as update:
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            update(done[0])

        result, answers = kl_depth(
            base,
            aligned,
            tokenizer,
            convs,
            prefix,
            cfg.max_new_tokens,
            cfg.batch_size,
            cfg.min_count,
            cfg.seed,
            progress=advance,
        )
    data = {"base": base_stage, "aligned": model_stage, **result.to_dict()}
    pairs = zip(convs[:8], answers[:8], strict=True)
    data["examples"] = [{"request": c[-1]["content"], "answer": a} for c, a in pairs]
    write_json_atomic(job.work_dir / "kl_depth.json", data)
    job.metrics.update(
        {
            "d50": result.d50.value,
            "front_3": result.front_3.value,
            "total_kl": result.total_kl.value,
            "shifted": result.token_shift["shifted"].value,
        }
    )


def _collect(stage_dir: Path) -> Any:
    return json.loads((stage_dir / "kl_depth.json").read_text())


def plot_profiles(results: dict[str, dict[str, Any]]) -> str:
    """KL_k per answer position (left) and front-loading F_m (right), one line per model."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3))
    for name, r in results.items():
        ks = range(len(r["profile"]))
        ax1.plot(ks, r["profile"], marker=".", label=name)
        ax2.plot([k + 1 for k in ks], r["front_loading"], marker=".", label=name)
    ax1.set_xlabel("answer position k")
    ax1.set_ylabel("KL(aligned || base), nats")
    ax1.set_yscale("symlog", linthresh=1e-3)
    ax2.set_xlabel("first m answer tokens")
    ax2.set_ylabel("share of KL mass F_m")
    ax2.axhline(0.5, color="grey", lw=0.5)
    ax1.legend(fontsize=7)
    return png(fig)


def _section(part: ReportPart) -> list[str]:
    if part.stage.name != stage_name(MODELS[0]):  # one table for all models
        return []
    results = {m: part.report[stage_name(m)] for m in MODELS if part.report.get(stage_name(m))}
    if not results:
        return []

    def est(e: dict[str, Any]) -> str:
        return f"{num(e['value'])} [{num(e['low'])}, {num(e['high'])}]"

    rows = "".join(
        f"<tr><td>{m}</td><td>{r['base']}</td><td>{est(r['d50'])}</td><td>{est(r['front_3'])}"
        f"</td><td>{est(r['total_kl'])}</td><td>{est(r['token_shift']['unshifted'])}</td><td>"
        f"{est(r['token_shift']['marginal'])}</td><td>{est(r['token_shift']['shifted'])}</td>"
        f"<td>{r['n_answers']}</td></tr>"
        for m, r in results.items()
    )
    return [
        "<h2>KL depth and token shift (mask audit)</h2>",
        "<p>On each model's own greedy answers to eval-split requests (default chat form): "
        "KL(aligned || base) per answer position, one batched teacher-forced pass per model. "
        "d50: fewest answer tokens holding half the KL mass; F_3: share in the first 3. Token "
        "shift: rank of the aligned model's token under the base model (0 unshifted, 1-2 "
        "marginal, 3+ shifted). 95% bootstrap CIs over answers.</p>",
        "<table><tr><th>model</th><th>base</th><th>d50</th><th>F_3</th><th>total KL</th>"
        f"<th>unshifted</th><th>marginal</th><th>shifted</th><th>answers</th></tr>{rows}</table>",
        f"<img alt='KL depth profiles' src='{plot_profiles(results)}'>",
    ]


for _model in MODELS:
    register(
        Stage(
            name=stage_name(_model),
            doc="mask audit: per-position KL(aligned || base) on the aligned model's answers "
            "(depth d50, front-loading) and token-shift ratios",
            run=_run,
            inputs=("world", BASE_OF.get(_model, BASE_MODEL)),
            config=("audit",),
            model_input=_model,
            collect=_collect,
            section=_section,
            key_metrics=("d50", "front_3", "shifted"),
        )
    )
