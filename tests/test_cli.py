"""The CLI: one clear message on bad input, and the smoke preset end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from psmlab.rundir import RunDir
from psmlab.stages import plan

PSMLAB = [sys.executable, "-m", "psmlab.cli"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*PSMLAB, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["config", "--set", "world.rhoo=1"], "unknown field 'world.rhoo'"),
        (["config", "--preset", "nope"], "unknown preset"),
        (["config", "--config", "missing.yaml"], "does not exist"),
        (["fidelity", "no/such/run"], "not a psmlab run directory"),
    ],
)
def test_bad_input_one_clear_message(tmp_path, args, needle):
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert needle in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_corrupt_run_directory_is_reported(tmp_path):
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{oops")
    proc = _cli("fidelity", str(run), cwd=tmp_path)
    assert proc.returncode == 2 and "corrupt" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def _same_numbers(pooled: Path, sequential: RunDir) -> list[str]:
    """Stages of a pooled run whose tensors (weights, persona vectors) or mask-index numbers
    differ from the sequential run's, among the stages both ran with the same config."""
    differ = []
    for stage_dir in sorted(p for p in pooled.iterdir() if (p / "manifest.json").is_file()):
        theirs = sequential.stage_dir(stage_dir.name)
        if not (theirs / "manifest.json").is_file():
            continue
        mine_cfg = json.loads((stage_dir / "manifest.json").read_text())["config"]
        if mine_cfg != sequential.manifest(stage_dir.name)["config"]:
            continue
        for file in sorted(stage_dir.rglob("*.safetensors")):
            a, b = load_file(file), load_file(theirs / file.relative_to(stage_dir))
            if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a):
                differ.append(str(file.relative_to(pooled)))
    audit = "mask-index/audit.json"
    if (pooled / audit).read_bytes() != (sequential.root / audit).read_bytes():
        differ.append(audit)
    return differ


def test_smoke_run_end_to_end_and_reuse(tmp_path, smoke_run):
    # two stages at a time in worker processes (the default on 2 cores) ...
    proc = _cli("run", "--preset", "smoke", "--name", "s", "--jobs", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path / "runs" / "s"
    report = json.loads((root / "report.json").read_text())
    assert (root / "report.html").stat().st_size > 1000
    stages = [s.name for s in plan()]  # every registered stage runs in `psmlab run`
    assert {"world", "tokenizer", "pretrain", "fidelity", "directions"} <= set(stages)
    manifests = {s: (root / s / "manifest.json").read_text() for s in stages}
    for stage, text in manifests.items():
        manifest = json.loads(text)
        assert manifest["status"] == "finished" and manifest["outputs"], stage
    fid = report["fidelity"]
    # ... computes what the stages compute one after the other in one process (the fixture)
    assert _same_numbers(root, smoke_run) == []
    assert "2 stages at a time" in proc.stdout + proc.stderr
    assert set(fid["trait_summary"]["introduced"]) == {"honesty", "harm", "sycophancy", "identity"}
    # a second run with the same config reuses every stage and reproduces the numbers
    again = _cli("run", "--preset", "smoke", "--name", "s", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    for stage, text in manifests.items():
        # a redone stage would have a new manifest (timestamps): each one is reused as it was
        assert (root / stage / "manifest.json").read_text() == text, stage
        assert f"{stage}: reused" in again.stdout + again.stderr
    assert json.loads((root / "report.json").read_text())["fidelity"] == fid
    # the same name with another config refuses to overwrite silently
    other = _cli("run", "--preset", "smoke", "--name", "s", "--set", "world.rho=0.1", cwd=tmp_path)
    assert other.returncode == 2 and "different config" in other.stdout + other.stderr
    # ... and the refused invocation does not replace the run's recorded config
    recorded = json.loads((root / "run.json").read_text())["config"]
    assert recorded["world"]["rho"] == report["config"]["world"]["rho"] != 0.1


def test_stages_and_config_list_every_stage(tmp_path):
    listing = _cli("stages", cwd=tmp_path)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert all(s.name in listing.stdout for s in plan())
    config = json.loads(_cli("config", "--set", "directions.n_requests=2", cwd=tmp_path).stdout)
    assert config["directions"]["n_requests"] == 2
    bad = _cli("config", "--set", "directions.n_requests=0", cwd=tmp_path)
    assert bad.returncode == 2 and "directions.n_requests" in bad.stdout + bad.stderr
