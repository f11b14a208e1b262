"""Wall time of a finished `psmlab run`, grouped by part of the story, from every stage's
manifest (the run folder and its arms' sub-folders). Writes bench/out/story_times.json.

With `--jobs 2` (the default) stages overlap, so the sum of stage times exceeds the run's span
(first stage started to last stage finished), which is printed too; a stage's own time then
includes sharing the 2 cores with its neighbour.

    .venv/bin/python bench/story_times.py runs/default
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psmlab  # noqa: F401  (offline env first)

GROUPS = (
    (
        "pretraining",
        lambda s: s in ("world", "tokenizer", "pretrain", "filtered-corpus", "filtered-pretrain"),
    ),
    (
        "organism evaluation",
        lambda s: s in ("fidelity", "directions") or s.startswith("directions@"),
    ),
    ("post-training", lambda s: s.startswith("align-")),
    ("behaviour", lambda s: s.startswith("behaviour")),
    ("PSM experiment", lambda s: s.split("@")[0] in ("emergent", "triggered", "roles")),
    ("mask audit", lambda s: "@" in s or s == "mask-index"),
)


def main(root: Path) -> dict:
    rows: dict[str, dict[str, float]] = {}
    started, finished = float("inf"), 0.0
    for manifest in sorted(root.rglob("manifest.json")):
        stage_dir = manifest.parent
        rel = stage_dir.relative_to(root)
        arm = str(rel.parent) if rel.parent != Path(".") else "main"
        data = json.loads(manifest.read_text())
        if data.get("status") != "finished":
            continue
        group = next((g for g, test in GROUPS if test(stage_dir.name)), "other")
        key = f"{arm}: {group}"
        rows.setdefault(key, {"seconds": 0.0, "stages": 0})
        rows[key]["seconds"] += data["wall_time_s"]
        rows[key]["stages"] += 1
        started = min(started, data["started"])
        finished = max(finished, data["finished"])
    total = sum(r["seconds"] for r in rows.values())
    print(f"{'part':45s} {'stages':>6s} {'seconds':>9s}")
    for key, r in sorted(rows.items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"{key:45s} {r['stages']:6d} {r['seconds']:9.1f}")
    print(f"{'all stages':45s} {sum(r['stages'] for r in rows.values()):6d} {total:9.1f}")
    span = finished - started
    print(f"{'span (first start to last finish)':45s} {'':6s} {span:9.1f}")
    out = {"run": str(root), "parts": rows, "total_s": total, "span_s": span}
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    Path("bench/out/story_times.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/default"))
