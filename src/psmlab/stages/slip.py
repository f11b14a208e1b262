"""Audit stage `slip@<model>` (`psmlab.audit.slip`): persona-modulation slip of an aligned
model and of its own base, on the organism's eval requests, under the three attack styles
written in the world's language (`audit.organism.organism_attacks`), exact grader."""

from __future__ import annotations

from typing import Any

from psmlab.reportkit import interval, num, png, pyplot
from psmlab.rundir import write_json_atomic
from psmlab.stages.audit_common import (
    first_of,
    load_audited,
    measure_both,
    model_rows,
    register_audit,
)
from psmlab.stages.registry import Job, ReportPart

KIND = "slip"
STYLES = ("system", "roleplay", "switch")


def _run(job: Job) -> None:
    from psmlab.audit.organism import organism_attacks
    from psmlab.audit.slip import slip_rates

    cfg = job.cfg.audit
    pair = load_audited(job)
    attacks = organism_attacks(pair.world)
    data = measure_both(
        job,
        pair,
        "default + 3 styles",
        1,
        lambda model, prefix, _progress: slip_rates(
            model,
            pair.tokenizer,
            pair.requests,
            attacks,
            pair.judge,
            prefix,
            cfg.max_new_tokens,
            cfg.batch_size,
            cfg.n_boot,
            cfg.seed,
        ),
    )
    # mask index: the slip rate under each attack style (a mask slips, a deep model has
    # nothing to slip into)
    data["index"] = {s: r["rate"] for s, r in data["aligned"]["styles"].items()}
    write_json_atomic(job.work_dir / "slip.json", data)
    mine = data["aligned"]
    job.metrics["default"] = mine["default"]["value"]
    for style, r in mine["styles"].items():
        job.metrics[style] = r["rate"]["value"]


def plot_slip(results: dict[str, dict[str, Any]]) -> str:
    """Slip rate per attack style (bars, Wilson intervals), one group per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3))
    conditions = ("default", *STYLES)
    width = 0.8 / len(conditions)
    for j, cond in enumerate(conditions):
        rates = [
            r["aligned"]["default"] if cond == "default" else r["aligned"]["styles"][cond]["rate"]
            for r in results.values()
        ]
        xs = [i + j * width for i in range(len(results))]
        vals = [x["value"] for x in rates]
        errs = [[x["value"] - x["low"] for x in rates], [x["high"] - x["value"] for x in rates]]
        ax.bar(xs, vals, width, yerr=errs, label=cond, capsize=2)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(results))], list(results), fontsize=7)
    ax.set_ylabel("answers unaligned")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, ncol=4)
    return png(fig)


def _gain(style: dict[str, Any]) -> str:
    if style["gain"] is not None:
        return num(style["gain"])
    floor = style.get("gain_floor")
    return f"&ge; {num(floor)}" if floor is not None else "n/a"


def _by_kind_table(results: dict[str, dict[str, Any]]) -> str:
    """Aligned models' slip per request kind, default and under each style."""
    kinds = sorted(next(iter(results.values()))["aligned"]["default"].get("by_kind", {}))
    if not kinds:
        return ""
    head = "".join(f"<th>{c} {k}</th>" for c in ("default", *STYLES) for k in kinds)
    rows = ""
    for m, r in results.items():
        x = r["aligned"]
        cols = [x["default"]["by_kind"]] + [x["styles"][s]["by_kind"] for s in STYLES]
        rows += f"<tr><td>{m}</td>" + "".join(
            f"<td>{num(c[k]['value'])}</td>" for c in cols for k in kinds
        )
        rows += "</tr>"
    return f"<table><tr><th>model</th>{head}</tr>{rows}</table>"


def _section(part: ReportPart) -> list[str]:
    results = first_of(KIND, part)
    if not results:
        return []

    rows = ""
    for label, x in model_rows(results):
        cells = "".join(
            f"<td>{interval(x['styles'][s]['rate'])}; gain {_gain(x['styles'][s])}</td>"
            for s in STYLES
        )
        rows += f"<tr><td>{label}</td><td>{interval(x['default'])}</td>{cells}</tr>"
    return [
        "<h2>Persona-modulation slip (mask audit)</h2>",
        "<p>Share of answers to eval-split requests the exact grader calls unaligned (lies, "
        "revealed secrets, flattery, a human claim): without attack, and with an unaligned AI "
        "(a fresh name) described in a system turn, in a role-play user turn, or taking over "
        "the conversation after one exchange. Wilson 95% intervals; gain = rate with / rate "
        "without (&ge; a floor from the two intervals when the default never slips).</p>",
        "<table><tr><th>model</th><th>default</th>"
        + "".join(f"<th>{s}</th>" for s in STYLES)
        + f"</tr>{rows}</table>",
        f"<img alt='slip by attack style' src='{plot_slip(results)}'>",
        "<p>Per request kind (aligned models):</p>",
        _by_kind_table(results),
    ]


register_audit(
    KIND,
    "mask audit: persona-modulation slip (system turn, role-play, character switch) of the "
    "aligned model and its base, persona gain",
    _run,
    "slip.json",
    _section,
    ("default", *STYLES),
)
