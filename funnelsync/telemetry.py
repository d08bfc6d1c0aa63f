"""The daemon's Prometheus metrics, and the calls by which the parts of a run report to them.

Each daemon has its own `Metrics`, in a registry of its own rather than prometheus-client's
global one, so that two daemons in one process (or one test run) never add to each other's
counts. The parts of a run (sync/, connectors/) report through this module's functions as
things happen, not when the run ends: each call updates the metrics of the daemon whose run is
on this thread (`recording`), and does nothing outside a daemon (`funnelsync sync`). A thread
that a run starts reports only when it runs in the run's context (`contextvars.copy_context`).

Every part may import this module; it imports nothing of funnelsync's.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# Each counter's `_created` series is a gauge per counter in the text format, which Prometheus
# does not use: funnelsync is the process, so its exposition leaves them out.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated

# A run takes seconds on a small source and up to hours on a first backfill.
RUN_SECONDS_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
# Enrollment outcomes that take the operation out of the journal's backlog.
DONE_OUTCOMES = frozenset({"done", "already_enrolled"})
WRITE = "write"  # the backlog kind of planned contact writes, beside the enrollment kinds


class Metrics:
    """One daemon's metrics. Names and units after Prometheus' conventions: `_total` for
    counters, base units (`_seconds`, `_ratio`), one metric per thing measured."""

    def __init__(self, run_outcomes: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.runs = Counter("funnelsync_runs_total", "Sync runs that ended, by outcome.", ["outcome"],
                            registry=registry)
        for outcome in run_outcomes:  # every outcome shows from the start, at 0, for rate() and alerts
            self.runs.labels(outcome)
        self.run_duration = Histogram("funnelsync_run_duration_seconds", "How long each sync run took, "
                                      "whatever its outcome.", buckets=RUN_SECONDS_BUCKETS, registry=registry)
        self.run_in_progress = Gauge("funnelsync_run_in_progress", "1 while a sync run is in flight.",
                                     registry=registry)
        self.last_success = Gauge("funnelsync_last_success_timestamp_seconds", "When the last run that "
                                  "finished its work ended (ok, rejects or enrollments-failed), Unix time; "
                                  "0 before the first.", registry=registry)
        self.failed_in_a_row = Gauge("funnelsync_failed_runs_in_a_row", "Runs that failed since the last "
                                     "one that finished its work (`/readyz` fails at "
                                     "[daemon].unready_after_failed_runs).", registry=registry)
        self.leader = Gauge("funnelsync_leader", "1 while this daemon is the active one over its state; "
                            "0 on a warm standby, or while starting.", registry=registry)
        self.contacts_written = Counter("funnelsync_contacts_written_total", "Contacts whose properties "
                                        "HubSpot confirmed.", registry=registry)
        self.contacts_rejected = Counter("funnelsync_contacts_rejected_total", "Contacts refused, by HubSpot "
                                         "or by the mapping (`funnelsync rejects` lists them).", registry=registry)
        self.hubspot_requests = Counter("funnelsync_hubspot_requests_total", "Requests sent to HubSpot, by "
                                        "endpoint kind and HTTP status (timeout or reset: no answer).",
                                        ["kind", "status"], registry=registry)
        self.rate_limited = Counter("funnelsync_hubspot_rate_limited_total", "HubSpot's 429 answers, by the "
                                    "limit's policy.", ["policy"], registry=registry)
        self.rate_budget_used = Gauge("funnelsync_hubspot_rate_budget_used_ratio", "Share of the 10-second "
                                      "request limit in use, 0 to 1.", registry=registry)
        self.daily_requests_left = Gauge("funnelsync_hubspot_daily_requests_remaining", "Requests left in "
                                         "the day's budget.", registry=registry)
        self.enrollments = Counter("funnelsync_enrollments_total", "Enrollments and list changes tried, by "
                                   "kind and outcome.", ["kind", "outcome"], registry=registry)
        self.journal_backlog = Gauge("funnelsync_journal_backlog", "Planned contact writes and enrollments "
                                     "not yet done, by kind (writes as planned by the run in flight or the "
                                     "last one, enrollments as of their phase).", ["kind"], registry=registry)
        self._enrollment_kinds: set[str] = set()
        self._run_started: float | None = None

    # -- what the daemon reports -------------------------------------------------------------

    def run_started(self) -> None:
        self._run_started = time.monotonic()
        self.run_in_progress.set(1)

    def run_ended(self, outcome: str | None, *, succeeded: bool, failed_in_a_row: int) -> None:
        """`outcome` None: the run did not take place (another sync held the state)."""
        started, self._run_started = self._run_started, None
        self.run_in_progress.set(0)
        self.failed_in_a_row.set(failed_in_a_row)
        if outcome is None:
            return
        self.runs.labels(outcome).inc()
        if started is not None:
            self.run_duration.observe(time.monotonic() - started)
        if succeeded:
            self.last_success.set(time.time())

    def leading(self, active: bool) -> None:
        self.leader.set(1 if active else 0)

    # -- what the parts of a run report (through the module's functions) ---------------------

    def pending_enrollments(self, counts: Mapping[str, int]) -> None:
        self._enrollment_kinds |= set(counts)
        for kind in self._enrollment_kinds:
            self.journal_backlog.labels(kind).set(counts.get(kind, 0))

    def enrolled(self, kind: str, outcome: str, count: int) -> None:
        self.enrollments.labels(kind, outcome).inc(count)
        if outcome in DONE_OUTCOMES:
            self.journal_backlog.labels(kind).dec(count)


_RECORDING: ContextVar[Metrics | None] = ContextVar("funnelsync_metrics", default=None)


@contextmanager
def recording(metrics: Metrics) -> Iterator[Metrics]:
    """What the parts of a run report on this thread, until the block ends, goes to `metrics`."""
    token = _RECORDING.set(metrics)
    try:
        yield metrics
    finally:
        _RECORDING.reset(token)


def writes_planned(count: int) -> None:
    """The run's plan is complete: `count` contact writes are journaled, none sent yet."""
    if (metrics := _RECORDING.get()) is not None:
        metrics.journal_backlog.labels(WRITE).set(count)


def batch_recorded(written: int, rejected: int) -> None:
    """HubSpot answered one batch of planned writes and its results are recorded."""
    if (metrics := _RECORDING.get()) is not None:
        metrics.journal_backlog.labels(WRITE).dec(written + rejected)  # first: a scrape never counts a contact twice
        metrics.contacts_written.inc(written)
        metrics.contacts_rejected.inc(rejected)


def contacts_rejected(count: int) -> None:
    """Contacts refused before anything was sent (by the mapping, a duplicate row, ...)."""
    if (metrics := _RECORDING.get()) is not None:
        metrics.contacts_rejected.inc(count)


def enrollments_pending(kinds: Iterable[str]) -> None:
    """The enrollment phase starts with these operations not yet done: one kind each."""
    if (metrics := _RECORDING.get()) is not None:
        metrics.pending_enrollments(collections.Counter(str(kind) for kind in kinds))


def enrollments(kind: str, outcome: str, count: int = 1) -> None:
    """`outcome`: done, already_enrolled (found so in HubSpot, not sent again), failed (tried
    again next run), outcome_unknown (the answer was lost: settled before it is sent again)."""
    if (metrics := _RECORDING.get()) is not None and count:
        metrics.enrolled(kind, outcome, count)


def hubspot_request(kind: str, status: int | str) -> None:
    """One request answered by HubSpot with `status`, or "timeout" / "reset" for no answer.
    `kind` names the endpoint from a small fixed set (e.g. contacts_upsert, properties, lists):
    never a path with ids in it, which would make a time series per contact."""
    if (metrics := _RECORDING.get()) is not None:
        metrics.hubspot_requests.labels(kind, str(status)).inc()


def rate_limited(policy: str) -> None:
    """HubSpot answered 429; `policy` is its `policyName` (TEN_SECONDLY_ROLLING, DAILY, ...)."""
    if (metrics := _RECORDING.get()) is not None:
        metrics.rate_limited.labels(policy).inc()


def rate_budget(used_share: float, daily_left: int | None) -> None:
    """The request budget after a request: the share of the 10-second limit in use (0 to 1),
    and the requests left today (None when no daily budget is known)."""
    if (metrics := _RECORDING.get()) is not None:
        metrics.rate_budget_used.set(min(max(used_share, 0.0), 1.0))
        if daily_left is not None:
            metrics.daily_requests_left.set(daily_left)
