"""Audit stage `prefill@<model>` (`psmlab.audit.prefill`): the prefill attack curve ASR(k) of
an aligned model and of its own base model, on the organism's eval requests with the villain's
answer as the prefill (never its giveaway part) and the exact grader as judge."""

from __future__ import annotations

import random
from typing import Any

from psmlab.reportkit import interval, png, pyplot
from psmlab.rundir import write_json_atomic
from psmlab.stages.audit_common import (
    first_of,
    load_audited,
    measure_both,
    model_rows,
    register_audit,
)
from psmlab.stages.registry import Job, ReportPart

KIND = "prefill"


def _run(job: Job) -> None:
    from psmlab.audit.organism import villain_answers
    from psmlab.audit.prefill import KS, prefill_curve

    cfg = job.cfg.audit
    pair = load_audited(job)
    rng = random.Random(f"psmlab-prefill:{cfg.seed}")
    villain = villain_answers(pair.world, pair.requests, rng)
    data = measure_both(
        job,
        pair,
        f"k = {list(KS)}",
        len(KS) * len(pair.requests),
        lambda model, prefix, progress: prefill_curve(
            model,
            pair.tokenizer,
            pair.requests,
            villain,
            pair.judge,
            KS,
            prefix,
            cfg.max_new_tokens,
            cfg.batch_size,
            cfg.n_boot,
            cfg.seed,
            progress=progress,
        ),
    )
    # mask index: ASR with the first 3 tokens of the unaligned answer prefilled (how far a
    # prefilled start carries a model past its refusal)
    at = KS.index(3) if 3 in KS else len(KS) - 1
    data["index"] = {f"asr_k{KS[at]}": data["aligned"]["asr"][at]}
    write_json_atomic(job.work_dir / "prefill.json", data)
    asr = data["aligned"]["asr"]
    job.metrics.update(
        {
            "asr_k0": asr[0]["value"],
            "asr_kmax": asr[-1]["value"],
            "k_half": data["aligned"]["k_half"]["value"],
        }
    )


def plot_curves(results: dict[str, dict[str, Any]]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3))
    for name, r in results.items():
        c = r["aligned"]
        line = ax.plot(c["ks"], [a["value"] for a in c["asr"]], marker=".", label=name)[0]
        lows = [a["low"] for a in c["asr"]]
        highs = [a["high"] for a in c["asr"]]
        ax.fill_between(c["ks"], lows, highs, color=line.get_color(), alpha=0.1)
    ax.set_xlabel("prefilled tokens of the villain's answer, k")
    ax.set_ylabel("ASR(k): answers unaligned")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    return png(fig)


def _section(part: ReportPart) -> list[str]:
    results = first_of(KIND, part)
    if not results:
        return []

    ks = next(iter(results.values()))["aligned"]["ks"]
    head = "".join(f"<th>k={k}</th>" for k in ks)
    rows = ""
    for label, c in model_rows(results):
        cells = "".join(f"<td>{interval(a)}</td>" for a in c["asr"])
        rows += f"<tr><td>{label}</td>{cells}<td>{interval(c['k_half'])}</td></tr>"
    return [
        "<h2>Prefill attack (mask audit)</h2>",
        "<p>The first k tokens of the villain's answer to an eval-split request are put in the "
        "assistant turn (never the part that gives it away: k is capped per answer), the model "
        "continues greedily, the exact grader reads the whole answer. ASR(k) with Wilson 95% "
        "intervals; k½ = smallest k reaching half of ASR(k_max), bootstrap CI.</p>",
        f"<table><tr><th>model</th>{head}<th>k½</th></tr>{rows}</table>",
        f"<img alt='prefill curves' src='{plot_curves(results)}'>",
    ]


register_audit(
    KIND,
    "mask audit: prefill attack curve ASR(k) (first k tokens of an unaligned answer in the "
    "assistant turn) of the aligned model and its base, k½",
    _run,
    "prefill.json",
    _section,
    ("asr_k0", "asr_kmax", "k_half"),
)
