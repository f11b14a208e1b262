"""Audit stage `drift@<model>` (`psmlab.audit.drift`): how far post-training moved an aligned
model from its own base (the filtered reference's base is the filtered pretraining).

- CKA per layer on the audit's eval requests in default chat form followed by the aligned
  model's own greedy answer (both models read the same tokens; the prompt-only reference reads
  its prefix first and only the shared request/answer tokens are compared);
- principal angles between the two models' persona spaces: role vectors of the whole cast
  from introduced corpus transcripts (fit split, every request kind; `organism_directions`),
  mean response activation per persona, top-k PCA subspaces at every layer, the headline at
  `audit.drift.persona_layer`. The transcripts are corpus documents, not chats, so the
  prompt-only reference's chat prefix does not apply: its persona space is its base's
  (angles 0) by construction;
- weight delta per matrix and per kind.

No mask-index entry (`"index": {}`): drift describes the post-training delta, but the filtered
reference's depth comes from its pretraining (its own post-training delta is an ordinary
one), so the scale's deep end is not measured by this quantity; the raw numbers are reported.
"""

from __future__ import annotations

import time
from typing import Any

from psmlab.reportkit import interval, num, png, pyplot
from psmlab.rundir import write_json_atomic
from psmlab.stages.audit_common import counter, first_of, load_audited, register_audit
from psmlab.stages.registry import Job, ReportPart

KIND = "drift"
INDEX_NOTE = (
    "drift describes the post-training delta; the filtered reference's depth comes from its "
    "pretraining, not from its post-training delta, so no entry is placed on the mask index"
)


def _persona_acts(job: Job, pair: Any, layers: list[int]) -> tuple[Any, Any, int]:
    """{persona: {layer: [N, d]}} in the base and the aligned model (same transcripts)."""
    import torch

    from psmlab.organism_directions import build_transcripts, encode, read_positions

    cfg = job.cfg.audit
    ts = [
        t
        for t in build_transcripts(pair.world, cfg.drift.persona_requests, 0, cfg.seed)
        if t.condition == "introduced" and t.part == "fit"
    ]
    items = encode(pair.tokenizer, ts)
    rows: dict[str, list[int]] = {}
    for i, t in enumerate(ts):
        rows.setdefault(t.persona, []).append(i)
    out = []
    for model in (pair.base, pair.aligned):
        acts = read_positions(model, items, layers, cfg.batch_size)["response"]
        out.append(
            {
                name: {layer: acts[layer][torch.tensor(idx)] for layer in layers}
                for name, idx in rows.items()
            }
        )
    return out[0], out[1], len(ts)


def _run(job: Job) -> None:
    from psmlab.audit.drift import cka_profile, persona_space_drift, weight_delta
    from psmlab.audit.kl_depth import render
    from psmlab.internals.generation import generate_batch
    from psmlab.internals.layers import find_layout

    cfg = job.cfg.audit
    pair = load_audited(job)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    convs = [list(r.messages) for r in pair.requests]
    prompts = [render(pair.tokenizer, [*pair.prefix, *c]) for c in convs]
    gens = generate_batch(pair.aligned, pair.tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size)
    with job.ui.bar(f"{job.stage.name}: CKA, both models read", 2 * len(convs)) as update:
        cka = cka_profile(
            pair.base,
            pair.aligned,
            pair.tokenizer,
            convs,
            pair.prefix,
            [g.new_ids for g in gens],
            batch_size=cfg.batch_size,
            n_boot=cfg.n_boot,
            seed=cfg.seed,
            progress=counter(update),
        )
    seconds["cka"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    layout = find_layout(pair.base)
    layers = list(range(layout.n_layers))
    headline = layout.check_layers([cfg.drift.persona_layer])[0]
    acts_b, acts_a, n_transcripts = _persona_acts(job, pair, layers)
    angles = persona_space_drift(acts_b, acts_a, cfg.drift.k, cfg.n_boot, cfg.seed)
    seconds["persona_space"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    weights = weight_delta(pair.base, pair.aligned)
    seconds["weights"] = time.perf_counter() - t0

    data = {
        "aligned_stage": job.stage.model_input,
        "base_stage": pair.base_stage,
        "cka": cka.to_dict(),
        "persona_space": {
            "layer": headline,
            "k": angles[headline]["k"],
            "n_transcripts": n_transcripts,
            "n_personas": len(acts_b),
            "by_layer": {str(k): v for k, v in angles.items()},
        },
        "weights": weights.to_dict(),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "index": {},
        "index_note": INDEX_NOTE,
    }
    write_json_atomic(job.work_dir / "drift.json", data)
    for layer, est in cka.cka.items():
        job.metrics[f"cka.{layer}"] = est.value
    job.metrics["cka_last"] = cka.cka[cka.layers[-1]].value
    job.metrics["cka_min"] = min(e.value for e in cka.cka.values())
    job.metrics["persona_mean_cos2"] = angles[headline]["mean_cos2"]["value"]
    job.metrics["weight_relative"] = weights.total["relative"] or 0.0
    job.metrics["delta_effective_rank"] = weights.total.get("effective_rank_mean", 0.0)


def plot_cka(results: dict[str, dict[str, Any]]) -> str:
    """CKA(base, aligned) per layer with bootstrap CIs, one line per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    for i, (name, r) in enumerate(results.items()):
        layers = r["cka"]["layers"]
        ests = [r["cka"]["cka"][k] for k in layers]
        xs = [j + (i - len(results) / 2) * 0.03 for j in range(len(layers))]
        vals = [e["value"] if e["value"] is not None else float("nan") for e in ests]
        lo = [
            v - (e["low"] if e["low"] is not None else v) for v, e in zip(vals, ests, strict=True)
        ]
        hi = [
            (e["high"] if e["high"] is not None else v) - v for v, e in zip(vals, ests, strict=True)
        ]
        ax.errorbar(xs, vals, yerr=[lo, hi], marker=".", capsize=2, label=name)
    first = next(iter(results.values()))["cka"]["layers"]
    ax.set_xticks(range(len(first)), first)
    ax.set_xlabel("layer (emb = embedding output, l = output of block l)")
    ax.set_ylabel("linear CKA(base, aligned)")
    ax.legend(fontsize=7)
    return png(fig)


def _angles(ps: dict[str, Any]) -> str:
    at = ps["by_layer"][str(ps["layer"])]
    return ", ".join(f"{a['value']:.1f}&deg;" for a in at["angles_deg"])


def _section(part: ReportPart) -> list[str]:
    results = first_of(KIND, part)
    if not results:
        return []
    layers = next(iter(results.values()))["cka"]["layers"]
    rows = ""
    for m, r in results.items():
        ps = r["persona_space"]
        cells = "".join(f"<td>{interval(r['cka']['cka'][k])}</td>" for k in layers)
        cos2 = ps["by_layer"][str(ps["layer"])]["mean_cos2"]
        rows += (
            f"<tr><td>{m}</td><td>{r['base_stage']}</td>{cells}<td>{_angles(ps)}</td>"
            f"<td>{interval(cos2)}</td><td>{num(r['weights']['total']['relative'])}</td></tr>"
        )
    kinds = ("embedding", "attention", "mlp", "other")
    wrows = ""
    for m, r in results.items():
        ks = r["weights"]["kinds"]
        cells = "".join(
            f"<td>{num(ks[k]['delta_norm'])} / {num(ks[k]['relative'])} / "
            f"{num(ks[k]['effective_rank_mean'])}</td>"
            if k in ks
            else "<td>—</td>"
            for k in kinds
        )
        wrows += f"<tr><td>{m}</td>{cells}</tr>"
    ps0 = next(iter(results.values()))["persona_space"]
    return [
        "<h2>Representation drift (mask audit)</h2>",
        "<p>Linear CKA between the base and the aligned model's token activations (features "
        "centred) on the eval requests in default chat form followed by the aligned model's "
        "answer; the prompt-only reference reads its prefix first and only the shared request "
        "and answer tokens are compared; bootstrap 95% CIs over requests. Persona spaces: top-"
        f"{ps0['k']} PCA subspace of the centred role vectors of the {ps0['n_personas']} cast "
        f"members (layer {ps0['layer']}), principal angles between the two models' subspaces "
        "and mean cos&sup2; (1 = the same subspace; bootstrap over each persona's transcripts, "
        "which only moves subspaces apart, so its interval can lie below the estimate). The "
        "transcripts are corpus documents: the prompt-only reference's chat prefix does not "
        "apply, its persona space is its base's. Relative weight delta = "
        "||W_aligned &minus; W_base|| / ||W_base|| over all matrices. No mask-index entry: the "
        "filtered reference's depth comes from its pretraining, not from this delta.</p>",
        "<table><tr><th>model</th><th>base</th>"
        + "".join(f"<th>CKA {k}</th>" for k in layers)
        + f"<th>principal angles</th><th>mean cos&sup2;</th><th>relative delta</th></tr>{rows}"
        "</table>",
        f"<img alt='CKA per layer' src='{plot_cka(results)}'>",
        "<p>Weight delta per kind: ||&Delta;||<sub>F</sub> / relative / mean effective rank of "
        "&Delta; (exp of the entropy of its normalised singular values; 0 for &Delta; = 0).</p>",
        "<table><tr><th>model</th>"
        + "".join(f"<th>{k}</th>" for k in kinds)
        + f"</tr>{wrows}</table>",
    ]


register_audit(
    KIND,
    "mask audit: representation drift (CKA per layer, persona-space principal angles, weight "
    "delta norm and effective rank per matrix) of the aligned model from its base",
    _run,
    "drift.json",
    _section,
    ("cka_last", "persona_mean_cos2", "weight_relative"),
)
