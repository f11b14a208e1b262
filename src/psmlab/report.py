"""`report.json` + a self-contained `report.html` (plots inlined as PNG, no network needed).

The report gathers every finished stage's numbers; it only shows what was measured. It is built
from the stage registry: report.json holds `stages` (manifest metrics of each finished stage)
and, under each stage's name, what its `collect` hook loads; report.html is the page frame, the
stage and target tables, then each stage's `section`, in the order of `psmlab run`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from psmlab.config import RunConfig
from psmlab.rundir import RunDir, write_json_atomic
from psmlab.stages import ReportPart, Stage, plan


def _collect_stages(run: RunDir, stages: list[Stage]) -> dict[str, Any]:
    return {
        s.name: s.collect(run.stage_dir(s.name))
        for s in stages
        if s.collect is not None and run.is_finished(s.name)
    }


def collect(
    run: RunDir,
    cfg: RunConfig,
    controls: Mapping[str, RunDir] | None = None,
    sweep: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """report.json: config, stage metrics, each stage's collected data, control sub-runs
    (`controls`: report key -> sub-run, e.g. {"control_rho0": runs/x/control-rho0})."""
    stages = plan()
    out: dict[str, Any] = {"run": str(run.root), "config": cfg.model_dump(mode="json")}
    if sweep:  # a seed of a sweep: {name, seed, seeds}
        out["sweep"] = dict(sweep)
    for stage in stages:
        if run.is_finished(stage.name):
            m = run.manifest(stage.name)
            out.setdefault("stages", {})[stage.name] = {
                "wall_time_s": m["wall_time_s"],
                "metrics": m["metrics"],
                "versions": m["versions"],
            }
    out.update(_collect_stages(run, stages))
    for key, sub in (controls or {}).items():
        if sub.root.is_dir():
            out[key] = _collect_stages(sub, stages)
    out["targets"] = targets(out)
    add_findings(out)
    return out


def add_findings(data: dict[str, Any]) -> None:
    """The predictions' tests and the limitations, from the collected numbers."""
    from psmlab.findings import limitations
    from psmlab.predictions import evaluate

    data["predictions"] = evaluate(data)
    data["limitations"] = limitations(data)


PRETRAIN_BUDGET_S = 240  # the quick preset's pretraining budget (three pretrainings per story)


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The organism's acceptance targets next to what this run measured (pass or not)."""
    from psmlab.fidelity import targets as fidelity_targets

    rows: list[dict[str, Any]] = []
    pre = data.get("stages", {}).get("pretrain")
    if pre:
        secs = pre["metrics"].get("train_seconds", pre["wall_time_s"])
        rows.append(
            {
                "target": f"pretraining time <= {PRETRAIN_BUDGET_S} s",
                "measured": secs,
                "pass": secs <= PRETRAIN_BUDGET_S,
            }
        )
    if data.get("fidelity"):
        rows += fidelity_targets(data["fidelity"])
    return rows


def write_report(
    run: RunDir,
    cfg: RunConfig,
    controls: Mapping[str, RunDir] | None = None,
    sweep: Mapping[str, Any] | None = None,
) -> Path:
    """report.json, report.html, predictions.json and summary.md (the markdown summary)."""
    from psmlab.findings import markdown_summary

    data = collect(run, cfg, controls, sweep)
    path = run.root / "report.json"
    write_json_atomic(path, data)
    write_json_atomic(run.root / "predictions.json", data["predictions"])
    summary = run.root / "summary.md"
    summary.with_name("summary.md.tmp").write_text(markdown_summary(data))
    summary.with_name("summary.md.tmp").replace(summary)
    html_path = run.root / "report.html"
    tmp = html_path.with_name(html_path.name + ".tmp")
    tmp.write_text(render_html(data))
    tmp.replace(html_path)
    return path


def render_html(data: dict[str, Any]) -> str:
    from psmlab.findings import glance_html, limitations_html, predictions_html

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
    parts += glance_html(data)
    if data.get("predictions"):
        parts += predictions_html(data["predictions"])
    stages = plan()
    parts += _stages_table(data.get("stages", {}), {s.name: s for s in stages})
    parts += _targets_table(data.get("targets", []))
    for stage in stages:
        if stage.section is not None and data.get(stage.name) is not None:
            parts += stage.section(ReportPart(stage, data[stage.name], data))
    parts += limitations_html(data.get("limitations", []))
    parts.append(
        "<h2>Methods and config</h2><p>Every stage's config, seed, library versions and input "
        "hashes are in its <code>manifest.json</code> under the run folder; the whole run's "
        "config:</p><pre>" + e(json.dumps(data["config"], indent=1)) + "</pre></body></html>"
    )
    return "\n".join(parts)


def _stages_table(stages: dict[str, Any], registered: dict[str, Stage]) -> list[str]:
    """Wall time and the few metrics each stage marks as worth a glance (`key_metrics`)."""
    if not stages:
        return []
    e = html.escape
    parts = [
        "<h2>Stages</h2><table><tr><th>stage</th><th>wall time (s)</th><th>key metrics</th></tr>"
    ]
    for name, s in stages.items():
        wanted = registered[name].key_metrics if name in registered else ()
        keys = {k: s["metrics"][k] for k in wanted if k in s["metrics"]}
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in keys.items()
        )
        parts.append(
            f"<tr><td>{e(name)}</td><td>{s['wall_time_s']:.1f}</td><td>{e(shown)}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _targets_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    parts = [
        "<h2>Organism targets (measured)</h2><table><tr><th>target</th>"
        "<th>measured</th><th>95% CI</th><th>met</th></tr>"
    ]
    for row in rows:
        ci = row.get("ci")
        ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        parts.append(
            f"<tr><td>{html.escape(row['target'])}</td><td>{row['measured']:.3f}</td>"
            f"<td>{ci_text}</td><td>{'yes' if row['pass'] else '<b>no</b>'}</td></tr>"
        )
    parts.append("</table>")
    return parts
