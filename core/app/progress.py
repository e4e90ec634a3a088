"""Progress of a long run (an ingest, a backfill): seen by whoever is watching it.

On a terminal, a rich progress bar per source with the count, the rate and — when the
source can say how many records it holds (`Countable`) — the bar and the time left. Not on
a terminal (a container's log, a CI job), a JSON log line every `every` seconds and one
when the source is done, with the same figures, so a log reader can follow a million-row
backfill without a terminal.

Figures are the records read from the source (`IngestReport.fetched`): what an operator
compares with the size of the file or table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

log = logging.getLogger("leadbridge.progress")


class _Rate(ProgressColumn):
    """Records per second, as rich measures it over its recent window."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class RunProgress:
    """Follow one run's sources: `start` each with its expected size, then `update` with
    the count so far (as `on_batch` callbacks report it), `finish` at its end."""

    def __init__(
        self,
        *,
        console: Console,
        terminal: bool,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console, self.terminal, self.every, self.clock = console, terminal, every, clock
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.what = ""
        self.total: int | None = None
        self.done = 0
        self.started = self.logged = 0.0

    def __enter__(self) -> RunProgress:
        if self.terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
                get_time=self.clock,
            )
            self.bar.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.__exit__(kind, error, trace)

    def start(self, what: str, total: int | None) -> None:
        """A new source begins: `total` records expected, None when unknown."""
        self.what, self.total, self.done = what, total, 0
        self.started = self.logged = self.clock()
        if self.bar is not None:
            self.task = self.bar.add_task(what, total=total)

    def update(self, done: int) -> None:
        """`done` records read so far from the current source."""
        self.done = done
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done)
        elif not self.terminal and self.clock() - self.logged >= self.every:
            self._log("ingest progress")

    def finish(self) -> None:
        """The current source is read: its last line (not on a terminal), its bar closed."""
        if self.bar is not None and self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        elif not self.terminal and self.what:
            self._log("ingest done")

    def _log(self, message: str) -> None:
        self.logged = self.clock()
        log.info(message, extra=self.figures())

    def figures(self) -> dict[str, Any]:
        """The figures of the progress line: counts, rate, elapsed and estimated seconds left."""
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        left = None
        if self.total is not None and rate > 0:
            left = round(max(self.total - self.done, 0) / rate, 1)
        return {
            "source": self.what,
            "done": self.done,
            "total": self.total,
            "rate_per_s": round(rate, 1),
            "elapsed_s": round(elapsed, 1),
            "eta_s": left,
        }
