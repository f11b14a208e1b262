"""Progress bars and log lines: rich on a terminal, quiet in tests.

Every long step of the pipeline takes a `UI` and calls `ui.bar(...)`, so the CLI shows a
progress bar with ETA while library callers and tests can pass `QuietUI()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[[int], None]  # advance(completed_so_far)


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
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(description, total=total, info="")

            def update(completed: int, info: str = "", total: int | None = None) -> None:
                progress.update(task, completed=completed, info=info, total=total)

            yield update


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
