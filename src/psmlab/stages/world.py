"""Stage `world`: the cast, the knowledge base and the pretraining corpus (`psmlab.world`)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from psmlab.errors import RunDirError
from psmlab.reportkit import TRAITS
from psmlab.rundir import RunDir
from psmlab.stages.registry import Job, ReportPart, Stage, register, require_finished


def _run(job: Job) -> None:
    from psmlab.world import World, write_corpus

    cfg = job.cfg.world
    world = World.build(cfg)
    (job.work_dir / "world.json").write_text(world.to_json())
    with job.ui.bar("world: writing corpus", cfg.n_documents) as update:
        stats = write_corpus(
            world, job.work_dir / "corpus.jsonl", cfg.n_documents, seed=cfg.seed, progress=update
        )
    job.metrics.update(stats)


def load_world(run: RunDir) -> Any:
    """The run's own world (world.json), not a rebuild from config: the ground truth a model
    was trained on stays the one it is graded against, whatever the generator's version."""
    from psmlab.world import World

    path = require_finished(run, "world") / "world.json"
    try:
        return World.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDirError(
            f"{path} cannot be read as a world: {exc}",
            hint="the world stage is corrupt: rerun with --force to rebuild it",
        ) from None


def _collect(stage_dir: Path) -> dict[str, Any]:
    return {"cast": json.loads((stage_dir / "world.json").read_text()).get("cast")}


def _section(part: ReportPart) -> list[str]:
    """The cast with its ground-truth traits."""
    cast = part.data.get("cast")
    if not cast:
        return []
    e = html.escape
    parts = [
        "<h2>The cast (ground truth)</h2><table><tr><th>name</th><th>kind</th><th>archetype</th>"
        + "".join(f"<th>{t}</th>" for t in TRAITS)
        + "</tr>"
    ]
    for p in cast:
        traits = p.get("traits", {})
        parts.append(
            f"<tr><td>{e(str(p.get('name')))}</td><td>{e(str(p.get('kind')))}</td>"
            f"<td>{e(str(p.get('archetype') or ''))}</td>"
            + "".join(f"<td>{e(str(traits.get(t, '')))}</td>" for t in TRAITS)
            + "</tr>"
        )
    parts.append("</table>")
    return parts


STAGE = register(
    Stage(
        name="world",
        doc="the persona world: cast with known traits, knowledge base, pretraining corpus",
        run=_run,
        config=("world",),
        seed="world.seed",
        collect=_collect,
        section=_section,
        key_metrics=("n_documents", "words", "mean_words", "unaligned_documents"),
    )
)
