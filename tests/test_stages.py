"""The stage registry: a new stage is one declaration that `psmlab run`, the reuse logic and the
report pick up; evaluation stages rebind to another model; pretrain records compile fallback and
survives a damaged checkpoint."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import psmlab  # noqa: F401  (env before torch)

# isort: split
import torch
from pydantic import BaseModel

from psmlab.config import RunConfig, build_config
from psmlab.errors import TrainingError
from psmlab.pipeline import run_all, run_stages
from psmlab.rundir import RunDir, write_json_atomic
from psmlab.stages import (
    BASE_MODEL,
    Job,
    ReportPart,
    Stage,
    evaluation_stage,
    plan,
    register,
    unregister,
)
from psmlab.ui import QuietUI

SMOKE = build_config("smoke", name="s")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke run up to the base model, copied by the tests that need its stages."""
    root = tmp_path_factory.mktemp("base") / "s"
    run_stages(RunDir(root), SMOKE, QuietUI(), [BASE_MODEL])
    return root


def _copy(base: Path, dest: Path, stages: tuple[str, ...]) -> RunDir:
    for stage in stages:
        shutil.copytree(base / stage, dest / stage)
    return RunDir(dest)


# ---------------------------------------------------------------- a toy stage in one declaration


class ToyConfig(BaseModel):
    words: int = 3


CALLS: list[str] = []  # stage bodies that ran


def _toy_run(job: Job) -> None:
    CALLS.append(job.stage.name)
    corpus = job.run.stage_dir("world") / "corpus.jsonl"
    first = json.loads(corpus.read_text().splitlines()[0])["text"].split()[: job.config().words]
    write_json_atomic(job.work_dir / "toy.json", {"first_words": first})
    job.metrics["n_words"] = len(first)


def _copy_model(job: Job) -> None:
    """A stand-in for an alignment stage: a model/ folder of its own (here the base model)."""
    shutil.copytree(job.run.stage_dir(BASE_MODEL) / "model", job.work_dir / "model")


TOY = Stage(
    name="toy",
    doc="the first words of the corpus",
    run=_toy_run,
    inputs=("world",),
    config=lambda cfg: ToyConfig(),
    collect=lambda stage_dir: json.loads((stage_dir / "toy.json").read_text()),
    section=lambda part: [f"<h2>Toy section: {' '.join(part.data['first_words'])}</h2>"],
    key_metrics=("n_words",),
)
MODEL = Stage(name="copied", doc="a copy of the base model", run=_copy_model, inputs=("pretrain",))


@pytest.fixture
def toy_stages() -> Iterator[list[Stage]]:
    CALLS.clear()
    added = [register(TOY), register(MODEL)]
    try:
        added.append(register(evaluation_stage("fidelity", "copied", tag="copy")))
        yield added
    finally:
        for stage in added:
            unregister(stage.name)
    assert "toy" not in [s.name for s in plan()]


def test_registered_stage_runs_is_reused_and_reported(
    base: Path, tmp_path: Path, toy_stages: list[Stage]
) -> None:
    root = tmp_path / "s"
    _copy(base, root, ("world", "tokenizer", "pretrain"))
    names = [s.name for s in plan()]
    assert names.index("toy") > names.index("world")
    assert names.index("fidelity@copy") > names.index("copied") > names.index("pretrain")
    report_path = run_all(SMOKE, tmp_path, QuietUI())
    assert CALLS == ["toy"]
    manifests = {s: (root / s / "manifest.json").read_text() for s in names}
    toy = json.loads(manifests["toy"])
    assert toy["config"] == {"words": 3}
    assert set(toy["inputs"]) == {"world"} and toy["metrics"] == {"n_words": 3}
    # the rebound evaluation measures the other model, with the same config as on the base
    rebound = json.loads(manifests["fidelity@copy"])
    assert set(rebound["inputs"]) == {"world", "copied"}
    assert rebound["config"] == json.loads(manifests["fidelity"])["config"]
    report = json.loads(report_path.read_text())
    assert report["toy"]["first_words"] and report["stages"]["toy"]["metrics"]["n_words"] == 3
    assert report["fidelity@copy"]["model_dir"].endswith("copied/model")
    # same weights, greedy decoding: the copy's numbers are the base model's
    assert report["fidelity@copy"]["summary"] == report["fidelity"]["summary"]
    page = (root / "report.html").read_text()
    assert "Toy section: " + " ".join(report["toy"]["first_words"]) in page
    assert "Persona fidelity of the 'copied' model" in page and "n_words=3" in page
    # a second run reuses every stage as it was
    run_all(SMOKE, tmp_path, QuietUI())
    assert CALLS == ["toy"]
    for stage, text in manifests.items():
        assert (root / stage / "manifest.json").read_text() == text, stage


def test_registry_refuses_bad_declarations() -> None:
    def noop(job: Job) -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):
        register(Stage(name="world", doc="", run=noop))
    with pytest.raises(ValueError, match="no field 'wrold'"):
        register(Stage(name="x", doc="", run=noop, config=("wrold",)))
    with pytest.raises(ValueError, match="cannot be a stage name"):
        register(Stage(name="targets", doc="", run=noop))
    with pytest.raises(ValueError, match="evaluates no model"):
        evaluation_stage("world", "pretrain")
    register(Stage(name="needs_missing", doc="", run=noop, inputs=("nowhere",)))
    try:
        with pytest.raises(ValueError, match="needs 'nowhere'"):
            plan()
    finally:
        unregister("needs_missing")


def test_report_part_names_the_model() -> None:
    fid = plan(["fidelity"])[-1]
    part = ReportPart(fid, {}, {})
    assert part.model_label == "base model"
    rebound = ReportPart(evaluation_stage("fidelity", "align-rlhf", tag="rlhf"), {}, {})
    assert rebound.stage.name == "fidelity@rlhf" and rebound.stage.kind == "fidelity"
    assert rebound.model_label == "'align-rlhf' model"


# ---------------------------------------------------------------- pretrain: compile, checkpoints


def _pretrain(base: Path, dest: Path, cfg: RunConfig = SMOKE) -> dict[str, Any]:
    run = _copy(base, dest, ("world", "tokenizer")) if not dest.exists() else RunDir(dest)
    run_stages(run, cfg, QuietUI(), [BASE_MODEL])
    return run.manifest(BASE_MODEL)


def test_compile_fallback_is_recorded_in_the_manifest(base: Path, tmp_path: Path) -> None:
    eager = RunDir(base).manifest(BASE_MODEL)["metrics"]
    assert eager["compiled"] is False and eager["compile_fallback_reason"] is None

    def broken_compile(*args: object, **kwargs: object) -> object:
        raise RuntimeError("no C++ compiler\nlong details")

    cfg = build_config("smoke", overrides=["pretrain.compile=true"], name="s")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "compile", broken_compile)
        with pytest.warns(UserWarning, match="training eagerly"):
            manifest = _pretrain(base, tmp_path / "s", cfg)
    metrics = manifest["metrics"]
    assert metrics["compiled"] is False
    assert metrics["compile_fallback_reason"] == "RuntimeError: no C++ compiler"
    # eager after a failed compile trains the same weights
    model = "model/model.safetensors"
    assert manifest["outputs"][model] == RunDir(base).manifest(BASE_MODEL)["outputs"][model]


def _killed_after_step_10(base: Path, dest: Path) -> Path:
    """A pretrain stage killed right after its step-10 checkpoint (smoke: every 5 steps)."""
    import psmlab.pretrain.train as train

    real_save = train._save_checkpoint

    def save_then_die(ckpt_dir: Path, step: int, state: dict[str, Any]) -> None:
        real_save(ckpt_dir, step, state)
        if step == 10:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "_save_checkpoint", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            _pretrain(base, dest)
    ckpts = dest / "pretrain.partial" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_10", "step_5"]
    return ckpts


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_damaged_latest_checkpoint_falls_back_to_the_previous(base: Path, tmp_path: Path) -> None:
    ckpts = _killed_after_step_10(base, tmp_path / "s")
    _truncate(ckpts / "step_10" / "state.pt")
    with pytest.warns(UserWarning, match=r"skipping damaged checkpoint .*step_10.*RuntimeError"):
        manifest = _pretrain(base, tmp_path / "s")
    assert manifest["metrics"]["resumed_from"] == 5
    # resuming from the older checkpoint still gives the uninterrupted run's weights, bit for bit
    # (loss.json differs only in its timings)
    full = RunDir(base).manifest(BASE_MODEL)["outputs"]
    model = {k: v for k, v in manifest["outputs"].items() if k.startswith("model/")}
    assert model == {k: v for k, v in full.items() if k.startswith("model/")} and model
    losses = [
        json.loads((d / "pretrain" / "loss.json").read_text()) for d in (base, tmp_path / "s")
    ]
    assert [r["loss"] for r in losses[0]] == [r["loss"] for r in losses[1]]


def test_no_readable_checkpoint_stops_with_one_clear_error(base: Path, tmp_path: Path) -> None:
    ckpts = _killed_after_step_10(base, tmp_path / "s")
    for step in ("step_5", "step_10"):
        _truncate(ckpts / step / "state.pt")
    with (
        pytest.warns(UserWarning, match="skipping damaged checkpoint"),
        pytest.raises(TrainingError, match="no readable checkpoint") as err,
    ):
        _pretrain(base, tmp_path / "s")
    message = str(err.value)
    assert str(ckpts / "step_5" / "state.pt") in message and "restart pretraining" in message
