"""The stage pool: dependency order with priorities, relayed progress, failures that arrive with
their hint, and stages that exist only in this process refused clearly. (That a pooled smoke
story computes the same numbers as a sequential one is checked in test_cli.)"""

import queue
import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from psmlab.config import build_config
from psmlab.errors import ConfigError, PsmlabError, RunDirError
from psmlab.pipeline import CONTROL_OPTIONS, CONTROL_STAGES, control_config
from psmlab.rundir import RunDir
from psmlab.stages import Job, Stage, get, plan, register, unregister
from psmlab.stages.pool import Arm, StageFailed, _order, _portable, _RelayUI, run_pool
from psmlab.ui import UI, LiveBars, QuietUI

SMOKE = build_config("smoke")


def _arms(root: Path) -> list[Arm]:
    control = Arm(RunDir(root / "c"), control_config(SMOKE), CONTROL_STAGES, CONTROL_OPTIONS)
    return [Arm(RunDir(root), SMOKE), control]


def test_order_covers_both_arms_and_puts_what_most_stages_wait_for_first(tmp_path: Path) -> None:
    needs, order = _order(_arms(tmp_path))
    assert len(order) == len(set(order)) == len(plan()) + len(plan(CONTROL_STAGES))
    for arm, name in order:
        assert needs[(arm, name)] == {(arm, up) for up in get(name).upstream}
    position = {key: n for n, key in enumerate(order)}
    # the longest chains first: the three pretrainings before the post-training they wait for,
    # post-training before the audits of its models, the gathering mask index last of its arm
    pretrainings = [(0, "pretrain"), (1, "pretrain"), (0, "filtered-pretrain")]
    assert max(position[k] for k in pretrainings) < position[(0, "align-sft")]
    assert position[(0, "align-rlhf")] < position[(0, "slip@align-rlhf")]
    assert order[0] == (0, "world")
    assert position[(0, "mask-index")] == max(p for (arm, _), p in position.items() if arm == 0)


def test_relay_ui_sends_log_lines_and_bars_in_order() -> None:
    events: queue.Queue = queue.Queue()
    ui = _RelayUI(events, worker=3)
    ui.log("hello")
    with ui.bar("training", total=5) as update:
        update(5, info="loss 1.0")  # the first update is always sent
        update(5, info="again")  # throttled: within UPDATE_EVERY_S of the last one
    got = [events.get_nowait() for _ in range(events.qsize())]
    assert got == [
        ("log", "hello"),
        ("open", (3, 1), "training", 5),
        ("update", (3, 1), 5, "loss 1.0", None),
        ("close", (3, 1)),
    ]


def test_live_bars_show_logs_and_forget_closed_bars() -> None:
    out = StringIO()
    with UI(Console(file=out, force_terminal=False, width=100)).live_bars() as bars:
        bars.open("k", "pretrain", 10)
        bars.update("k", 4, "loss 2.0", None)
        bars.log("pretrain: done")
        bars.close("k")
        bars.update("k", 5, "", None)  # a late update of a closed bar is ignored
        assert bars.tasks == {}
    assert "pretrain: done" in out.getvalue()
    with QuietUI().live_bars() as quiet:
        assert isinstance(quiet, LiveBars) and quiet.progress is None
        quiet.open("k", "x", 1)
        quiet.log("nothing shown")


def test_errors_cross_processes_with_their_hint() -> None:
    err = _portable(ConfigError("bad field", hint="fix it"))
    assert isinstance(err, ConfigError) and err.hint == "fix it"
    try:
        raise KeyError("boom")
    except KeyError as exc:
        bug = _portable(exc)
    assert isinstance(bug, StageFailed) and "Traceback" in str(bug) and "boom" in str(bug)


def test_a_failing_stage_stops_the_pool_with_its_own_message(
    smoke_run: RunDir, tmp_path: Path
) -> None:
    root = tmp_path / "r"
    root.mkdir()
    for stage in ("world", "tokenizer"):
        shutil.copytree(smoke_run.stage_dir(stage), root / stage)
    tokens = root / "tokenizer" / "tokens.npy"
    ids = np.load(tokens)
    np.save(tokens, np.full_like(ids, np.iinfo(ids.dtype).max))  # beyond any vocabulary
    with pytest.raises(RunDirError, match="token ids beyond the tokenizer") as info:
        run_pool([Arm(RunDir(root), SMOKE, ("pretrain",))], QuietUI(), jobs=2)
    assert info.value.hint == "re-tokenize the corpus with this tokenizer"
    assert not RunDir(root).is_finished("pretrain")  # nothing looks finished


def test_a_stage_registered_at_run_time_is_refused_clearly(tmp_path: Path) -> None:
    def body(job: Job) -> None:
        (job.work_dir / "x.txt").write_text("x")

    register(Stage(name="only-here", doc="exists in this process only", run=body))
    try:
        with pytest.raises(PsmlabError, match="not registered in a fresh process") as info:
            run_pool([Arm(RunDir(tmp_path), SMOKE, ("only-here",))], QuietUI(), jobs=2)
        assert info.value.hint and "--jobs 1" in info.value.hint
    finally:
        unregister("only-here")
