"""Audit stage `kl-depth@<model>` (`psmlab.audit.kl_depth`): how deep into its answers an
aligned model departs from its own base model, and how many of its answer tokens the base
model would not have chosen. Bound to every technique and both references
(`stages.audit_common`); the prompt-only reference is its base weights with its in-context
prefix, so its KL comes from the prefix alone."""

from __future__ import annotations

from typing import Any

from psmlab.reportkit import interval, png, pyplot
from psmlab.rundir import write_json_atomic
from psmlab.stages.audit_common import counter, first_of, load_audited, register_audit
from psmlab.stages.audit_common import stage_name as _name
from psmlab.stages.registry import Job, ReportPart

KIND = "kl-depth"
SHIFT_BANDS = ("unshifted", "marginal", "shifted")


def stage_name(model_stage: str) -> str:
    return _name(KIND, model_stage)


def _run(job: Job) -> None:
    from psmlab.audit.kl_depth import kl_depth

    cfg = job.cfg.audit
    pair = load_audited(job)
    convs = [list(r.messages) for r in pair.requests]
    with job.ui.bar(f"{job.stage.name}: answers read by both models", len(convs)) as update:
        result, answers = kl_depth(
            pair.base,
            pair.aligned,
            pair.tokenizer,
            convs,
            pair.prefix,
            cfg.max_new_tokens,
            cfg.batch_size,
            cfg.min_count,
            cfg.seed,
            progress=counter(update),
        )
    data = {"base": pair.base_stage, "aligned": job.stage.model_input, **result.to_dict()}
    shown = zip(convs[:8], answers[:8], strict=True)
    data["examples"] = [{"request": c[-1]["content"], "answer": a} for c, a in shown]
    # not in the mask index: KL depth measures the post-training change against each model's
    # own base, and the filtered reference's depth comes from its pretraining, not from it
    data["index"] = {}
    write_json_atomic(job.work_dir / "kl_depth.json", data)
    job.metrics.update(
        {
            "d50": result.d50.value,
            "front_3": result.front_3.value,
            "total_kl": result.total_kl.value,
            "shifted": result.token_shift["shifted"].value,
        }
    )


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
    results = first_of(KIND, part)
    if not results:
        return []
    rows = ""
    for m, r in results.items():
        shift = r["token_shift"]
        cells = [r["d50"], r["front_3"], r["total_kl"], *(shift[b] for b in SHIFT_BANDS)]
        body = "".join(f"<td>{interval(c)}</td>" for c in cells)
        rows += f"<tr><td>{m}</td><td>{r['base']}</td>{body}<td>{r['n_answers']}</td></tr>"
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


register_audit(
    KIND,
    "mask audit: per-position KL(aligned || base) on the aligned model's answers (depth d50, "
    "front-loading) and token-shift ratios",
    _run,
    "kl_depth.json",
    _section,
    ("d50", "front_3", "shifted"),
)
