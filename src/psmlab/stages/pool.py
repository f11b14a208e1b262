"""Run the stages of one or more run folders on a few worker processes, in dependency order.

Why: on our 2-core machines most stages keep only 1.2-1.7 cores busy (measured on the quick
story: fidelity 1.24, align-sft 1.66, align-rlhf 1.26, align-dpo 1.36), and two 2-thread
pretrainings side by side train 2 x 15.2 k tokens/s against 26.1 k for one alone. So two
stages at a time finish `psmlab run` sooner.

Why the numbers do not change: a stage reads its inputs from the run folder, writes only its
own `.partial` folder, sets its own torch thread count and seeds its own generators, so it
computes the same in whichever process runs it and next to whatever else runs (its thread count
is its config's, not the machine's load). The test suite checks that a pooled smoke story
writes the same weights, persona vectors and mask index as the sequential one.

Workers are spawned processes that import `psmlab.stages`, so they know the built-in stages; a
stage registered at run time in this process exists only here (run it with `jobs=1`). Progress
bars and log lines are relayed to this process's UI. The first failure stops the pool: running
stages are stopped (their `.partial` folders resume on the next run) and the error is raised
here, with its hint.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psmlab.config import RunConfig
from psmlab.errors import PsmlabError
from psmlab.rundir import RunDir
from psmlab.stages.registry import Stage, get, plan, run_stage
from psmlab.ui import UI, LiveBars

Key = tuple[int, str]  # a stage of one arm: (arm index, stage name)
UPDATE_EVERY_S = 0.2  # a worker relays a bar's progress at most this often


@dataclass(frozen=True)
class Arm:
    """One run folder's share of the pool: which stages (and what they need), with options."""

    run: RunDir
    cfg: RunConfig
    targets: Sequence[str] | None = None  # None: every registered stage
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Task:
    key: Key
    root: Path
    cfg: RunConfig
    force: bool
    options: Mapping[str, Any] | None


class StageFailed(RuntimeError):
    """A stage raised something other than a PsmlabError in a worker (a bug): the worker's
    traceback is the message."""


class _RelayUI(UI):
    """A worker's UI: log lines and bar updates go to the parent as events."""

    def __init__(self, events: Any, worker: int) -> None:
        super().__init__()
        self.events = events
        self.worker = worker
        self.n_bars = 0

    def log(self, message: str) -> None:
        self.events.put(("log", message))

    def markdown(self, text: str) -> None:
        self.events.put(("log", text))

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        self.n_bars += 1
        key = (self.worker, self.n_bars)
        self.events.put(("open", key, description, total))
        last = [0.0]

        def update(completed: int, info: str = "", total: int | None = None) -> None:
            now = time.monotonic()
            if now - last[0] >= UPDATE_EVERY_S:
                last[0] = now
                self.events.put(("update", key, completed, info, total))

        try:
            yield update
        finally:
            self.events.put(("close", key))


def _portable(exc: BaseException) -> BaseException:
    """The exception as it can cross to the parent: PsmlabErrors keep type, message and hint;
    anything else becomes a StageFailed carrying the worker's traceback."""
    if isinstance(exc, PsmlabError):
        return exc
    return StageFailed("".join(traceback.format_exception(exc)).rstrip())


def _registered(name: str) -> Stage:
    try:
        return get(name)
    except PsmlabError:
        raise PsmlabError(
            f"stage '{name}' is not registered in a fresh process (registered at run time?)",
            hint="run it in this process: `jobs=1` (`psmlab run --jobs 1`)",
        ) from None


def _worker(worker: int, tasks: Any, events: Any) -> None:
    import psmlab.stages  # noqa: F401  (registers the built-in stages)

    ui = _RelayUI(events, worker)
    while (task := tasks.get()) is not None:
        try:
            stage = _registered(task.key[1])
            out = run_stage(stage, RunDir(task.root), task.cfg, ui, task.force, task.options)
            events.put(("done", task.key, out.reused))
        except BaseException as exc:  # noqa: BLE001  (every failure is reported, then we stop)
            events.put(("failed", task.key, _portable(exc)))
            return


def _order(arms: Sequence[Arm]) -> tuple[dict[Key, set[Key]], list[Key]]:
    """Each stage's upstream stages, and all stages by priority: the longest chain of work
    still ahead of a stage (its `cost` plus its costliest dependant's chain) first, so the three
    pretrainings start early and run next to the lighter stages instead of at the end; ties
    go by arm, then the sequential order."""
    needs: dict[Key, set[Key]] = {}
    cost: dict[Key, float] = {}
    for i, arm in enumerate(arms):
        for stage in plan(arm.targets):
            needs[(i, stage.name)] = {(i, up) for up in stage.upstream}
            cost[(i, stage.name)] = stage.cost
    sequence = list(needs)  # dependency order within each arm
    ahead = dict(cost)  # a stage's own cost, then the costliest chain starting at it
    for key in reversed(sequence):  # a stage's dependants come after it, so are complete
        for up in needs[key]:
            ahead[up] = max(ahead[up], cost[up] + ahead[key])
    rank = {k: (-ahead[k], k[0], n) for n, k in enumerate(sequence)}
    return needs, sorted(sequence, key=rank.__getitem__)


def run_pool(arms: Sequence[Arm], ui: UI, force: bool = False, jobs: int = 2) -> dict[Key, bool]:
    """Run every arm's stages, `jobs` at a time; returns {(arm index, stage): reused}."""
    needs, queue_order = _order(arms)
    done: dict[Key, bool] = {}
    running: set[Key] = set()
    ctx = mp.get_context("spawn")  # no fork of a process that holds torch threads
    tasks, events = ctx.Queue(), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(w, tasks, events), name=f"psmlab-stage-{w}")
        for w in range(min(jobs, len(queue_order)))
    ]
    for proc in workers:
        proc.start()
    try:
        with ui.live_bars() as bars:
            while len(done) < len(queue_order):
                for key in [k for k in queue_order if k not in done and k not in running]:
                    if len(running) >= len(workers):
                        break
                    if needs[key] <= done.keys():
                        arm = arms[key[0]]
                        opts = arm.options.get(key[1])
                        tasks.put(_Task(key, arm.run.root, arm.cfg, force, opts))
                        running.add(key)
                _handle(events, bars, done, running, workers)
    finally:
        for _ in workers:
            tasks.put(None)
        for proc in workers:
            proc.join(timeout=5 if not running else 0)
            if proc.is_alive():  # a failure or Ctrl-C left a stage running: stop it
                proc.terminate()
                proc.join()
    return done


def _handle(
    events: Any, bars: LiveBars, done: dict[Key, bool], running: set[Key], workers: list[Any]
) -> None:
    """Wait for the next event (a second at most) and apply it."""
    try:
        event = events.get(timeout=1.0)
    except queue.Empty:
        dead = [p.name for p in workers if not p.is_alive()]
        if dead and running:
            raise StageFailed(
                f"worker {dead[0]} died while running {sorted(running)} (out of memory?); "
                "rerun `psmlab run` to resume, or use --jobs 1"
            ) from None
        return
    kind = event[0]
    if kind == "log":
        bars.log(event[1])
    elif kind == "open":
        bars.open(*event[1:])
    elif kind == "update":
        bars.update(*event[1:])
    elif kind == "close":
        bars.close(event[1])
    elif kind == "done":
        running.discard(event[1])
        done[event[1]] = event[2]
    else:  # failed
        running.discard(event[1])
        raise event[2]
