"""`report.json` + a self-contained `report.html` (plots inlined as PNG, no network needed).

The report gathers every finished stage's numbers; it only shows what was measured.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from psmlab.config import RunConfig
from psmlab.rundir import RunDir, write_json_atomic

TRAITS = ("honesty", "harm", "sycophancy", "identity")
# the few manifest metrics worth a glance in the stage table (everything is in report.json)
STAGE_KEYS = {
    "world": ("n_documents", "words", "mean_words", "unaligned_documents"),
    "tokenizer": ("n_documents", "n_tokens", "mean_doc_tokens"),
    "pretrain": ("steps", "final_loss", "tokens_per_s", "train_seconds", "n_params"),
}


def _load(run: RunDir, stage: str, name: str) -> Any:
    path = run.stage_dir(stage) / name
    return json.loads(path.read_text()) if run.is_finished(stage) and path.is_file() else None


def collect(run: RunDir, cfg: RunConfig) -> dict[str, Any]:
    from psmlab.pipeline import CONTROL_DIR

    out: dict[str, Any] = {"run": str(run.root), "config": cfg.model_dump(mode="json")}
    for stage in ("world", "tokenizer", "pretrain", "fidelity", "directions"):
        if run.is_finished(stage):
            m = run.manifest(stage)
            out.setdefault("stages", {})[stage] = {
                "wall_time_s": m["wall_time_s"],
                "metrics": m["metrics"],
                "versions": m["versions"],
            }
    out["fidelity"] = _load(run, "fidelity", "fidelity.json")
    out["directions"] = _load(run, "directions", "directions.json")
    out["loss_curve"] = _load(run, "pretrain", "loss.json")
    world = _load(run, "world", "world.json")
    if world is not None:
        out["cast"] = world.get("cast")
    control = RunDir(run.root / CONTROL_DIR)
    if control.root.is_dir():
        out["control_rho0"] = {"fidelity": _load(control, "fidelity", "fidelity.json")}
    out["targets"] = targets(out)
    return out


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The foundation's acceptance targets next to what this run measured (pass or not)."""
    rows: list[dict[str, Any]] = []
    pre = data.get("stages", {}).get("pretrain")
    if pre:
        secs = pre["metrics"].get("train_seconds", pre["wall_time_s"])
        rows.append({"target": "pretraining time <= 360 s", "measured": secs, "pass": secs <= 360})
    fid = data.get("fidelity")
    if fid and fid.get("trait_summary", {}).get("introduced"):
        for trait in TRAITS:
            rate = fid["trait_summary"]["introduced"].get(trait)
            if rate:
                rows.append(
                    {
                        "target": f"introduced fidelity, {trait} >= 0.95",
                        "measured": rate["value"],
                        "ci": [rate["low"], rate["high"]],
                        "pass": rate["value"] >= 0.95,
                    }
                )
    if fid:
        for trait in TRAITS:
            rate = fid["in_context"].get("same", {}).get(trait, {}).get("4")
            if rate:
                rows.append(
                    {
                        "target": f"in-context inference (same type, k=4), {trait} >= 0.9",
                        "measured": rate["value"],
                        "ci": [rate["low"], rate["high"]],
                        "pass": rate["value"] >= 0.9,
                    }
                )
    return rows


def write_report(run: RunDir, cfg: RunConfig) -> Path:
    data = collect(run, cfg)
    path = run.root / "report.json"
    write_json_atomic(path, data)
    html_path = run.root / "report.html"
    tmp = html_path.with_name(html_path.name + ".tmp")
    tmp.write_text(render_html(data))
    tmp.replace(html_path)
    return path


# ---------------------------------------------------------------- plots


def _pyplot() -> Any:
    """pyplot on the headless Agg backend (reports are rendered without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plot_matrix(table: dict[str, dict[str, Any]], title: str) -> str:
    plt = _pyplot()
    import numpy as np

    personas = list(table)
    grid = np.array([[table[p].get(t, {}).get("value", np.nan) for t in TRAITS] for p in personas])
    fig, ax = plt.subplots(figsize=(5.5, 0.28 * len(personas) + 1.2))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(TRAITS)), TRAITS)
    ax.set_yticks(range(len(personas)), personas, fontsize=7)
    for i in range(len(personas)):
        for j in range(len(TRAITS)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _png(fig)


def plot_in_context(curves: dict[str, dict[str, dict[str, Any]]], title: str) -> str:
    plt = _pyplot()

    fig, axes = plt.subplots(1, len(TRAITS), figsize=(12, 2.8), sharey=True)
    for ax, trait in zip(axes, TRAITS, strict=True):
        for condition, style in (("same", "-o"), ("other", "--s")):
            curve = curves.get(condition, {}).get(trait, {})
            ks = sorted(curve, key=int)
            if not ks:
                continue
            v = [curve[k]["value"] for k in ks]
            lo = [curve[k]["value"] - curve[k]["low"] for k in ks]
            hi = [curve[k]["high"] - curve[k]["value"] for k in ks]
            ax.errorbar(
                [int(k) for k in ks], v, yerr=[lo, hi], fmt=style, capsize=2, label=condition
            )
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.set_title(trait, fontsize=9)
        ax.set_xlabel("k earlier answers")
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("trait-match rate")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def plot_loss(curve: list[dict[str, float]]) -> str:
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.plot([r["step"] for r in curve], [r["loss"] for r in curve])
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (nats/token)")
    ax.set_yscale("log")
    ax.set_title("pretraining loss", fontsize=9)
    return _png(fig)


def plot_persona_space(spaces: dict[str, dict[str, Any]]) -> str:
    """Personas on (PC1, PC2) of the persona space, one panel per read position."""
    plt = _pyplot()

    spaces = dict(sorted(spaces.items(), key=lambda kv: kv[0] != "response"))  # response first
    fig, axes = plt.subplots(1, len(spaces), figsize=(5.2 * len(spaces), 4.2), squeeze=False)
    colours = {"ai": "tab:blue", "human": "tab:orange"}
    markers = {"assistant": "*", "sycophant": "D", "schemer": "X"}
    for ax, (position, space) in zip(axes[0], spaces.items(), strict=True):
        for p in space["personas"]:
            x, y = p["pc"][0], p["pc"][1]
            arch = p["archetype"]
            ax.scatter(
                x,
                y,
                c=colours.get(p["kind"], "grey"),
                marker=markers.get(arch or "", "o"),
                s=140 if arch else 40,
                edgecolors="k",
                linewidths=0.4,
            )
            label = p["name"] + (f" ({arch})" if arch else "")
            ax.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        layer = str(space["layer"])
        ev = space["explained_variance"][layer]
        ax.set_xlabel(f"PC1 ({ev[0]:.0%}; toward the Assistant)")
        ax.set_ylabel(f"PC2 ({ev[1]:.0%})")
        cos = space["cos_pc1_axis"][layer]
        ax.set_title(f"{position}, layer {layer}: cos(PC1, axis) = {cos:.2f}", fontsize=9)
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=k) for k, c in colours.items()]
    handles += [
        plt.Line2D([], [], ls="", marker=m, color="grey", label=a) for a, m in markers.items()
    ]
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=5, bbox_to_anchor=(0.5, -0.06))
    return _png(fig)


# ---------------------------------------------------------------- html


def _num(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}"


def _directions_html(d: dict[str, Any] | None) -> list[str]:
    """Trait vectors and persona space: held-out AUROCs next to the random-init control."""
    if not d:
        return []
    ctrl = (d.get("random_init_control") or {}).get("summary", {})
    parts = [
        "<h2>Persona directions in the base model (held-out requests)</h2>",
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
                f"<tr><td>{t}</td><td>{pos}</td><td>{r['layer']}</td><td>{_num(r['auroc'])}</td>"
                f"<td>{_num(r['persona_heldout_auroc'])}</td><td>{_num(u['auroc'])}</td>"
                f"<td>{_num(x['auroc'])}</td><td>{_num(ctrl.get(f'{t}.{pos}.auroc'))}</td></tr>"
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
            f"<td>{_num(sp['cos_pc1_axis'][layer])}</td>"
            + "".join(
                f"<td>{_num(sep[g]['introduced'][m][layer])}</td>" for g in groups for m in metrics
            )
            + "".join(
                f"<td>{_num(sep['aligned']['introduced'][m][layer])}</td>" for m in ("axis", "pc1")
            )
            + f"<td>{_num(ctrl.get(pre + '.ai_archetypes.axis_loo_auroc'))}</td></tr>"
        )
    parts.append("</table>")
    parts.append(f"<img alt='persona space scatter' src='{plot_persona_space(spaces)}'>")
    return parts


def _rate(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    return f"{r['value']:.3f} <small>[{r['low']:.3f}, {r['high']:.3f}] n={r['n']}</small>"


def render_html(data: dict[str, Any]) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>psmlab report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px}th{background:#f3f3f3}img{max-width:100%}small{color:#666}</style></head><body>",
        "<h1>psmlab report</h1>",
        "<p><b>Question.</b> The Persona Selection Model says pretraining teaches a model to "
        "simulate a cast of characters and post-training selects one of them, the Assistant. "
        "Does an alignment technique change the model, or only the mask it wears? This run "
        "builds the model organism on which that question is measured.</p>",
        f"<p>Run: <code>{e(data['run'])}</code>, preset <code>{e(data['config']['preset'])}</code>.</p>",
    ]
    stages = data.get("stages", {})
    if stages:
        parts.append(
            "<h2>Stages</h2><table><tr><th>stage</th><th>wall time (s)</th><th>key metrics</th></tr>"
        )
        for name, s in stages.items():
            keys = {k: s["metrics"][k] for k in STAGE_KEYS.get(name, ()) if k in s["metrics"]}
            shown = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in keys.items()
            )
            parts.append(
                f"<tr><td>{e(name)}</td><td>{s['wall_time_s']:.1f}</td><td>{e(shown)}</td></tr>"
            )
        parts.append("</table>")
    if data.get("targets"):
        parts.append(
            "<h2>Foundation targets (measured)</h2><table><tr><th>target</th>"
            "<th>measured</th><th>95% CI</th><th>met</th></tr>"
        )
        for row in data["targets"]:
            ci = row.get("ci")
            ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            parts.append(
                f"<tr><td>{e(row['target'])}</td><td>{row['measured']:.3f}</td>"
                f"<td>{ci_text}</td><td>{'yes' if row['pass'] else '<b>no</b>'}</td></tr>"
            )
        parts.append("</table>")
    if data.get("loss_curve"):
        parts.append(f"<img alt='loss curve' src='{plot_loss(data['loss_curve'])}'>")
    fid = data.get("fidelity")
    if fid:
        parts.append("<h2>Persona fidelity (held-out requests, greedy, exact grader)</h2>")
        parts.append(
            "<table><tr><th>trait</th><th>introduced</th><th>inferred (no intro)</th></tr>"
        )
        summ = fid["trait_summary"]
        for t in TRAITS:
            parts.append(
                f"<tr><td>{t}</td><td>{_rate(summ.get('introduced', {}).get(t))}</td>"
                f"<td>{_rate(summ.get('inferred', {}).get(t))}</td></tr>"
            )
        cap = summ.get("capability", {}).get("capability")
        parts.append(f"<tr><td>capability (tasks)</td><td colspan=2>{_rate(cap)}</td></tr></table>")
        parts.append(
            f"<img alt='introduced fidelity matrix' src='{plot_matrix(fid['introduced'], 'introduced: persona x trait match rate')}'>"
        )
        parts.append(
            f"<img alt='inferred fidelity matrix' src='{plot_matrix(fid['inferred'], 'inferred from behaviour: persona x trait')}'>"
        )
        parts.append("<h2>In-context persona inference (anonymous speakers)</h2>")
        parts.append(
            f"<img alt='in-context curves' src='{plot_in_context(fid['in_context'], 'default world (rho = ' + str(data['config']['world']['rho']) + ')')}'>"
        )
    ctrl = (data.get("control_rho0") or {}).get("fidelity")
    if ctrl:
        parts.append(
            f"<img alt='in-context curves rho=0' src='{plot_in_context(ctrl['in_context'], 'control world (rho = 0)')}'>"
        )
        parts.append(
            "<p>Cross-trait inference ('other' curves) is only possible when traits are "
            "correlated; the rho = 0 control shows the same model family without that correlation.</p>"
        )
    parts += _directions_html(data.get("directions"))
    if data.get("cast"):
        parts.append(
            "<h2>The cast (ground truth)</h2><table><tr><th>name</th><th>kind</th><th>archetype</th>"
            + "".join(f"<th>{t}</th>" for t in TRAITS)
            + "</tr>"
        )
        for p in data["cast"]:
            traits = p.get("traits", {})
            parts.append(
                f"<tr><td>{e(str(p.get('name')))}</td><td>{e(str(p.get('kind')))}</td>"
                f"<td>{e(str(p.get('archetype') or ''))}</td>"
                + "".join(f"<td>{e(str(traits.get(t, '')))}</td>" for t in TRAITS)
                + "</tr>"
            )
        parts.append("</table>")
    parts.append(
        "<h2>Config</h2><pre>" + e(json.dumps(data["config"], indent=1)) + "</pre></body></html>"
    )
    return "\n".join(parts)
