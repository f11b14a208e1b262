"""`psmlab compare RUN_A RUN_B ...`: finished runs side by side, from their `report.json`.

One row per measure, one column per run: how the run was made (preset, seeds, rho), how well
the organism was built (organism targets met), how long pretraining took, and what the mask
audit found (each technique's composite mask index with its CI, the verdict's head, the
sanity checks). A run that lacks a measure shows an empty cell, so runs of different presets
or stages compare without error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from psmlab.errors import PsmlabError

MASK_INDEX = "mask-index"


def load_report(run_dir: Path) -> dict[str, Any]:
    """A finished run's report.json, or one clear error saying what to do."""
    path = Path(run_dir) / "report.json"
    if not Path(run_dir).is_dir():
        raise PsmlabError(f"{run_dir} is not a folder", hint="pass run folders, e.g. runs/default")
    if not path.is_file():
        raise PsmlabError(
            f"{run_dir} has no report.json: the run has not finished",
            hint="finish it with `psmlab run` (same --name and --runs-dir), then compare",
        )
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise PsmlabError(
            f"{path} is not valid JSON", hint="re-run `psmlab run` to rewrite the report"
        ) from None
    return data


def _interval(e: dict[str, Any] | None) -> str:
    return "" if not e else f"{e['value']:.2f} [{e['low']:.2f}, {e['high']:.2f}]"


def _column(report: dict[str, Any]) -> dict[str, str]:
    cfg = report.get("config", {})
    targets = report.get("targets") or []
    audit = report.get(MASK_INDEX) or {}
    models = (audit.get("mask_index") or {}).get("models", {})
    pretrain = (report.get("stages") or {}).get("pretrain") or {}
    col = {
        "preset": str(cfg.get("preset", "")),
        "world seed": str(cfg.get("world", {}).get("seed", "")),
        "pretrain seed": str(cfg.get("pretrain", {}).get("seed", "")),
        "rho": str(cfg.get("world", {}).get("rho", "")),
        "organism targets met": (
            f"{sum(bool(t['pass']) for t in targets)} / {len(targets)}" if targets else ""
        ),
        "pretraining (s)": (f"{pretrain['wall_time_s']:.0f}" if "wall_time_s" in pretrain else ""),
    }
    for technique, m in models.items():
        col[f"mask index: {technique}"] = _interval(m.get("composite"))
        col[f"verdict: {technique}"] = str(m.get("verdict", "")).split(" (", 1)[0]
    for check in audit.get("sanity", []):
        name = check.get("name") or check["check"][:40]
        col[f"sanity: {name}"] = "pass" if check["passed"] else "FAIL"
    return col


def compare(run_dirs: list[Path]) -> dict[str, Any]:
    """{"runs": [run folder...], "rows": [{"measure": name, "values": [cell per run]}]};
    measures in first-seen order."""
    if not run_dirs:
        raise PsmlabError("nothing to compare", hint="pass one or more run folders")
    columns = [_column(load_report(d)) for d in run_dirs]
    names: list[str] = []
    for col in columns:
        names += [n for n in col if n not in names]
    rows = [{"measure": n, "values": [c.get(n, "") for c in columns]} for n in names]
    return {"runs": [str(d) for d in run_dirs], "rows": rows}
