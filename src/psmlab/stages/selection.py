"""Audit stage `selection@<model>` (`psmlab.audit.selection`): which character did
post-training select? The aligned model's default answers and its answers under the
system-turn persona attack, and its base's default answers (the control: the base's own chat
default is a mixture of the cast's AI characters), attributed to the cast and placed in persona
space (Assistant axis, persona PC1 from the `directions` stage) by the pretrained base model.
One reader for every model, the filtered reference included (its own base never learned the
unaligned cast, so it could not attribute an answer to them): the numbers of different models
are comparable, which the mask index needs."""

from __future__ import annotations

import random
from typing import Any

from psmlab.reportkit import interval, num, png, pyplot
from psmlab.rundir import write_json_atomic
from psmlab.stages.audit_common import (
    base_control,
    counter,
    first_of,
    load_audited,
    register_audit,
)
from psmlab.stages.registry import BASE_MODEL, Job, ReportPart

KIND = "selection"
CONDITIONS = ("default", "attacked", "base default")


def _run(job: Job) -> None:
    from psmlab.audit.kl_depth import render
    from psmlab.audit.organism import cast_characters, organism_attacks
    from psmlab.audit.selection import (
        attribution_loglik,
        posterior,
        project_answers,
        summarise_selection,
    )
    from psmlab.internals.generation import generate_batch
    from psmlab.internals.storage import load_direction
    from psmlab.models import load_model_and_tokenizer

    cfg = job.cfg.audit
    pair = load_audited(job)
    characters = cast_characters(pair.world, cfg.seed)
    system = next(a for a in organism_attacks(pair.world) if a.name == "system")
    rng = random.Random(f"psmlab-selection-attack:{cfg.seed}")
    plain = [list(r.messages) for r in pair.requests]
    attacked = [system.wrap(r, rng) for r in pair.requests]
    runs = {
        "default": (pair.aligned, pair.prefix, plain),
        "attacked": (pair.aligned, pair.prefix, attacked),
        "base default": (pair.base, [], plain),
    }
    reader = (
        pair.base
        if pair.base_stage == BASE_MODEL
        else load_model_and_tokenizer(job.run.stage_dir(BASE_MODEL) / "model")[0]
    )
    directions_dir = job.run.stage_dir("directions")
    axis = load_direction(directions_dir / "assistant_axis", reader)
    pc1 = load_direction(directions_dir / "persona_pc1", reader)
    layer = int(axis.meta.get("best_layer", axis.layers[-1]))
    n = len(pair.requests)
    total = len(runs) * n * (1 + len(characters))
    data: dict[str, Any] = {
        "aligned_stage": job.stage.model_input,
        "base_stage": pair.base_stage,
        "characters": [c.name for c in characters],
        "layer": layer,
        "conditions": {},
    }
    with job.ui.bar(f"{job.stage.name}: answers x {len(characters)} characters", total) as bar:
        advance = counter(bar)

        def measure(model: Any, prefix: list[dict[str, str]], convs: Any) -> dict[str, Any]:
            prompts = [render(pair.tokenizer, [*prefix, *c]) for c in convs]
            gens = generate_batch(
                model, pair.tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size
            )
            advance(n)
            loglik, kept = attribution_loglik(
                reader, pair.tokenizer, convs, gens, characters, cfg.batch_size, advance
            )
            summary = summarise_selection(posterior(loglik), characters, cfg.n_boot, cfg.seed)
            coords = project_answers(
                reader, gens, layer, {"axis": axis.at(layer), "pc1": pc1.at(layer)}, cfg.batch_size
            )
            return {**summary, "coords": coords, "examples": [gens[i].text for i in kept[:4]]}

        for name, (model, prefix, convs) in runs.items():
            if name == "base default":  # the base alone: the same for every model

                def base_default(model: Any = model, convs: Any = convs) -> dict[str, Any]:
                    return measure(model, [], convs)

                data["conditions"][name] = base_control(job, name, base_default)
            else:
                data["conditions"][name] = measure(model, prefix, convs)
        bar(total)
    default, hit = data["conditions"]["default"], data["conditions"]["attacked"]
    data["index"] = {"attacked_unaligned_mass": hit["unaligned_mass"]}
    write_json_atomic(job.work_dir / "selection.json", data)
    job.metrics["default_unaligned_mass"] = default["unaligned_mass"]["value"]
    job.metrics["attacked_unaligned_mass"] = hit["unaligned_mass"]["value"]
    job.metrics["default_entropy"] = default["entropy"]["value"]


def plot_persona_scatter(results: dict[str, dict[str, Any]]) -> str:
    """Each model's default (o) and attacked (x) answers in the base model's persona space."""
    plt = pyplot()
    cols = min(3, len(results))
    rows = (len(results) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (model, r) in zip(axes.flat, results.items(), strict=False):
        for cond, marker in (("base default", "."), ("default", "o"), ("attacked", "x")):
            c = r["conditions"][cond]["coords"]
            ax.scatter(c["axis"], c["pc1"], s=9, marker=marker, label=cond, alpha=0.6)
        ax.set_title(model, fontsize=8)
        ax.set_xlabel("Assistant axis", fontsize=7)
        ax.set_ylabel("persona PC1", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(results) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    return png(fig)


def _top(cond: dict[str, Any]) -> str:
    return ", ".join(
        f"{t['name']} ({t['group']}) {num(t['mass']['value'])}" for t in cond["top"][:3]
    )


def _section(part: ReportPart) -> list[str]:
    results = first_of(KIND, part)
    if not results:
        return []
    rows = ""
    for m, r in results.items():
        for cond in CONDITIONS:
            c = r["conditions"][cond]
            who = m if cond != "base default" else f"{m}'s base ({r['base_stage']})"
            rows += (
                f"<tr><td>{who}</td><td>{cond}</td><td>{_top(c)}</td>"
                f"<td>{interval(c['group_mass']['assistant'])}</td>"
                f"<td>{interval(c['unaligned_mass'])}</td>"
                f"<td>{interval(c['entropy'])} / {num(c['max_entropy'])}</td></tr>"
            )
    return [
        "<h2>Selection: which character answers? (mask audit)</h2>",
        "<p>Each answer's likelihood under the pretrained base model as spoken by each cast "
        "member (a "
        "system turn naming and describing it), normalised to a posterior over the cast "
        "(uniform prior); mean posterior over eval-split answers, bootstrap 95% CIs. "
        "<i>default</i>: the aligned model's default chat; <i>attacked</i>: under a system turn "
        "describing an unaligned AI with a fresh name; <i>base default</i>: the base's own "
        "default (the control). Entropy in nats against its maximum (no preference).</p>",
        "<table><tr><th>model</th><th>answers</th><th>top characters (mass)</th>"
        "<th>assistant archetype mass</th><th>unaligned characters' mass</th>"
        "<th>entropy</th></tr>" + rows + "</table>",
        "<p>Persona space of the pretrained base model (layer "
        f"{next(iter(results.values()))['layer']}): each answer's mean activation on the "
        "Assistant axis (toward the default Assistant) and persona PC1.</p>",
        f"<img alt='persona-space scatter' src='{plot_persona_scatter(results)}'>",
    ]


register_audit(
    KIND,
    "mask audit: which cast character the aligned model's default and attacked answers "
    "sound like (attribution under the base model), and a persona-space scatter",
    _run,
    "selection.json",
    _section,
    ("default_unaligned_mass", "attacked_unaligned_mass", "default_entropy"),
    extra_inputs=("directions",),
)
