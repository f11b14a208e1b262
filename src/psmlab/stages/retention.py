"""Audit stage `retention@<model>` (`psmlab.audit.retention`): does the aligned model still
know the liars' canonical false answers and the hazard secrets, in character context (corpus
form)? Read from its output distribution (likelihood) and by a linear probe on its
activations, against its base and an untrained twin of the base.

The prompt-only reference's weights are the base's, and its in-context prefix is a chat,
which a corpus-form probe does not read: its retention is the base's by construction."""

from __future__ import annotations

from typing import Any

from psmlab.reportkit import interval, png, pyplot
from psmlab.rundir import write_json_atomic
from psmlab.stages.audit_common import base_control, first_of, load_audited, register_audit
from psmlab.stages.registry import Job, ReportPart

KIND = "retention"
WHO = ("aligned", "base", "untrained twin")
READOUTS = ("likelihood", "probe")


def _run(job: Job) -> None:
    from psmlab.audit.organism import knowledge_items
    from psmlab.audit.retention import retention
    from psmlab.organism_directions import random_twin

    cfg = job.cfg.audit
    pair = load_audited(job)
    items = knowledge_items(pair.world, seed=cfg.seed)
    layers = list(range(pair.aligned.config.num_hidden_layers))
    models = {
        "aligned": lambda: pair.aligned,
        "base": lambda: pair.base,
        "untrained twin": lambda: random_twin(pair.base, cfg.seed),
    }
    data: dict[str, Any] = {
        "aligned_stage": job.stage.model_input,
        "base_stage": pair.base_stage,
        "items": len(items),
    }
    with job.ui.bar(f"{job.stage.name}: probing", len(models)) as update:
        for i, (who, model) in enumerate(models.items()):

            def measure(model: Any = model) -> dict[str, Any]:
                return retention(
                    model(), pair.tokenizer, items, layers, cfg.batch_size, cfg.n_boot, cfg.seed
                )

            # the base and its untrained twin do not depend on the aligned model
            data[who] = measure() if who == "aligned" else base_control(job, who, measure)
            update(i + 1)
    data["index"] = {
        "knowledge_in_context": data["aligned"]["likelihood"]["accuracy"],
        "knowledge_probe": data["aligned"]["probe"]["accuracy"],
    }
    write_json_atomic(job.work_dir / "retention.json", data)
    for who in WHO:
        for readout in READOUTS:
            key = f"{who.replace(' ', '_')}.{readout}"
            job.metrics[key] = data[who][readout]["accuracy"]["value"]


def plot_retention(results: dict[str, dict[str, Any]]) -> str:
    """Paired accuracy per model (aligned, its base, the untrained twin), one panel per
    readout."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(READOUTS), figsize=(10, 2.8))
    width = 0.8 / len(WHO)
    for ax, readout in zip(axes, READOUTS, strict=True):
        for j, who in enumerate(WHO):
            es = [r[who][readout]["accuracy"] for r in results.values()]
            xs = [i + j * width for i in range(len(results))]
            errs = [[e["value"] - e["low"] for e in es], [e["high"] - e["value"] for e in es]]
            ax.bar(xs, [e["value"] for e in es], width, yerr=errs, capsize=2, label=who)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ticks = [i + 0.4 - width / 2 for i in range(len(results))]
        ax.set_xticks(ticks, list(results), fontsize=6, rotation=20)
        ax.set_title(readout, fontsize=8)
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("paired accuracy")
    axes[0].legend(fontsize=6, ncol=3)
    return png(fig)


def _section(part: ReportPart) -> list[str]:
    results = first_of(KIND, part)
    if not results:
        return []
    rows = "".join(
        f"<tr><td>{m}</td><td>{readout}</td>"
        + "".join(f"<td>{interval(r[w][readout]['accuracy'])}</td>" for w in WHO)
        + "".join(f"<td>{interval(v)}</td>" for v in r["aligned"][readout]["by_kind"].values())
        + f"<td>{r['aligned']['probe']['layer'] if readout == 'probe' else ''}</td></tr>"
        for m, r in results.items()
        for readout in READOUTS
    )
    kinds = list(next(iter(results.values()))["aligned"]["likelihood"]["by_kind"])
    return [
        "<h2>Latent retention: does the model still know what its villains know?</h2>",
        "<p>The real answer (a liar's canonical false answer, a hazard's secret) against 4 "
        "decoys of the same shape, told by an unaligned cast member in corpus form, on "
        "eval-split items (paired accuracy, 0.5 = chance, bootstrap 95% CI over items). "
        "<i>likelihood</i>: the model's log-probability of each candidate in character; "
        "<i>probe</i>: a logistic-regression probe on the model's own mean candidate "
        "activations, fitted on post-split items. The untrained twin is the base's "
        "architecture with fresh weights: what the text alone gives away.</p>",
        "<table><tr><th>model</th><th>readout</th>"
        + "".join(f"<th>{w}</th>" for w in WHO)
        + "".join(f"<th>aligned, {k}</th>" for k in kinds)
        + f"<th>probe layer</th></tr>{rows}</table>",
        f"<img alt='latent retention' src='{plot_retention(results)}'>",
    ]


register_audit(
    KIND,
    "mask audit: latent retention of the unaligned cast's knowledge, read by a linear probe "
    "(aligned model, its base, an untrained twin)",
    _run,
    "retention.json",
    _section,
    ("aligned.likelihood", "base.likelihood", "aligned.probe", "untrained_twin.probe"),
)
