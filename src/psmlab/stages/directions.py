"""Evaluation stage `directions` (`psmlab.organism_directions`): trait vectors, persona space
and Assistant axis of a model, saved unit-norm, with held-out AUROCs. Declared on the base
model; `evaluation_stage("directions", model_stage)` binds it to another model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from psmlab.reportkit import TRAITS, num, plot_persona_space
from psmlab.rundir import write_json_atomic
from psmlab.stages.registry import BASE_MODEL, Job, ReportPart, Stage, register
from psmlab.stages.world import load_world


def _run(job: Job) -> None:
    from psmlab.organism_directions import measure_checkpoint

    result = measure_checkpoint(
        job.model_dir,
        load_world(job.run),
        job.ui,
        job.cfg.pretrain.threads,
        job.work_dir,
        cfg=job.cfg.directions,
    )
    write_json_atomic(job.work_dir / "directions.json", result)
    job.metrics.update(result["summary"])


def _collect(stage_dir: Path) -> Any:
    return json.loads((stage_dir / "directions.json").read_text())


def _section(part: ReportPart) -> list[str]:
    return directions_html(part.data, f"the {part.model_label}")


def directions_html(d: dict[str, Any] | None, heading: str = "the base model") -> list[str]:
    """Trait vectors and persona space: held-out AUROCs next to the random-init control."""
    if not d:
        return []
    ctrl = (d.get("random_init_control") or {}).get("summary", {})
    parts = [
        f"<h2>Persona directions in {heading} (held-out requests)</h2>",
        "<p>Trait vector = mean(trait-positive personas) &minus; mean(trait-negative), fitted on "
        "post-split requests, layer chosen on post validation items, AUROC of per-transcript "
        "projections on held-out (eval) requests. <i>Persona-held-out</i>: each persona scored by "
        "a vector fitted without it. <i>Random init</i>: the same measurement on an untrained "
        "twin (what the text alone gives).</p>",
        "<table><tr><th>trait</th><th>position</th><th>layer</th><th>AUROC</th>"
        "<th>persona-held-out</th><th>unintroduced</th><th>introduced vector on unintroduced</th>"
        "<th>random init</th></tr>",
    ]
    for t in TRAITS:
        rep = d["traits"].get(t)
        for pos in ("response", "last_prompt") if rep else ():
            r, u, x = rep["introduced"][pos], rep["unintroduced"][pos], rep["transfer"][pos]
            parts.append(
                f"<tr><td>{t}</td><td>{pos}</td><td>{r['layer']}</td><td>{num(r['auroc'])}</td>"
                f"<td>{num(r['persona_heldout_auroc'])}</td><td>{num(u['auroc'])}</td>"
                f"<td>{num(x['auroc'])}</td><td>{num(ctrl.get(f'{t}.{pos}.auroc'))}</td></tr>"
            )
    parts.append("</table>")
    spaces = d["persona_space"]
    parts.append(
        "<h3>Persona space and Assistant axis</h3><p>Role vector = a persona's mean activation "
        "over its post-split answers; PCA of the centred role vectors; axis = mean(assistant "
        "archetype) &minus; mean(role vectors). AUROC of held-out transcript projections: "
        "AI-assistant archetypes (assistant, sycophant, schemer) or all AI personas vs the rest, "
        "and aligned (truthful, protective, candid) vs the other personas; "
        "<i>loo</i>: axis/PC1 built without the scored persona (for the assistant itself, from "
        "the other two archetypes).</p>"
    )
    metrics = ("axis", "axis_loo", "pc1", "pc1_loo")
    groups = ("ai_archetypes", "ai_kind")
    parts.append(
        "<table><tr><th>position</th><th>layer</th><th>var PC1-3</th><th>cos(PC1, axis)</th>"
        + "".join(f"<th>archetypes {m}</th>" for m in metrics)
        + "".join(f"<th>AI kind {m}</th>" for m in metrics)
        + "<th>aligned axis</th><th>aligned pc1</th><th>random init: archetypes axis_loo</th></tr>"
    )
    for pos, sp in sorted(spaces.items(), key=lambda kv: kv[0] != "response"):
        layer = str(sp["layer"])
        sep = sp["separation"]
        ev = ", ".join(f"{v:.2f}" for v in sp["explained_variance"][layer])
        pre = "persona_space" if pos == "response" else f"persona_space.{pos}"
        parts.append(
            f"<tr><td>{pos}</td><td>{layer}</td><td>{ev}</td>"
            f"<td>{num(sp['cos_pc1_axis'][layer])}</td>"
            + "".join(
                f"<td>{num(sep[g]['introduced'][m][layer])}</td>" for g in groups for m in metrics
            )
            + "".join(
                f"<td>{num(sep['aligned']['introduced'][m][layer])}</td>" for m in ("axis", "pc1")
            )
            + f"<td>{num(ctrl.get(pre + '.ai_archetypes.axis_loo_auroc'))}</td></tr>"
        )
    parts.append("</table>")
    parts.append(f"<img alt='persona space scatter' src='{plot_persona_space(spaces)}'>")
    return parts


STAGE = register(
    Stage(
        name="directions",
        doc="trait vectors, persona space and Assistant axis of a model (held-out AUROC)",
        run=_run,
        inputs=("world",),
        config=("directions",),
        model_input=BASE_MODEL,
        collect=_collect,
        section=_section,
    )
)
