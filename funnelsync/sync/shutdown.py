"""Stopping on SIGTERM/SIGINT within a bound, even while HubSpot hangs.

A signal sets the stop event: the run stops at its next safe point (between batches and
enrollments, and in any wait for a retry or the rate budget) and is recorded as stopped. A
request in flight cannot be interrupted, and HubSpot may take `timeout_seconds` to answer or
never: when the run has not stopped `[daemon].stop_grace_seconds` after the signal, the
process records the run as stopped and exits. What was in flight is left `started` in the
journal, an unknown outcome that the next run settles against HubSpot before sending
anything. A second signal exits at once.

The kernel may hand a process's signal to any of its threads. Python runs its handlers on the
main thread only, when that thread next runs Python code, and the daemon's main thread waits on
an event: a SIGTERM that landed on a request thread would wait there until SIGKILL. So a signal
is taken from the interpreter's wakeup file descriptor, which the C-level handler writes at once
on whichever thread got it, by a thread of its own; that thread may also log and set events
safely, which a handler interrupting the main thread mid-lock may not.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import structlog

log = structlog.get_logger("funnelsync.daemon")
RECORD_SECONDS = 3.0  # of the grace kept for recording the run as stopped before exiting
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.stop = threading.Event()
        self.signal: int | None = None
        self.on_overrun: Callable[[], None] | None = None  # records the run in flight as stopped

    @contextmanager
    def installed(self) -> Iterator[Shutdown]:
        """SIGTERM and SIGINT stop the run while inside; the handlers before are restored after.
        Only on the main thread, as Python's signal handling is."""
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)  # a C-level handler must never block
        earlier = {signum: signal.signal(signum, _carried_by_the_wakeup_fd) for signum in STOP_SIGNALS}
        earlier_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        watcher = threading.Thread(target=self._watch, args=(read_end,), name="funnelsync-signals", daemon=True)
        watcher.start()
        try:
            yield self
        finally:
            signal.set_wakeup_fd(earlier_fd)
            for signum, handler in earlier.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)
            os.close(write_end)  # the watcher reads the end of the pipe and returns
            watcher.join()
            os.close(read_end)

    @property
    def exit_status(self) -> int:
        """128 + the signal, as a shell reports a process ended by it; 0 without one."""
        return 128 + self.signal if self.signal is not None else 0

    def _watch(self, read_end: int) -> None:
        while received := os.read(read_end, 64):
            for signum in received:
                if signum in STOP_SIGNALS:
                    self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        if self.signal is not None:
            log.warning("second stop signal: exiting now", signal=signal.Signals(signum).name)
            _exit(self.exit_status)
        self.signal = signum
        log.info("stop requested", signal=signal.Signals(signum).name, grace_seconds=self.grace_seconds)
        self.stop.set()
        threading.Thread(target=self._deadline, name="funnelsync-stop-deadline", daemon=True).start()

    def _deadline(self) -> None:
        # the main thread may be the one stuck in a request: wait on an event nobody sets
        threading.Event().wait(max(self.grace_seconds - RECORD_SECONDS, 0.0))
        log.error("the run did not stop within the grace period: exiting; the request in flight is "
                  "settled against HubSpot by the next run", grace_seconds=self.grace_seconds)
        if self.on_overrun is not None:
            recorder = threading.Thread(target=self._record, name="funnelsync-stop-record", daemon=True)
            recorder.start()
            recorder.join(min(RECORD_SECONDS, self.grace_seconds))
        _exit(self.exit_status)

    def _record(self) -> None:
        try:
            assert self.on_overrun is not None
            self.on_overrun()
        except Exception as exc:  # the next run marks it interrupted instead
            log.warning("could not record the run as stopped", error=type(exc).__name__, reason=str(exc))


def _carried_by_the_wakeup_fd(signum: int, frame: FrameType | None) -> None:
    """Python's handler, on the main thread whenever it gets there: the watcher has acted."""


def _exit(status: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
