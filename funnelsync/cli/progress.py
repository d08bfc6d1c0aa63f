"""Progress for a person: a bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

import click

from funnelsync.sync.progress import PhaseProgress
from funnelsync.sync.run import LogPhases, LogProgress


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


class Progress:
    """Each phase of a sync (writing contacts, changing lists, enrolling) with the time left."""

    def __init__(self) -> None:
        self.on_terminal = sys.stderr.isatty()
        self._log = LogPhases()

    def __call__(self, progress: PhaseProgress) -> None:
        if not self.on_terminal:
            self._log(progress)
            return
        width = 30
        filled = width * progress.done // max(progress.total, 1)
        left = "" if progress.seconds_left is None or progress.finished else \
            f", about {_duration(progress.seconds_left)} left"
        sys.stderr.write(f"\r  {progress.phase:<17} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{progress.done}/{progress.total}{left}\x1b[K")
        if progress.finished:
            sys.stderr.write("\n")
        sys.stderr.flush()


class ReadingProgress:
    """click's progress bar over the contacts read back from HubSpot."""

    def __init__(self) -> None:
        self.on_terminal = sys.stderr.isatty()
        self._bar: Any = None
        self._log = LogProgress("reading contacts from HubSpot", "read")

    def __enter__(self) -> ReadingProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, error, traceback)

    def __call__(self, done: int, total: int) -> None:
        if not self.on_terminal:
            self._log(done, total)
            return
        if self._bar is None:
            self._bar = click.progressbar(length=total, label="reading contacts from HubSpot",
                                          file=sys.stderr).__enter__()
        self._bar.update(done - self._bar.pos)
