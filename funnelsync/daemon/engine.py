"""One sync: read the source, plan against the state, provision, write in batches, record.

A batch's results are recorded in the state in one transaction right after HubSpot answered,
so a contact counts as written only once HubSpot confirmed it, and a stop or a crash between
batches loses nothing: the next run's diff sends what was not confirmed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from funnelsync.config import Config
from funnelsync.connectors.crm import ContactWrite, Crm, SchemaReport, WriteResult
from funnelsync.connectors.source import Source
from funnelsync.daemon.plan import Plan, Planner, check_columns
from funnelsync.errors import DailyLimitReached, FunnelsyncError
from funnelsync.mappings.schema import property_specs
from funnelsync.state.store import Confirmed, Refused, StateStore

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
    plan: Plan | None = None

    @property
    def exit_status(self) -> int:
        return 1 if self.rejected else 0

    @property
    def outcome(self) -> str:
        if self.stopped_early:
            return "stopped"
        return "rejects" if self.rejected else "ok"


ProgressCallback = Callable[[int, int], None]


class SyncEngine:
    def __init__(
        self,
        config: Config,
        source: Source,
        crm: Crm | None,
        state: StateStore,
        *,
        stop: threading.Event | None = None,
        progress: ProgressCallback | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.source = source
        self.crm = crm
        self.state = state
        self.stop = stop or threading.Event()
        self.progress = progress
        self.now = now

    def sync(self, *, dry_run: bool = False) -> RunSummary:
        started = time.monotonic()
        if dry_run:
            summary = self._run(None, dry_run=True)
            summary.seconds = time.monotonic() - started
            return summary
        with self.state.exclusive():
            run_id = self.state.start_run()
            bound = log.bind(run_id=run_id)
            try:
                summary = self._run(run_id, dry_run=False)
            except FunnelsyncError as exc:
                outcome = "daily-limit" if isinstance(exc, DailyLimitReached) else "failed"
                self.state.finish_run(run_id, outcome, message=str(exc)[:2000],
                                      api_calls=self.crm.calls_made if self.crm else 0)
                bound.error("sync failed", error=type(exc).__name__, reason=str(exc))
                raise
            except BaseException as exc:
                self.state.finish_run(run_id, "failed", message=f"{type(exc).__name__}: {exc}"[:2000])
                raise
            summary.seconds = time.monotonic() - started
            self.state.finish_run(
                run_id, summary.outcome, rows_read=summary.rows_read,
                rows_skipped=sum(summary.skipped.values()), contacts_changed=summary.to_write,
                contacts_written=summary.written, contacts_rejected=summary.rejected,
                api_calls=summary.api_calls,
            )
            bound.info("sync finished", outcome=summary.outcome, rows=summary.rows_read,
                       written=summary.written, rejected=summary.rejected, unchanged=summary.unchanged,
                       skipped=summary.skipped, api_calls=summary.api_calls,
                       seconds=round(summary.seconds, 2))
            return summary

    def _run(self, run_id: int | None, *, dry_run: bool) -> RunSummary:
        summary = RunSummary(run_id, dry_run)
        source_rows = self.source.read()
        check_columns(self.config, source_rows.columns, self.source.key)
        plan = Planner(self.config, self.state, self.now()).plan(source_rows.rows, self.source.key)
        for reason, count in source_rows.skipped.items():
            plan.skipped[reason] += count
        summary.plan = plan
        summary.rows_read = plan.rows_read
        summary.skipped = dict(plan.skipped)
        summary.contacts = plan.contacts
        summary.unchanged = plan.unchanged
        summary.to_write = len(plan.writes)
        summary.rejected = len(plan.refused)
        summary.stage_moves = Counter(to for _, _, to in plan.stage_moves)
        if self.crm is not None:
            summary.schema = self.crm.ensure_properties(property_specs(self.config), dry_run=dry_run)
        if dry_run:
            return summary
        assert run_id is not None
        self.state.record_results(run_id, [], plan.refused)
        self._write(run_id, plan, summary)
        if plan.unsent and not summary.stopped_early:
            self.state.record_unsent(plan.unsent)
        summary.api_calls = self.crm.calls_made if self.crm else 0
        return summary

    def _write(self, run_id: int, plan: Plan, summary: RunSummary) -> None:
        assert self.crm is not None
        size = self.config.hubspot.batch_size
        stage_property = self.config.funnel.property if self.config.funnel else None
        total = len(plan.writes)
        for start in range(0, total, size):
            if self.stop.is_set():
                summary.stopped_early = True
                log.warning("stop requested: leaving the rest for the next run",
                            run_id=run_id, written=summary.written, left=total - start)
                return
            batch = plan.writes[start : start + size]
            results = self.crm.write_contacts(batch)
            self._record(run_id, plan, batch, results, stage_property, summary)
            if self.progress:
                self.progress(min(start + size, total), total)

    def _record(self, run_id: int, plan: Plan, batch: list[ContactWrite], results: list[WriteResult],
                stage_property: str | None, summary: RunSummary) -> None:
        sent = {write.email: write.properties for write in batch}
        confirmed = []
        refused = []
        for result in results:
            if result.ok:
                target = plan.targets[result.email]
                confirmed.append(Confirmed(result.email, result.record_id, sent[result.email],
                                           target.fingerprint, stage_property, target.below_since))
                summary.properties_written += len(sent[result.email])
            else:
                refused.append(Refused(result.email, result.reason, result.code))
        self.state.record_results(run_id, confirmed, refused)
        summary.written += len(confirmed)
        summary.rejected += len(refused)
        if refused:
            log.warning("contacts rejected", run_id=run_id, count=len(refused),
                        first=refused[0].email, reason=refused[0].reason[:300])
