"""One sync: read the source, plan against the state into the journal, provision, write the
journaled batches, record each batch's results.

A batch's results are recorded with its journal operation marked done in one transaction,
right after HubSpot answered (with the other batches answered meanwhile): a contact counts as
written only once HubSpot confirmed it, and a stop or a crash between transactions loses
nothing. The next run first closes what an earlier run left unfinished, then its diff plans
again whatever was not confirmed.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from funnelsync import telemetry
from funnelsync.config import Config
from funnelsync.connectors.crm import ContactWrite, Crm, SchemaReport, WriteResult
from funnelsync.connectors.source import Source
from funnelsync.errors import DailyLimitReached, FunnelsyncError, StopRequested
from funnelsync.mappings.contacts import ContactMapper
from funnelsync.mappings.schema import property_specs
from funnelsync.state.models import RunOutcome
from funnelsync.state.records import CallCount, Confirmed, Refused, WriteBatch
from funnelsync.state.store import StateStore
from funnelsync.sync.enrollments import EnrollmentRunner, EnrollmentSummary, lists_to_change
from funnelsync.sync.inflight import send_all
from funnelsync.sync.lost_state import find_lost_state, refuse_lost_state
from funnelsync.sync.outcomes import segment_targets, stage_entry_operations, stage_targets
from funnelsync.sync.planner import Plan, Planner, check_columns
from funnelsync.sync.progress import WRITING, PhaseClock, ProgressReport
from funnelsync.sync.sinks import JournalSink, PreviewSink

log = structlog.get_logger("funnelsync.sync")


@dataclass
class RunSummary:
    run_id: int | None
    dry_run: bool
    rows_read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    contacts: int = 0
    unchanged: int = 0
    to_write: int = 0
    written: int = 0
    rejected: int = 0
    properties_written: int = 0
    stage_moves: Counter[str] = field(default_factory=Counter)
    api_calls: int = 0
    seconds: float = 0.0
    schema: SchemaReport = field(default_factory=SchemaReport)
    stopped_early: bool = False
    resumed_writes: int = 0
    segment_moves: Counter[str] = field(default_factory=Counter)
    enrollments: EnrollmentSummary = field(default_factory=EnrollmentSummary)
    preview: PreviewSink | None = None
    refused: list[Refused] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        return 1 if self.rejected or self.enrollments.failed else 0

    @property
    def outcome(self) -> RunOutcome:
        """The run's own word; `failed`, `daily-limit` and `interrupted` are set where a run
        ends without a summary."""
        if self.stopped_early:
            return RunOutcome.STOPPED
        if self.enrollments.failed:
            return RunOutcome.ENROLLMENTS_FAILED
        return RunOutcome.REJECTS if self.rejected else RunOutcome.OK

    def message(self) -> str:
        """What a person should know of a run that did not do everything."""
        parts = []
        if self.rejected:
            parts.append(f"{self.rejected} contact(s) rejected")
        if self.enrollments.failed:
            parts.append(f"{self.enrollments.failed} enrollment(s) failed")
        if self.enrollments.halted:
            parts.append(f"enrollment halted: {self.enrollments.halted}")
        if self.stopped_early:
            parts.append("stopped on request before the end: the next run carries on")
        return "; ".join(parts)[:2000]

    def add_plan(self, plan: Plan) -> None:
        self.rows_read = plan.rows_read
        self.skipped = dict(plan.skipped)
        self.contacts = plan.contacts
        self.unchanged = plan.unchanged
        self.to_write = plan.to_write
        self.rejected = len(plan.refused)
        self.refused = plan.refused
        self.stage_moves = plan.stage_moves
        self.segment_moves = plan.segment_moves


class SyncEngine:
    def __init__(
        self,
        config: Config,
        source: Source,
        crm: Crm,
        state: StateStore,
        *,
        stop: threading.Event | None = None,
        progress: ProgressReport | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.source = source
        self.crm = crm
        self.state = state
        self.stop = stop or threading.Event()
        self.progress = progress
        self.now = now
        self._stage_targets = stage_targets(config)
        self.run_id: int | None = None

    def sync(self, *, dry_run: bool = False) -> RunSummary:
        started = time.monotonic()
        if dry_run:
            summary = self._preview()
            summary.seconds = time.monotonic() - started
            return summary
        with self.state.exclusive():
            run_id = self.run_id = self.state.start_run()
            bound = log.bind(run_id=run_id)
            try:
                summary = self._run(run_id)
            except StopRequested as exc:
                self.state.finish_run(run_id, RunOutcome.STOPPED, message=str(exc)[:2000], api_calls=self.calls())
                bound.warning("sync stopped on request: the next run carries on", reason=str(exc))
                raise
            except FunnelsyncError as exc:
                outcome = RunOutcome.DAILY_LIMIT if isinstance(exc, DailyLimitReached) else RunOutcome.FAILED
                self.state.finish_run(run_id, outcome, message=str(exc)[:2000], api_calls=self.calls())
                bound.error("sync failed", error=type(exc).__name__, reason=str(exc))
                raise
            except BaseException as exc:
                self.state.finish_run(run_id, RunOutcome.FAILED, message=f"{type(exc).__name__}: {exc}"[:2000],
                                      api_calls=self.calls())
                raise
            summary.seconds = time.monotonic() - started
            self.state.finish_run(
                run_id, summary.outcome, message=summary.message(), rows_read=summary.rows_read,
                rows_skipped=sum(summary.skipped.values()), contacts_changed=summary.to_write,
                contacts_written=summary.written, contacts_rejected=summary.rejected,
                api_calls=summary.api_calls, enrollments_made=sum(summary.enrollments.done.values()),
            )
            self.state.record_stage_counts(run_id)
            bound.info("sync finished", outcome=summary.outcome, rows=summary.rows_read,
                       written=summary.written, rejected=summary.rejected, unchanged=summary.unchanged,
                       skipped=summary.skipped, api_calls=summary.api_calls,
                       resumed_writes=summary.resumed_writes, seconds=round(summary.seconds, 2))
            return summary

    def call_count(self) -> CallCount | None:
        return CallCount(self.run_id, self.calls()) if self.run_id is not None else None

    def calls(self) -> int:
        return self.crm.contacts.calls_made

    def _plan(self, sink: JournalSink | PreviewSink, now: datetime) -> Plan:
        source_rows = self.source.read()
        check_columns(self.config, source_rows.columns, self.source.key)
        mapper = ContactMapper(self.config, source_rows.columns, now)
        plan = Planner(self.config, self.state, now, sink, mapper, self.stop).plan(source_rows.rows, self.source.key)
        sink.finish()
        for reason, count in source_rows.skipped.items():
            plan.skipped[reason] += count
        return plan

    def _preview(self) -> RunSummary:
        summary = RunSummary(None, dry_run=True)
        summary.preview = PreviewSink()
        summary.preview.lost_state = find_lost_state(self.config, self.state, self.crm.reading)
        summary.add_plan(self._plan(summary.preview, self.now()))
        summary.schema = self.crm.properties.ensure_properties(property_specs(self.config), dry_run=True)
        return summary

    def _run(self, run_id: int) -> RunSummary:
        refuse_lost_state(self.config, self.state, self.crm.reading)
        summary = RunSummary(run_id, dry_run=False)
        summary.resumed_writes = self.state.recover(run_id)
        now = self.now()
        sink = JournalSink(self.state, run_id, self.config.hubspot.batch_size, segment_targets(self.config), now)
        with self.state.planning() as complete:
            plan = self._plan(sink, now)
            if not plan.stopped:
                complete()
                telemetry.writes_planned(plan.to_write)
        summary.add_plan(plan)
        if plan.stopped:  # nothing planned was kept: the next run plans it all again
            summary.stopped_early = True
            log.warning("stop requested while planning: nothing sent", run_id=run_id, rows_planned=plan.rows_read)
            return summary
        enrollments = EnrollmentRunner(
            self.crm.enrollment, self.state, self.stop, self.call_count, width=self.crm.requests_wanted_in_flight,
            progress=self.progress, requests_per_second=self.config.hubspot.requests_per_10s / 10,
        )
        summary.schema = self._set_up(enrollments, plan)
        self.state.record_results(run_id, [], summary.refused)
        telemetry.contacts_rejected(len(summary.refused))
        self.state.forget_rejects(plan.settled)
        self._write(run_id, summary)
        if not self.stop.is_set():
            summary.enrollments = enrollments.run()
        if self.stop.is_set() and self.state.pending_enrollments():
            summary.stopped_early = True
        summary.api_calls = self.calls()
        return summary

    def _set_up(self, enrollments: EnrollmentRunner, plan: Plan) -> SchemaReport:
        """The properties checked or made and, meanwhile, the lists this run changes found or
        made: a list's look-up then no longer holds up its first change."""
        lists = lists_to_change(self.state, self._stage_targets, stages_move=bool(plan.stage_moves))
        if not lists:
            return self.crm.properties.ensure_properties(property_specs(self.config))
        with ThreadPoolExecutor(1, thread_name_prefix="funnelsync-lists") as finding:
            found = finding.submit(contextvars.copy_context().run, enrollments.find_lists, lists)
            schema = self.crm.properties.ensure_properties(property_specs(self.config))
            found.result()
        return schema

    def _write(self, run_id: int, summary: RunSummary) -> None:
        hubspot = self.config.hubspot
        clock = PhaseClock(WRITING, summary.to_write, self.progress, per_request=hubspot.batch_size,
                           requests_per_second=hubspot.requests_per_10s / 10)

        def record(answered: list[tuple[WriteBatch, list[WriteResult]]]) -> None:
            self._record(run_id, answered, summary)
            clock.advance(sum(len(batch.writes) for batch, _ in answered))

        send_all(self.state.planned_write_batches(run_id), self._send, record,
                 width=self.crm.requests_wanted_in_flight, stop=self.stop)
        if self.stop.is_set() and clock.done < summary.to_write:
            summary.stopped_early = True
            log.warning("stop requested: leaving the rest for the next run",
                        run_id=run_id, written=summary.written, left=summary.to_write - clock.done)

    def _send(self, batch: WriteBatch) -> list[WriteResult]:
        return self.crm.contacts.write_contacts([ContactWrite(w.email, w.properties) for w in batch.writes])

    def _record(self, run_id: int, answered: list[tuple[WriteBatch, list[WriteResult]]], summary: RunSummary) -> None:
        """The batches HubSpot answered, in one transaction with their operations marked done."""
        planned = {write.email: write for batch, _ in answered for write in batch.writes}
        results = [result for _, batch_results in answered for result in batch_results]
        confirmed = [Confirmed(planned[r.email], r.record_id) for r in results if r.ok]
        refused = [Refused(r.email, r.reason, r.code) for r in results if not r.ok]
        self.state.record_results(run_id, confirmed, refused, calls=self.call_count(),
                                  operation_ids=[batch.operation_id for batch, _ in answered],
                                  enrollments=stage_entry_operations(confirmed, self._stage_targets))
        telemetry.batch_recorded(len(confirmed), len(refused))
        summary.written += len(confirmed)
        summary.rejected += len(refused)
        summary.properties_written += sum(len(c.write.properties) for c in confirmed)
        if refused:
            log.warning("contacts rejected", run_id=run_id, count=len(refused),
                        first=refused[0].email, reason=refused[0].reason[:300])
