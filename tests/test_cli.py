"""The CLI: one clear message on bad input, and the smoke preset end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_smoke_run_end_to_end_and_reuse(tmp_path):
    proc = _cli("run", "--preset", "smoke", "--name", "s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path / "runs" / "s"
    report = json.loads((root / "report.json").read_text())
    assert (root / "report.html").stat().st_size > 1000
    for stage in ("world", "tokenizer", "pretrain", "fidelity"):
        manifest = json.loads((root / stage / "manifest.json").read_text())
        assert manifest["status"] == "finished" and manifest["outputs"]
    fid = report["fidelity"]
    assert set(fid["trait_summary"]["introduced"]) == {"honesty", "harm", "sycophancy", "identity"}
    # a second run with the same config reuses every stage and reproduces the numbers
    again = _cli("run", "--preset", "smoke", "--name", "s", cwd=tmp_path)
    assert again.returncode == 0 and "reused" in again.stdout + again.stderr
    assert json.loads((root / "report.json").read_text())["fidelity"] == fid
    # the same name with another config refuses to overwrite silently
    other = _cli("run", "--preset", "smoke", "--name", "s", "--set", "world.rho=0.1", cwd=tmp_path)
    assert other.returncode == 2 and "different config" in other.stdout + other.stderr
    # ... and the refused invocation does not replace the run's recorded config
    recorded = json.loads((root / "run.json").read_text())["config"]
    assert recorded["world"]["rho"] == report["config"]["world"]["rho"] != 0.1
