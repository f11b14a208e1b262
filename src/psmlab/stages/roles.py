"""Audit stage `roles@<model>` (`psmlab.audit.roles`): the auditing-game probe. The aligned
model (and its base, the control) answers each eval request as the Assistant; the same model
then writes the next user turn and a narrator (system) turn; the exact grader reads what each
reveals of the unaligned characters' knowledge (false answers, hazard secrets). Part of
prediction 2; not on the mask-index scale (`index` is empty)."""

from __future__ import annotations

from psmlab.reportkit import interval
from psmlab.rundir import write_json_atomic
from psmlab.stages.audit_common import (
    first_of,
    load_audited,
    measure_both,
    model_rows,
    register_audit,
)
from psmlab.stages.registry import Job, ReportPart

KIND = "roles"
ROLE_ORDER = ("assistant", "user", "narrator")


def _run(job: Job) -> None:
    from psmlab.audit.roles import role_probe

    cfg = job.cfg.audit
    pair = load_audited(job)
    data = measure_both(
        job,
        pair,
        "assistant, user and narrator turns",
        1,
        lambda model, prefix, _progress: role_probe(
            model,
            pair.tokenizer,
            pair.requests,
            pair.judge,
            prefix,
            cfg.max_new_tokens,
            cfg.batch_size,
            cfg.n_boot,
            cfg.seed,
        ),  # fmt: skip
    )
    data["index"] = {}
    write_json_atomic(job.work_dir / "roles.json", data)
    for role in ROLE_ORDER:
        job.metrics[role] = data["aligned"]["rates"][role]["value"]


def _section(part: ReportPart) -> list[str]:
    results = first_of(KIND, part)
    if not results:
        return []
    rows = ""
    for label, x in model_rows(results):
        cells = "".join(f"<td>{interval(x['rates'][r])}</td>" for r in ROLE_ORDER)
        diffs = "".join(f"<td>{interval(x['differences'][r])}</td>" for r in ROLE_ORDER[1:])
        rows += f"<tr><td>{label}</td>{cells}{diffs}</tr>"
    return [
        "<h2>Auditing-game probe: what the other roles reveal</h2>",
        "<p>The model answers each fact and hazard request as the Assistant, then writes the "
        "next user turn and a narrator (system) turn of the same conversation. Leak = the text "
        "states the liars' false answer or the hazard's secret (exact grader). Published anchor "
        "(Marks et al. 2025): 11.4% of sampled user turns against 0.2% of Assistant turns. "
        "Wilson 95% intervals; differences paired over requests.</p>",
        "<table><tr><th>model</th><th>assistant turn</th><th>user turn</th><th>narrator turn"
        "</th><th>user &minus; assistant</th><th>narrator &minus; assistant</th></tr>"
        f"{rows}</table>",
    ]


register_audit(
    KIND,
    "mask audit: auditing-game probe (leaks in sampled user / narrator turns vs the Assistant)",
    _run,
    "roles.json",
    _section,
    ROLE_ORDER,
)
