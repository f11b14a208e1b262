"""Audit stage `capability@<model>` (`psmlab.audit.capability`): capability retention of an
aligned model against its own base on every eval-split task of the world, each in several
phrasings, in default chat form (the prompt-only reference after its prefix), answered and
graded exactly as the behaviour evaluation does (`align.behaviour.capability_probe`,
`final_answers`: a model that reasons first is read on its answer line; `world.grade`).

Mask index entry `capability_retained` = accuracy(aligned) - accuracy(base), paired bootstrap
CI over tasks: 0 = the base model's capability kept, negative = capability lost. Both ends of
the scale (the prompt-only reference keeps its base weights; the filtered reference is
measured against the filtered pretraining) are expected near 0 on this organism, so the
index entry is informative only where a technique costs capability."""

from __future__ import annotations

import random
from typing import Any

from psmlab.reportkit import interval, png, pyplot, rate
from psmlab.rundir import write_json_atomic
from psmlab.stages.audit_common import first_of, load_audited, register_audit
from psmlab.stages.registry import Job, ReportPart

KIND = "capability"


def organism_tasks(world: Any, phrasings: int, seed: int) -> list[Any]:
    """Every eval-split task of the world, each in up to `phrasings` distinct phrasings (as
    many as the world's templates give), in a seeded order."""
    from psmlab.world import RequestKind

    rng = random.Random(f"psmlab-capability:{seed}")
    out = []
    for item in world.items(RequestKind.TASK, "eval"):
        mine: list[Any] = []
        for _ in range(16 * phrasings):
            if len(mine) == phrasings:
                break
            req = world.request(item, rng)
            if all(req.text != r.text for r in mine):
                mine.append(req)
        out += mine
    return out


def _run(job: Job) -> None:
    from psmlab import prompts
    from psmlab.align.behaviour import capability_probe, final_answers
    from psmlab.audit.capability import Accuracy, retained
    from psmlab.world import grade

    cfg = job.cfg.audit
    pair = load_audited(job)
    tasks = organism_tasks(pair.world, cfg.capability.phrasings, cfg.seed)
    ids = [r.item_id for r in tasks]
    forms = [pair.world.item(i).form for i in ids]
    answers: list[list[str]] = []

    def measure(model: Any, prefix: list[dict[str, str]]) -> Accuracy:
        before = [prompts.Message(m["role"], m["content"]) for m in prefix]
        probes = [capability_probe(req, before) for req in tasks]
        said, _ = final_answers(model, pair.tokenizer, probes, cfg.batch_size, cfg.max_new_tokens)
        flags = [grade(pair.world, req, a) == "correct" for req, a in zip(tasks, said, strict=True)]
        answers.append(said)
        return Accuracy(flags, ids, forms)

    # both models in this stage (the paired difference needs the base's answers per task;
    # a few dozen short prompts cost well under a second)
    with job.ui.bar(f"{job.stage.name}: {len(tasks)} task prompts, aligned and base", 2) as bar:
        mine = measure(pair.aligned, pair.prefix)
        bar(1)
        theirs = measure(pair.base, [])
        bar(2)
    data: dict[str, Any] = {"aligned": mine.to_dict(), "base": theirs.to_dict()}
    keep = retained(mine, theirs, cfg.n_boot, cfg.seed).to_dict()
    data.update(
        aligned_stage=job.stage.model_input,
        base_stage=pair.base_stage,
        retained=keep,
        n_prompts=len(tasks),
        n_tasks=len(set(ids)),
        examples=[
            {"request": r.text, "aligned": a, "base": b}
            for r, a, b in zip(tasks[:8], answers[0][:8], answers[1][:8], strict=True)
        ],
        # accuracy(aligned) - accuracy(base): 0 = capability kept, < 0 = lost
        index={"capability_retained": keep},
    )
    write_json_atomic(job.work_dir / "capability.json", data)
    job.metrics.update(
        {
            "accuracy": mine.rate.value,
            "base_accuracy": theirs.rate.value,
            "retained": keep["value"],
        }
    )


def plot_capability(results: dict[str, dict[str, Any]]) -> str:
    """Accuracy of each aligned model and of its base (bars, Wilson intervals)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.4
    for j, who in enumerate(("aligned", "base")):
        rates = [r[who]["accuracy"] for r in results.values()]
        xs = [i + j * width for i in range(len(results))]
        vals = [x["value"] for x in rates]
        errs = [[x["value"] - x["low"] for x in rates], [x["high"] - x["value"] for x in rates]]
        ax.bar(xs, vals, width, yerr=errs, capsize=2, label=who)
    ax.set_xticks([i + width / 2 for i in range(len(results))], list(results), fontsize=7)
    ax.set_ylabel("task prompts answered correctly")
    ax.set_ylim(0, 1.2)
    ax.legend(fontsize=7, ncol=2, loc="upper center")
    return png(fig)


def _section(part: ReportPart) -> list[str]:
    results = first_of(KIND, part)
    if not results:
        return []
    forms = sorted(next(iter(results.values()))["aligned"]["by_group"])
    rows = ""
    for m, r in results.items():
        by_form = "".join(f"<td>{rate(r['aligned']['by_group'].get(f))}</td>" for f in forms)
        rows += (
            f"<tr><td>{m}</td><td>{r['base_stage']}</td><td>{rate(r['aligned']['accuracy'])}</td>"
            f"<td>{rate(r['base']['accuracy'])}</td><td>{interval(r['retained'])}</td>"
            f"{by_form}<td>{r['n_tasks']}</td></tr>"
        )
    return [
        "<h2>Capability retention (mask audit)</h2>",
        "<p>Every eval-split task of the world (addition, first and last word), each in several "
        "phrasings, in default chat form (the prompt-only reference after its prefix), graded "
        "exactly. Accuracy with Wilson 95% intervals; retained = accuracy(aligned) &minus; "
        "accuracy(base) on the same prompts, paired bootstrap 95% CI over tasks (0 = "
        "nothing lost, negative = capability lost).</p>",
        "<table><tr><th>model</th><th>base</th><th>accuracy</th><th>base accuracy</th>"
        "<th>retained</th>"
        + "".join(f"<th>{f}</th>" for f in forms)
        + f"<th>tasks</th></tr>{rows}</table>",
        f"<img alt='capability retention' src='{plot_capability(results)}'>",
    ]


register_audit(
    KIND,
    "mask audit: capability retention on every eval-split task (accuracy of the aligned model "
    "and of its base, the paired difference)",
    _run,
    "capability.json",
    _section,
    ("accuracy", "retained"),
)
