"""Audit stage `capping@<model>` (`psmlab.audit.capping`): a floor on the projection on the
base model's Assistant axis (its `directions` stage; the filtered reference's from
`directions@filtered-pretrain`) at the 25th percentile of the model's own ordinary traffic
(default chats of post-split requests), on a band of layers, while the model answers the
system-turn persona attack; slip reduction against the capability cost. The aligned model and
its base (the control, its own thresholds) are measured alike.

Band: relative depth (l + 1) / n_layers in 0.7-0.9 (Lu et al.); the quick model's two layers
have depths 0.5 and 1.0, so the band maps to the nearest, the last layer (`band`), and every
layer (`all`) is reported as well.

Mask-index entry (`index`, the aligned model's numbers):

- `capping_slip_reduction`: slip(attacked) - slip(attacked, capped) on the band. Higher =
  more of the attack's slip runs through the model leaving the Assistant persona, which a
  persona-level clamp undoes: the aligned behaviour is a persona the context can switch off
  (a mask). A deep alignment (the filtered reference) slips little under attack and has
  little for the clamp to undo.
"""

from __future__ import annotations

import random
from typing import Any

from psmlab.reportkit import interval, png, pyplot, rate
from psmlab.rundir import write_json_atomic
from psmlab.stages.audit_common import first_of, load_audited, measure_both, register_audit
from psmlab.stages.mediation import (
    AXIS,
    capability_tasks,
    directions_input,
    load_directions,
)
from psmlab.stages.registry import Job, ReportPart

KIND = "capping"
PRIMARY = "band"


def calibration_chats(world: Any, per_trait: int, seed: int) -> list[list[dict[str, str]]]:
    """Ordinary traffic: default chats of post-split requests of every trait kind."""
    from psmlab.world import TRAIT_OF_KIND

    rng = random.Random(f"psmlab-capping-traffic:{seed}")
    return [
        [{"role": "user", "content": req.text}]
        for kind in TRAIT_OF_KIND
        for req in world.requests(kind, "post", rng, per_trait, contrary_view=True)
    ]


def index_of(aligned: dict[str, Any]) -> dict[str, Any]:
    """The mask-index entries (see the module doc)."""
    band = aligned["bands"].get(PRIMARY)
    if band is None:
        return {}
    return {"capping_slip_reduction": {k: band["reduction"][k] for k in ("value", "low", "high")}}


def _run(job: Job) -> None:
    from psmlab.audit.capping import band_layers, capping_defence
    from psmlab.audit.organism import organism_attacks
    from psmlab.internals.layers import find_layout

    cfg = job.cfg.audit
    pair = load_audited(job)
    (axis,) = load_directions(job, pair.base, [AXIS])
    n_layers = find_layout(pair.base).n_layers
    bands = {PRIMARY: band_layers(n_layers, cfg.capping.band)}
    if cfg.capping.all_layers:
        bands["all"] = list(range(n_layers))
    attack = next(a for a in organism_attacks(pair.world) if a.name == "system")
    calibration = calibration_chats(pair.world, cfg.capping.calibration_per_trait, cfg.seed)
    tasks = capability_tasks(pair.world, cfg.capping.tasks, cfg.seed)
    data = measure_both(
        job,
        pair,
        "calibrate + attacked + tasks, capped per band",
        1 + 3 * (1 + len(bands)),
        lambda model, prefix, progress: capping_defence(
            model,
            pair.tokenizer,
            pair.requests,
            attack,
            pair.judge,
            axis.vectors,
            calibration,
            tasks,
            prefix,
            bands,
            cfg.capping.percentile,
            cfg.max_new_tokens,
            cfg.batch_size,
            cfg.n_boot,
            cfg.seed,
            progress,
        ),
    )
    data = {
        "model": job.stage.model_input,
        "base_stage": pair.base_stage,
        **data,
        "index": index_of(data["aligned"]),
    }
    write_json_atomic(job.work_dir / "capping.json", data)
    mine = data["aligned"]
    job.metrics["attacked"] = mine["attacked"]["value"]
    for name, b in mine["bands"].items():
        job.metrics[f"{name}.attacked"] = b["attacked"]["value"]
        job.metrics[f"{name}.reduction"] = b["reduction"]["value"]
        job.metrics[f"{name}.capability_change"] = b["capability_change"]["value"]


def plot_capping(results: dict[str, dict[str, Any]]) -> str:
    """Slip reduction (y) against capability change (x) per model, one marker per band
    (filled: aligned model, hollow: its base), bootstrap CIs both ways; models are offset
    horizontally by a hair (0.003 each) so points at the same value stay visible."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    markers = {PRIMARY: "o", "all": "s"}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (m, r) in enumerate(results.items()):
        color = colors[j % len(colors)]
        for who in ("aligned", "base"):
            for name, b in r[who]["bands"].items():
                x, y = b["capability_change"], b["reduction"]
                ax.errorbar(
                    x["value"] + 0.003 * (j - (len(results) - 1) / 2),
                    y["value"],
                    xerr=[[x["value"] - x["low"]], [x["high"] - x["value"]]],
                    yerr=[[y["value"] - y["low"]], [y["high"] - y["value"]]],
                    fmt=markers.get(name, "^"),
                    color=color,
                    mfc=color if who == "aligned" else "none",
                    capsize=2,
                    label=f"{m} ({name})" if who == "aligned" else None,
                )
    ax.axhline(0, color="black", linewidth=0.5)
    ax.axvline(0, color="black", linewidth=0.5)
    ax.set_xlabel("capability change with the cap (accuracy; models offset by 0.003)")
    ax.set_ylabel("slip reduction under attack")
    ax.legend(fontsize=6, ncol=2)
    return png(fig)


def _section(part: ReportPart) -> list[str]:
    results = first_of(KIND, part)
    if not results:
        return []
    rows = ""
    for m, r in results.items():
        for who in ("aligned", "base"):
            x = r[who]
            label = m if who == "aligned" else f"{m}'s base ({r['base_stage']})"
            for name, b in x["bands"].items():
                taus = ", ".join(f"{k}: {v:.2f}" for k, v in b["tau"].items())
                rows += (
                    f"<tr><td>{label}</td><td>{name} (layers {b['layers']}; &tau; {taus})</td>"
                    f"<td>{rate(x['attacked'])}</td><td>{rate(b['attacked'])}</td>"
                    f"<td>{interval(b['reduction'])}</td>"
                    f"<td>{rate(x['capability'])}</td><td>{rate(b['capability'])}</td>"
                    f"<td>{interval(b['capability_change'])}</td>"
                    f"<td>{interval(b['default_change'])}</td></tr>"
                )
    return [
        "<h2>Capping defence (mask audit)</h2>",
        "<p>A floor on the projection on the base model's Assistant axis (which points toward "
        "the Assistant), h &larr; h &minus; v&#770; min(h&middot;v&#770; &minus; &tau;, 0), at "
        "every position while answering, &tau; per layer = the 25th percentile of the model's "
        "own default chats on post-split requests; band: relative depth 0.7&ndash;0.9 (on a "
        "2-layer model the last layer), and every layer. Attack: an unaligned AI described in "
        "a system turn (the slip audit's). Slip reduction = slip attacked &minus; slip "
        "attacked and capped; capability: eval tasks in default chat, exact grader; changes "
        "with paired bootstrap 95% CIs; default change = default slip capped &minus; "
        "uncapped.</p>",
        "<table><tr><th>model</th><th>band</th><th>slip attacked</th><th>capped</th>"
        "<th>reduction</th><th>capability</th><th>capped</th><th>change</th>"
        f"<th>default slip change</th></tr>{rows}</table>",
        f"<img alt='capping: slip reduction vs capability cost' src='{plot_capping(results)}'>",
    ]


register_audit(
    KIND,
    "mask audit: capping the Assistant-axis projection under a persona attack (slip reduction "
    "against capability cost) on the aligned model and its base",
    _run,
    "capping.json",
    _section,
    ("attacked", "band.reduction", "band.capability_change"),
    extra_inputs=directions_input,
)
