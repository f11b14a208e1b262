import json

import pytest

from psmlab.errors import RunDirError
from psmlab.rundir import MANIFEST, RunDir, StageResult


def _run_stage(run, cfg, content="x", fail=False, force=False):
    with run.stage("s", cfg, {"up": "h"}, seed=1, force=force) as st:
        if isinstance(st, StageResult):
            return st
        (st.work_dir / "a.txt").write_text(content)
        if fail:
            raise RuntimeError("killed")
        st.metrics["m"] = 1
    return None


def test_stage_finishes_atomically_and_is_reused(tmp_path):
    run = RunDir(tmp_path / "r")
    assert _run_stage(run, {"a": 1}) is None
    m = run.manifest("s")
    assert m["status"] == "finished" and "a.txt" in m["outputs"] and m["metrics"] == {"m": 1}
    assert not (tmp_path / "r" / "s.partial").exists()
    reused = _run_stage(run, {"a": 1})
    assert isinstance(reused, StageResult) and reused.reused


def test_interrupted_stage_never_looks_finished_and_resumes(tmp_path):
    run = RunDir(tmp_path / "r")
    with pytest.raises(RuntimeError):
        _run_stage(run, {"a": 1}, fail=True)
    assert not run.is_finished("s")
    assert (tmp_path / "r" / "s.partial" / "a.txt").exists()
    with run.stage("s", {"a": 1}, {"up": "h"}, seed=1) as st:
        assert not isinstance(st, StageResult) and st.resumed
        assert (st.work_dir / "a.txt").exists()
    assert run.is_finished("s")


def test_changed_inputs_refuse_then_force_moves_aside(tmp_path):
    run = RunDir(tmp_path / "r")
    _run_stage(run, {"a": 1})
    with pytest.raises(RunDirError, match="different config"):
        _run_stage(run, {"a": 2})
    _run_stage(run, {"a": 2}, content="y", force=True)
    assert run.manifest("s")["config"] == {"a": 2}
    assert any(p.name.startswith("s.old-") for p in (tmp_path / "r").iterdir())


def test_corrupt_and_missing(tmp_path):
    run = RunDir(tmp_path / "r")
    _run_stage(run, {"a": 1})
    (tmp_path / "r" / "s" / MANIFEST).write_text("{not json")
    with pytest.raises(RunDirError, match="corrupt"):
        run.manifest("s")
    with pytest.raises(RunDirError, match="missing"):
        run.manifest("nope")
    with pytest.raises(RunDirError, match="does not exist"):
        RunDir.open_existing(tmp_path / "absent")
    (tmp_path / "r" / "s" / MANIFEST).write_text(json.dumps({"status": "running"}))
    with pytest.raises(RunDirError, match="not a finished"):
        run.manifest("s")
