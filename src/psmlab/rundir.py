"""Run directories: one folder per stage, a manifest each, resumable, never silently overwritten.

Layout of `runs/<name>/`:
    run.json                 the full config of the last invocation (for humans and `psmlab show`)
    <stage>/                 a FINISHED stage: its artifacts + manifest.json (written last)
    <stage>.partial/         a stage in progress (or interrupted): resumed if its inputs match

A stage is finished only when `<stage>/manifest.json` exists: the work happens in
`<stage>.partial/` and is renamed at the end, so a killed run can never look finished.
A finished stage is reused when its input hash (stage config + upstream hashes) matches; if it
does not match, the run refuses to overwrite it unless `force=True`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psmlab.errors import RunDirError

MANIFEST = "manifest.json"
PARTIAL_INFO = "partial.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("psmlab", "torch", "transformers", "tokenizers", "trl", "numpy", "pydantic"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: Any) -> None:
    """One JSON object per line (sorted keys), written whole."""
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_manifest(stage_dir: Path) -> dict[str, Any]:
    path = stage_dir / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(
            f"{stage_dir} has no {MANIFEST}: the stage never finished",
            hint="run the stage again (e.g. `psmlab run`) to finish it",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunDirError(
            f"{path} is corrupt (not valid JSON)",
            hint=f"delete {stage_dir} and run again, or pass --force to redo the stage",
        ) from None
    if not isinstance(data, dict) or data.get("status") != "finished":
        raise RunDirError(
            f"{path} is not a finished-stage manifest",
            hint=f"delete {stage_dir} and run again, or pass --force",
        )
    return data


@dataclass
class StageContext:
    """Handed to a stage's body: where to write, and what to record in the manifest."""

    name: str
    work_dir: Path  # write artifacts here (the `.partial` folder)
    final_dir: Path  # where they will be once the stage finishes
    resumed: bool  # True when an interrupted attempt with the same inputs is continued
    metrics: dict[str, Any] = field(default_factory=dict)  # stored in the manifest


@dataclass
class StageResult:
    dir: Path
    manifest: dict[str, Any]
    reused: bool


class RunDir:
    """A run folder `runs/<name>/` holding one sub-folder per stage."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def open_existing(cls, root: Path) -> RunDir:
        root = Path(root)
        if not root.is_dir():
            raise RunDirError(
                f"run directory {root} does not exist",
                hint="check the path, or create it with `psmlab run --name NAME`",
            )
        return cls(root)

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def is_finished(self, stage: str) -> bool:
        return (self.stage_dir(stage) / MANIFEST).is_file()

    def manifest(self, stage: str) -> dict[str, Any]:
        if not self.stage_dir(stage).exists():
            raise RunDirError(
                f"stage '{stage}' is missing from {self.root}",
                hint=f"run the stage first (`psmlab {stage}` or `psmlab run`)",
            )
        return read_manifest(self.stage_dir(stage))

    def write_run_config(self, config: Mapping[str, Any], only_if_missing: bool = False) -> None:
        """Record the config of the run (run.json). Callers write it with `only_if_missing`
        before their stages and unconditionally after them, so an invocation that a finished
        stage refuses (another config under the same name) never replaces the record."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "run.json"
        if only_if_missing and path.exists():
            return
        write_json_atomic(path, {"config": config, "versions": package_versions()})

    @contextmanager
    def stage(
        self,
        name: str,
        config: Mapping[str, Any],
        inputs: Mapping[str, str] | None = None,
        seed: int | None = None,
        force: bool = False,
    ) -> Iterator[StageContext | StageResult]:
        """Run a stage, or reuse it.

        Yields a `StageResult` (reused=True) when the stage is already finished with the same
        inputs: the body should then load instead of compute. Otherwise yields a `StageContext`
        whose `work_dir` the body fills; on normal exit the folder is hashed, a manifest written
        and the folder renamed to its final place. On an exception the partial folder stays
        (for resume) and nothing looks finished.
        """
        inputs = dict(inputs or {})
        input_hash = hash_json({"config": config, "inputs": inputs, "seed": seed})
        final = self.stage_dir(name)
        partial = self.root / f"{name}.partial"
        if final.exists():
            manifest = read_manifest(final)
            if manifest.get("input_hash") == input_hash:
                yield StageResult(dir=final, manifest=manifest, reused=True)
                return
            if not force:
                raise RunDirError(
                    f"stage '{name}' in {self.root} was finished with a different config or inputs",
                    hint="use a new --name for this config, or pass --force to redo the stage "
                    "(the old one is moved aside, not deleted)",
                )
            aside = self.root / f"{name}.old-{time.strftime('%Y%m%d-%H%M%S')}"
            final.rename(aside)
        resumed = False
        if partial.exists():
            info_path = partial / PARTIAL_INFO
            try:
                info = json.loads(info_path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                info = {}
            if info.get("input_hash") == input_hash and not force:
                resumed = True
            else:
                shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        started = time.time()
        if not resumed:
            write_json_atomic(
                partial / PARTIAL_INFO, {"input_hash": input_hash, "started": started}
            )
        ctx = StageContext(name=name, work_dir=partial, final_dir=final, resumed=resumed)
        yield ctx
        outputs = {
            str(p.relative_to(partial)): sha256_file(p)
            for p in sorted(partial.rglob("*"))
            if p.is_file() and p.name != PARTIAL_INFO and "checkpoints" not in p.parts
        }
        # training checkpoints are for resuming only; the finished stage keeps its final artifacts
        shutil.rmtree(partial / "checkpoints", ignore_errors=True)
        (partial / PARTIAL_INFO).unlink(missing_ok=True)
        manifest = {
            "stage": name,
            "status": "finished",
            "config": dict(config),
            "seed": seed,
            "inputs": inputs,
            "input_hash": input_hash,
            "outputs": outputs,
            "metrics": ctx.metrics,
            "versions": package_versions(),
            "started": started,
            "finished": time.time(),
            "wall_time_s": round(time.time() - started, 3),
            "resumed": resumed,
        }
        write_json_atomic(partial / MANIFEST, manifest)
        os.replace(partial, final)

    def output_hash(self, stage: str) -> str:
        """A single hash of a finished stage's outputs, used as a downstream input."""
        return hash_json(self.manifest(stage)["outputs"])
