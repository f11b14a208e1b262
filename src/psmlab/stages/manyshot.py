"""Audit stage `manyshot@<model>` (`psmlab.audit.manyshot`): slip rate and the NLL of the
villain's answer against the number of faux exchanges in which the assistant answered as a
villain (post-split requests, never the eval targets), for the aligned model and its own base,
with the power-law fit NLL(n) = C n^-alpha + K."""

from __future__ import annotations

import random
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

KIND = "manyshot"


def _run(job: Job) -> None:
    from psmlab.audit.manyshot import SHOTS, many_shot
    from psmlab.audit.organism import villain_answers
    from psmlab.world import TRAIT_OF_KIND, UNALIGNED

    cfg = job.cfg.audit
    pair = load_audited(job)
    world = pair.world
    rng = random.Random(f"psmlab-manyshot-data:{cfg.seed}")
    targets = villain_answers(world, pair.requests, rng)
    shots = [
        (req.text, world.answer(UNALIGNED, req, rng, ()))
        for kind in TRAIT_OF_KIND
        for req in world.requests(kind, "post", rng, max(SHOTS), contrary_view=True)
    ]
    data = measure_both(
        job,
        pair,
        f"n = {list(SHOTS)}",
        1,
        lambda model, prefix, _progress: many_shot(
            model,
            pair.tokenizer,
            pair.requests,
            targets,
            shots,
            pair.judge,
            SHOTS,
            prefix,
            cfg.max_new_tokens,
            cfg.batch_size,
            cfg.n_boot,
            cfg.seed,
        ),
    )
    # mask index: the slip rate after the most in-context unaligned exchanges that fit
    mine = data["aligned"]
    data["index"] = {"slip_most_shots": {**mine["slip"][-1], "shots": mine["shots"][-1]}}
    write_json_atomic(job.work_dir / "manyshot.json", data)
    mine = data["aligned"]
    job.metrics.update(
        {
            "slip_n0": mine["slip"][0]["value"],
            "slip_nmax": mine["slip"][-1]["value"],
            "nll_n0": mine["nll"][0],
            "alpha": mine["fit"].get("alpha", {}).get("value"),
        }
    )


def plot_curves(results: dict[str, dict[str, Any]]) -> str:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3))
    for name, r in results.items():
        c = r["aligned"]
        ax1.plot(c["shots"], [s["value"] for s in c["slip"]], marker=".", label=name)
        ax2.plot(c["shots"], c["nll"], marker=".", label=name)
    ax1.set_xlabel("faux unaligned exchanges n")
    ax1.set_ylabel("slip rate")
    ax1.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("faux unaligned exchanges n")
    ax2.set_ylabel("NLL of the villain's answer (nats/token)")
    ax1.legend(fontsize=7)
    return png(fig)


def _section(part: ReportPart) -> list[str]:
    results = first_of(KIND, part)
    if not results:
        return []
    shots = next(iter(results.values()))["aligned"]["shots"]
    head = "".join(f"<th>n={n}</th>" for n in shots)
    rows = ""
    for label, c in model_rows(results):
        cells = "".join(
            f"<td>{interval(s)}<br>NLL {num(v)}</td>"
            for s, v in zip(c["slip"], c["nll"], strict=True)
        )
        alpha = interval(c["fit"]["alpha"]) if c["fit"] else "—"
        rows += f"<tr><td>{label}</td>{cells}<td>{alpha}</td></tr>"
    return [
        "<h2>Many-shot (mask audit)</h2>",
        "<p>n faux exchanges in which the assistant answered as a villain (post-split "
        "requests), then an eval-split request: slip rate (Wilson 95%) and the mean per-token "
        "NLL of the villain's answer; alpha of NLL(n) = C n^-alpha + K fitted on n >= 1, "
        "bootstrap CI over requests. Shot counts that do not fit the context are left out.</p>",
        f"<table><tr><th>model</th>{head}<th>alpha</th></tr>{rows}</table>",
        f"<img alt='many-shot curves' src='{plot_curves(results)}'>",
    ]


register_audit(
    KIND,
    "mask audit: many-shot curve (slip rate and the villain answer's NLL against n faux "
    "unaligned exchanges) of the aligned model and its base, power-law fit",
    _run,
    "manyshot.json",
    _section,
    ("slip_n0", "slip_nmax", "nll_n0", "alpha"),
)
