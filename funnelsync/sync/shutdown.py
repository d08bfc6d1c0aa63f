"""Stopping on SIGTERM/SIGINT within a bound, even while HubSpot hangs.

A signal sets the stop event: the run stops at its next safe point (between batches and
enrollments, and in any wait for a retry or the rate budget) and is recorded as stopped. A
request in flight cannot be interrupted, and HubSpot may take `timeout_seconds` to answer or
never: when the run has not stopped `[daemon].stop_grace_seconds` after the signal, the
process records the run as stopped and exits. What was in flight is left `started` in the
journal, an unknown outcome that the next run settles against HubSpot before sending
anything. A second signal exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

import structlog

log = structlog.get_logger("funnelsync.daemon")
RECORD_SECONDS = 3.0  # of the grace kept for recording the run as stopped before exiting


class Shutdown:
    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self.stop = threading.Event()
        self.signal: int | None = None
        self.on_overrun: Callable[[], None] | None = None  # records the run in flight as stopped

    def install(self) -> Shutdown:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    @property
    def exit_status(self) -> int:
        """128 + the signal, as a shell reports a process ended by it; 0 without one."""
        return 128 + self.signal if self.signal is not None else 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
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


def _exit(status: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
