"""Progress of long steps (placement search, emulation of large input sets, design-space exploration).

Library code announces its steps through ``task`` (a bar when the amount of work is known, a spinner otherwise);
it never decides how they are shown and never imports the command line. By default nothing is shown. The
command line installs a ``RichReporter`` with ``reporting`` when its stderr is a terminal and neither --quiet nor
--json is given, so tests, pipes and scripts see exactly the output they ask for. Progress never changes what
a step computes.

    with progress.task("emulating 1,000,000 events", total=iterations) as bar:
        for chunk in chunks:
            ...
            bar.advance(len(chunk))
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any


class Reporter:
    """Shows nothing: the default, and the interface a display implements."""

    def start(self, description: str, total: float | None) -> Any:
        """Begin a step; returns a handle for the other methods."""
        return None

    def advance(self, handle: Any, amount: float) -> None:
        pass

    def describe(self, handle: Any, description: str) -> None:
        pass

    def stop(self, handle: Any) -> None:
        pass

    @property
    def active(self) -> bool:
        """Is something on screen now (so that other terminal output should go through ``print``)?"""
        return False

    def print(self, text: str) -> None:
        """Print a line of ordinary output above the progress display."""


_SILENT = Reporter()
_current: contextvars.ContextVar[Reporter] = contextvars.ContextVar("nn2aie_progress", default=_SILENT)


def current() -> Reporter:
    return _current.get()


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Show the steps started inside the block with ``reporter``."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


class Task:
    """One running step, as seen by the code doing it."""

    def __init__(self, reporter: Reporter, handle: Any):
        self._reporter, self._handle = reporter, handle

    def advance(self, amount: float = 1) -> None:
        self._reporter.advance(self._handle, amount)

    def describe(self, description: str) -> None:
        self._reporter.describe(self._handle, description)


@contextlib.contextmanager
def task(description: str, total: float | None = None, enabled: bool = True) -> Iterator[Task]:
    """A step of ``total`` units (None: unknown, a spinner); ``enabled=False`` keeps even a display silent (for
    steps too short to be worth showing)."""
    reporter = current() if enabled else _SILENT
    handle = reporter.start(description, total)
    try:
        yield Task(reporter, handle)
    finally:
        reporter.stop(handle)


class RichReporter(Reporter):
    """Steps as rich progress lines on a console (stderr by default): a spinner, the description, a bar with
    counts when the total is known, the elapsed time. Nested steps show as extra lines; the display is transient
    and disappears when the last step ends."""

    def __init__(self, console: Any = None):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console if console is not None else Console(stderr=True)
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=True,
                                  redirect_stdout=False, redirect_stderr=False)
        self._running = 0

    @property
    def active(self) -> bool:
        return self._running > 0

    def start(self, description: str, total: float | None) -> Any:
        if self._running == 0:
            self._progress.start()
        self._running += 1
        return self._progress.add_task(description, total=total)

    def advance(self, handle: Any, amount: float) -> None:
        self._progress.advance(handle, amount)

    def describe(self, handle: Any, description: str) -> None:
        self._progress.update(handle, description=description)

    def stop(self, handle: Any) -> None:
        self._progress.remove_task(handle)
        self._running -= 1
        if self._running == 0:
            self._progress.stop()

    def print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
