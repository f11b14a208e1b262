"""psmlab compare: finished runs side by side from their report.json; clear errors for a
missing folder, an unfinished run and a corrupt report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from psmlab.compare import compare, load_report
from psmlab.errors import PsmlabError


def test_compare_two_finished_runs(smoke_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from psmlab.config import build_config
    from psmlab.report import write_report

    write_report(smoke_run, build_config("smoke", name="a"))
    other = tmp_path / "b"
    other.mkdir()
    report = json.loads((smoke_run.root / "report.json").read_text())
    report["config"]["world"]["rho"] = 0.0  # a second run that differs in one setting
    report.pop("mask-index")  # and has no audit: its cells stay empty
    (other / "report.json").write_text(json.dumps(report))
    data = compare([smoke_run.root, other])
    rows = {r["measure"]: r["values"] for r in data["rows"]}
    assert rows["preset"] == ["smoke", "smoke"]
    assert rows["rho"][1] == "0.0" and rows["rho"][0] != "0.0"
    audit = json.loads((smoke_run.stage_dir("mask-index") / "audit.json").read_text())
    for technique, model in audit["mask_index"]["models"].items():
        cell = rows[f"verdict: {technique}"]
        assert cell[0] == model["verdict"].split(" (", 1)[0] and cell[1] == ""
    checks = [r for r in rows if r.startswith("sanity: ")]
    assert len(checks) == len(audit["sanity"]) == 2


def test_compare_errors(tmp_path: Path) -> None:
    with pytest.raises(PsmlabError, match="not a folder"):
        load_report(tmp_path / "missing")
    with pytest.raises(PsmlabError, match="has not finished"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(PsmlabError, match="not valid JSON"):
        load_report(tmp_path)
    with pytest.raises(PsmlabError, match="nothing to compare"):
        compare([])


def test_compare_cli_error_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "psmlab.cli", "compare", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "not a folder" in " ".join((proc.stdout + proc.stderr).split())
    assert "Traceback" not in proc.stdout + proc.stderr
