"""Progress bars and log lines: rich on a terminal, quiet in tests.

Every long step of the pipeline takes a `UI` and calls `ui.bar(...)`, so the CLI shows a
progress bar with ETA while library callers and tests can pass `QuietUI()`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[[int], None]  # advance(completed_so_far)


def _columns() -> tuple[ProgressColumn, ...]:
    return (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )


class LiveBars:
    """Several bars at once, opened, updated and closed by key, with log lines above them: the
    view of stages that run side by side in worker processes (`psmlab.stages.pool`)."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress  # None: quiet
        self.tasks: dict[Hashable, TaskID] = {}

    def log(self, message: str) -> None:
        if self.progress is not None:
            self.progress.console.print(message)

    def open(self, key: Hashable, description: str, total: int) -> None:
        if self.progress is not None:
            self.tasks[key] = self.progress.add_task(description, total=total, info="")

    def update(self, key: Hashable, completed: int, info: str, total: int | None) -> None:
        if self.progress is not None and key in self.tasks:
            self.progress.update(self.tasks[key], completed=completed, info=info, total=total)

    def close(self, key: Hashable) -> None:
        # a finished bar leaves; the stage's "done in" line stays
        if self.progress is not None and key in self.tasks:
            self.progress.remove_task(self.tasks.pop(key))


class UI:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    def log(self, message: str) -> None:
        self.console.print(message)

    def markdown(self, text: str) -> None:
        """Markdown as plain text on stdout (logs and bars go to stderr), so it can be piped
        or pasted as it is."""
        Console(markup=False, highlight=False, soft_wrap=True).print(text)

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        """Yield `update(completed, **fields)`; shows a bar with ETA until the block ends."""
        with Progress(*_columns(), console=self.console, transient=False) as progress:
            task = progress.add_task(description, total=total, info="")

            def update(completed: int, info: str = "", total: int | None = None) -> None:
                progress.update(task, completed=completed, info=info, total=total)

            yield update

    @contextmanager
    def live_bars(self) -> Iterator[LiveBars]:
        """Bars keyed by the caller, shown together until the block ends."""
        with Progress(*_columns(), console=self.console, transient=False) as progress:
            yield LiveBars(progress)


class QuietUI(UI):
    """No output: for tests and library use."""

    def __init__(self) -> None:
        super().__init__(Console(quiet=True))

    def markdown(self, text: str) -> None:
        return None

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        def update(completed: int, info: str = "", total: int | None = None) -> None:
            return None

        yield update

    @contextmanager
    def live_bars(self) -> Iterator[LiveBars]:
        yield LiveBars(None)
