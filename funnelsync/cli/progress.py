"""Progress for a person: a bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

import click

from funnelsync.sync.run import LogProgress


class Progress:
    """The contacts written so far."""

    def __init__(self) -> None:
        self.on_terminal = sys.stderr.isatty()
        self._log = LogProgress("progress", "written")

    def __call__(self, done: int, total: int) -> None:
        if not self.on_terminal:
            self._log(done, total)
            return
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} contacts")
        if done >= total:
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
