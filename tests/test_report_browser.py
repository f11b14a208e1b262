"""report.html in a real browser: headless Chromium (Debian's `chromium`, installed by
scripts/setup.sh) opens the smoke run's report offline; any console error, page error, request
that leaves the file, or image that does not decode fails the test. A full-page screenshot is
kept in build/report-smoke.png. Skipped, saying why, only where chromium or playwright is
missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from psmlab.rundir import RunDir

SCREENSHOT = Path(__file__).resolve().parents[1] / "build" / "report-smoke.png"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on this machine: `apt-get install chromium` (scripts/setup.sh tries)")


def test_report_renders_in_headless_chromium(smoke_run: RunDir) -> None:
    from psmlab.config import RunConfig
    from psmlab.report import write_report

    browser_path = _chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'"
    )
    cfg = RunConfig.model_validate(json.loads((smoke_run.root / "run.json").read_text())["config"])
    page_path = write_report(smoke_run, cfg).with_suffix(".html")
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "request",
                lambda r: (
                    problems.append(f"network request: {r.url}")
                    if not r.url.startswith(("file:", "data:"))
                    else None
                ),
            )
            page.goto(page_path.as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])"
            )
            headings = page.evaluate(
                "Array.from(document.querySelectorAll('h2')).map(h => h.textContent)"
            )
            rows = page.evaluate("document.querySelectorAll('#predictions + p + table tr').length")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    broken = [alt for alt, ok in images if not ok]
    assert not problems, problems
    assert images and not broken, f"images that do not decode: {broken}"
    assert rows == 10  # the header and the nine predictions
    for wanted in ("The PSM predictions", "The mask index", "Limitations", "Methods and config"):
        assert any(wanted in h for h in headings), (wanted, headings)
    assert SCREENSHOT.stat().st_size > 20_000
