"""The state store: one SQL database (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import functools
import hashlib
import json
import statistics
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, delete, func, select, update
from sqlmodel.sql.sqltypes import UTCDateTime

from funnelsync.state.database import (
    StateLock,
    create_engine,
    in_values,
    insert_many,
    joined_text,
    json_object_text,
    migrate,
    release_free_space,
    where,
)
from funnelsync.state.models import (
    Contact,
    Meta,
    Operation,
    OperationKind,
    OperationStatus,
    Reject,
    Run,
    RunOutcome,
    SegmentMember,
    StageChange,
    StageCount,
    StageEntry,
)
from funnelsync.state.records import (
    CallCount,
    Confirmed,
    CountedStage,
    Interrupted,
    KnownContact,
    PlannedOperation,
    PlannedWrite,
    RebuiltContact,
    Refused,
    SegmentChange,
    ToldAlert,
    WriteBatch,
)

# A write operation's payload once it is done or superseded: the contacts table holds what was
# written, the next diff re-plans what was not, and the payloads were a quarter of a backfill's state.
_NO_PAYLOAD = "[]"
_UNFINISHED = (OperationStatus.PLANNED, OperationStatus.STARTED)
_CHUNK = 2000  # rows a statement reads or changes at most; its values travel as one parameter


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # json.dumps builds one a call


def fingerprint(properties: Mapping[str, object]) -> str:
    canonical = _CANONICAL.encode(properties)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


# Contacts share a few texts of these (every contact a run moves into a stage enters it at the
# run's time; segment names come from the config), so each is read once.

@functools.lru_cache(maxsize=4096)
def _stage_entries(text: str | None) -> Mapping[str, datetime]:
    """Stage -> first entered, from the JSON object the state database aggregates."""
    entries = json.loads(text) if text else {}
    return MappingProxyType({stage: _in_utc(datetime.fromisoformat(at)) for stage, at in entries.items()})


@functools.lru_cache(maxsize=4096)
def _segment_names(text: str | None) -> frozenset[str]:
    return frozenset(text.split(" ")) if text else frozenset()


def _in_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _insert(connection: sa.Connection, model: type[Any], rows: list[dict[str, Any]]) -> None:
    insert_many(connection, model.__table__, rows)


# what a confirmed write keeps of the contact the state held (the rest it sets)
_MERGED_FROM_HELD = ("email", "properties", "record_id", "stage", "stage_entered_at", "hello_world_days",
                     "working_app_days")


def _merged_contact(held: sa.Row[Any] | None, result: Confirmed, now: datetime) -> dict[str, Any]:
    """The contact's row once HubSpot confirmed `result`: the values written over those held
    (an empty value clears one), the stage moved if the write moves it."""
    write = result.write
    kept: dict[str, Any] = held._asdict() if held is not None else {}
    properties = json.loads(kept["properties"]) if held is not None else {}
    properties.update(write.properties)
    move = write.stage_move
    return {
        "email": write.email,
        "record_id": result.record_id or kept.get("record_id"),
        "fingerprint": write.fingerprint,
        "properties": json.dumps({name: value for name, value in properties.items() if value != ""}, sort_keys=True),
        "stage": move.to_stage if move else kept.get("stage"),
        "stage_entered_at": move.at if move else kept.get("stage_entered_at"),
        "below_since": write.below_since,
        "written_at": now,
        "hello_world_days": kept.get("hello_world_days") if write.hello_world_days is None else write.hello_world_days,
        "working_app_days": kept.get("working_app_days") if write.working_app_days is None else write.working_app_days,
    }


def _operation_rows(run_id: int, operations: Iterable[PlannedOperation], now: datetime) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "kind": planned.kind, "key": planned.key, "email": planned.email,
             "target": planned.target, "payload": json.dumps(dict(planned.payload)), "created_at": now,
             "updated_at": now} for planned in operations]


class StateStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self._planning: Session | None = None  # see planning
        try:
            migrate(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def planning(self) -> Iterator[Callable[[], None]]:
        """What is recorded while planning (journaled writes, segment changes, fingerprints)
        goes into one transaction, committed only when the plan is complete: call the function
        this yields. A stop or a failure before then leaves the state exactly as it was."""
        complete = threading.Event()
        with Session(self.engine, expire_on_commit=False) as session:
            self._planning = session
            try:
                yield complete.set
                if complete.is_set():
                    session.commit()
            finally:
                self._planning = None

    @property
    def reads_alongside_planning(self) -> bool:
        """Whether a second connection may read while the planning transaction is open: on
        SQLite a writer that spills its cache locks readers out, so there reads go through the
        planning transaction itself."""
        return self.engine.dialect.name != "sqlite"

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        if self._planning is not None and not self.reads_alongside_planning:
            yield self._planning.connection()
            return
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def _planning_session(self) -> Iterator[Session]:
        """The planning transaction when one is open, else a transaction of its own. Each step
        is flushed to the database and let go, so a long plan keeps no rows in memory."""
        if self._planning is not None:
            yield self._planning
            self._planning.flush()
            self._planning.expunge_all()
            return
        with Session(self.engine) as session:
            yield session
            session.commit()

    def where(self) -> str:
        return where(self.engine)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the state for one sync; raise StateLocked at once when another sync holds it."""
        with StateLock(self.engine, "sync").held(f"another funnelsync sync holds the state at {self.where()}"):
            yield

    def leader_lock(self) -> StateLock:
        """The lock an active daemon holds for its lifetime; standbys keep trying it."""
        return StateLock(self.engine, "leader")

    # -- reading -----------------------------------------------------------------------------

    def known_contacts(self, emails: Iterable[str]) -> dict[str, KnownContact]:
        """What the state holds of these contacts (those it has written or put in a segment):
        one query a chunk, each contact's stage entries and segments gathered by the database."""
        entries = (sa.select(json_object_text(self.engine, col(StageEntry.stage), col(StageEntry.first_entered_at)))
                   .where(col(StageEntry.email) == col(Contact.email)).scalar_subquery())
        segments = (sa.select(joined_text(self.engine, col(SegmentMember.segment), " "))
                    .where(col(SegmentMember.email) == col(Contact.email)).scalar_subquery())
        found: dict[str, KnownContact] = {}
        with self._reading() as connection:
            for chunk in _chunks(list(emails)):
                query = sa.select(col(Contact.email), col(Contact.fingerprint), col(Contact.stage),
                                  col(Contact.below_since), entries, segments).where(self._in(Contact.email, chunk))
                for email, fp, stage, below, entered, members in connection.execute(query):
                    found[email] = KnownContact(fp, stage, below, _stage_entries(entered), _segment_names(members))
                never_written = [email for email in chunk if email not in found]
                if never_written:
                    query = sa.select(col(SegmentMember.email), col(SegmentMember.segment)).where(
                        self._in(SegmentMember.email, never_written))
                    members_of: dict[str, set[str]] = {}
                    for email, segment in connection.execute(query):
                        members_of.setdefault(email, set()).add(segment)
                    for email, names in members_of.items():
                        found[email] = KnownContact("", None, None, {}, frozenset(names))
        return found

    def record_ids(self, emails: Iterable[str]) -> dict[str, str]:
        return {email: rid for email, rid in self._contacts_column(emails, Contact.record_id) if rid}

    def written_properties(self, emails: Iterable[str]) -> dict[str, dict[str, str]]:
        return {email: json.loads(held) for email, held in self._contacts_column(emails, Contact.properties)}

    def _contacts_column(self, emails: Iterable[str], column: Any) -> Iterator[tuple[str, Any]]:
        """(email, column) of each of these contacts the state holds."""
        with self._reading() as connection:
            for chunk in _chunks(list(emails)):
                query = sa.select(col(Contact.email), column).where(self._in(Contact.email, chunk))
                yield from connection.execute(query)

    def _in(self, column: Any, values: Sequence[object]) -> sa.ColumnElement[bool]:
        return in_values(self.engine, column, values)

    # -- runs --------------------------------------------------------------------------------

    def start_run(self) -> int:
        with Session(self.engine) as session:
            run = Run(started_at=utcnow())
            session.add(run)
            session.commit()
            assert run.id is not None
            return run.id

    @staticmethod
    def _record_calls(session: Session, calls: CallCount | None) -> None:
        if calls is not None:
            session.exec(update(Run).where(col(Run.id) == calls.run_id).values(api_calls=calls.calls))

    def finish_run(self, run_id: int, outcome: RunOutcome, **counts: int | str) -> None:
        with Session(self.engine) as session:
            run = session.get(Run, run_id)
            assert run is not None
            run.finished_at = utcnow()
            run.outcome = outcome
            for name, value in counts.items():
                setattr(run, name, value)
            session.add(run)
            session.commit()

    def api_calls_today(self) -> int:
        """HubSpot requests sent by runs that started today (UTC), for the daily budget."""
        midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        query = select(func.coalesce(func.sum(Run.api_calls), 0)).where(col(Run.started_at) >= midnight)
        with Session(self.engine) as session:
            return int(session.exec(query).one())

    def recent_runs(self, limit: int = 10) -> list[Run]:
        with Session(self.engine) as session:
            return list(session.exec(select(Run).order_by(col(Run.id).desc()).limit(limit)))

    def record_stage_counts(self, run_id: int) -> None:
        """Contacts per stage as this run leaves them, counted by the database: the funnel over time."""
        now = sa.bindparam("counted_at", utcnow(), type_=UTCDateTime())
        counted = (sa.select(sa.literal(run_id), col(Contact.stage), func.count(), now)
                   .where(col(Contact.stage).is_not(None)).group_by(col(Contact.stage)))
        with self.engine.begin() as connection:
            connection.execute(sa.insert(StageCount).from_select(("run_id", "stage", "contacts", "counted_at"),
                                                                 counted))

    def stage_counts_since(self, since: datetime) -> list[CountedStage]:
        """One row a stage a run, oldest first: a few a run, never one a contact."""
        columns = (StageCount.run_id, StageCount.counted_at, StageCount.stage, StageCount.contacts)
        query = (sa.select(*(col(c) for c in columns)).where(col(StageCount.counted_at) >= since)
                 .order_by(col(StageCount.counted_at), col(StageCount.run_id)))
        with self._reading() as connection:
            return [CountedStage._make(row) for row in connection.execute(query)]

    def stage_moves_by_run(self, run_ids: Sequence[int]) -> dict[int, int]:
        """Confirmed stage moves each of these runs made."""
        query = (select(StageChange.run_id, func.count()).where(col(StageChange.run_id).in_(list(run_ids)))
                 .group_by(col(StageChange.run_id)))
        with Session(self.engine) as session:
            return {int(run_id): int(count) for run_id, count in session.exec(query)}

    # -- the journal -------------------------------------------------------------------------

    def interrupted_run(self) -> Interrupted | None:
        """The last run that did not finish (killed, or stopped early), with its unfinished operations."""
        with Session(self.engine) as session:
            run = session.exec(select(Run).order_by(col(Run.id).desc()).limit(1)).first()
            if run is None or run.outcome not in (RunOutcome.RUNNING, RunOutcome.STOPPED):
                return None
            query = (select(Operation.kind, func.count()).where(col(Operation.status).in_(_UNFINISHED))
                     .group_by(Operation.kind))
            unfinished = {OperationKind(kind): int(count) for kind, count in session.exec(query)}
            assert run.id is not None
            return Interrupted(run.id, run.started_at, unfinished)

    def recover(self, run_id: int) -> int:
        """Before planning: close what earlier runs left unfinished. Unfinished property writes
        are superseded (the state was not updated, so this run's diff plans them again);
        runs that never finished are marked interrupted. Returns the writes superseded."""
        now = utcnow()
        with Session(self.engine) as session:
            superseded = session.exec(
                update(Operation)
                .where(col(Operation.kind) == OperationKind.WRITE, col(Operation.status).in_(_UNFINISHED),
                       col(Operation.run_id) != run_id)
                .values(status=OperationStatus.SUPERSEDED, updated_at=now, payload=_NO_PAYLOAD)
            ).rowcount
            session.exec(update(Run).where(col(Run.outcome) == RunOutcome.RUNNING, col(Run.id) != run_id)
                         .values(outcome=RunOutcome.INTERRUPTED))
            session.commit()
        return int(superseded or 0)

    def journal_writes(self, run_id: int, batches: Iterable[Sequence[PlannedWrite]], first_batch: int) -> int:
        """Record planned property-write batches (one operation a batch). Returns the next batch number."""
        now = utcnow()
        number = first_batch
        with self._planning_session() as session:
            for batch in batches:
                session.add(Operation(
                    run_id=run_id, kind=OperationKind.WRITE, key=f"write:{run_id}:{number}",
                    payload=json.dumps([w.as_json() for w in batch]), created_at=now, updated_at=now,
                ))
                number += 1
        return number

    def drop_planned_writes(self, run_id: int, emails: set[str]) -> list[PlannedWrite]:
        """Take these contacts out of the run's planned write batches (rare: found late to be
        duplicated in the source)."""
        dropped: list[PlannedWrite] = []
        with self._planning_session() as session:
            query = select(Operation).where(col(Operation.run_id) == run_id,
                                            col(Operation.kind) == OperationKind.WRITE,
                                            col(Operation.status) == OperationStatus.PLANNED)
            for operation in session.exec(query):
                writes = [PlannedWrite.from_json(w) for w in json.loads(operation.payload)]
                kept = [w for w in writes if w.email not in emails]
                if len(kept) == len(writes):
                    continue
                dropped += [w for w in writes if w.email in emails]
                operation.payload = json.dumps([w.as_json() for w in kept])
                operation.status = OperationStatus.PLANNED if kept else OperationStatus.SUPERSEDED
                session.add(operation)
        return dropped

    def planned_write_batches(self, run_id: int) -> Iterator[WriteBatch]:
        last_id = 0
        while True:
            with Session(self.engine) as session:
                query = (select(Operation.id, Operation.payload)
                         .where(col(Operation.run_id) == run_id, col(Operation.kind) == OperationKind.WRITE,
                                col(Operation.status) == OperationStatus.PLANNED, col(Operation.id) > last_id)
                         .order_by(col(Operation.id)).limit(20))
                rows = list(session.exec(query))
            if not rows:
                return
            for operation_id, payload in rows:
                assert operation_id is not None
                last_id = operation_id
                yield WriteBatch(operation_id, [PlannedWrite.from_json(w) for w in json.loads(payload)])

    # -- recording results -------------------------------------------------------------------

    def record_results(self, run_id: int, confirmed: Iterable[Confirmed], refused: Iterable[Refused],
                       *, enrollments: Sequence[PlannedOperation] = (), operation_ids: Sequence[int] = (),
                       calls: CallCount | None = None) -> None:
        """The outcome of one or more batches, in one transaction: the confirmed values and stage
        moves, the enrollments they make, the rejected records, and the batches' journal
        operations marked done.

        Rows go in as a few statements a batch, not one ORM object each: at HubSpot's rate a
        backfill records about 20 batches a second, and objects made that the bottleneck."""
        now = utcnow()
        confirmed = list(confirmed)
        refused = list(refused)
        emails = [c.write.email for c in confirmed]
        with Session(self.engine) as session:
            connection = session.connection()
            held: dict[str, sa.Row[Any]] = {}
            entered: set[tuple[str, str]] = set()
            for chunk in _chunks(emails):
                query = sa.select(*(col(getattr(Contact, name)) for name in _MERGED_FROM_HELD)).where(
                    self._in(Contact.email, chunk))
                held.update((row.email, row) for row in connection.execute(query))
                query = sa.select(col(StageEntry.email), col(StageEntry.stage)).where(self._in(StageEntry.email, chunk))
                entered.update((email, stage) for email, stage in connection.execute(query))
            rows = [_merged_contact(held.get(result.write.email), result, now) for result in confirmed]
            _insert(connection, Contact, [row for row in rows if row["email"] not in held])
            updated = [{**row, "held_email": row["email"]} for row in rows if row["email"] in held]
            if updated:
                connection.execute(sa.update(Contact).where(col(Contact.email) == sa.bindparam("held_email")), updated)
            moves = [(result.write, result.write.stage_move) for result in confirmed if result.write.stage_move]
            _insert(connection, StageChange, [
                {"email": write.email, "from_stage": write.previous_stage, "to_stage": move.to_stage,
                 "changed_at": move.at, "run_id": run_id} for write, move in moves])
            _insert(connection, StageEntry, [
                {"email": write.email, "stage": move.to_stage, "first_entered_at": move.at}
                for write, move in moves if (write.email, move.to_stage) not in entered])
            _insert(connection, Operation, _operation_rows(run_id, enrollments, now))
            for chunk in _chunks(emails):
                connection.execute(sa.delete(Reject).where(self._in(Reject.email, chunk)))
            for refusal in refused:
                self._record_refusal(session, refusal, run_id, now)
            if operation_ids:
                connection.execute(sa.update(Operation).where(self._in(Operation.id, operation_ids))
                                   .values(status=OperationStatus.DONE, updated_at=now,
                                           attempts=Operation.attempts + 1, payload=_NO_PAYLOAD))
            self._record_calls(session, calls)
            session.commit()

    @staticmethod
    def _add_operations(session: Session, run_id: int, operations: Iterable[PlannedOperation], now: datetime) -> None:
        _insert(session.connection(), Operation, _operation_rows(run_id, operations, now))

    @staticmethod
    def _record_refusal(session: Session, refusal: Refused, run_id: int, now: datetime) -> None:
        reject = session.get(Reject, refusal.email)
        if reject is None:
            reject = Reject(email=refusal.email, reason=refusal.reason, code=refusal.code,
                            will_retry=refusal.will_retry, first_rejected_at=now,
                            last_rejected_at=now, run_id=run_id, attempts=0)
        reject.reason = refusal.reason
        reject.code = refusal.code
        reject.will_retry = refusal.will_retry
        reject.last_rejected_at = now
        reject.run_id = run_id
        reject.attempts += 1
        session.add(reject)

    def record_segment_changes(self, changes: Sequence[SegmentChange], operations: Sequence[PlannedOperation],
                               run_id: int, now: datetime) -> None:
        """Segment entries and exits, with the enrollments and list changes they make."""
        with self._planning_session() as session:
            for change in changes:
                if change.entered:
                    session.merge(SegmentMember(email=change.email, segment=change.segment, entered_at=now))
                elif (member := session.get(SegmentMember, (change.email, change.segment))) is not None:
                    session.delete(member)
            self._add_operations(session, run_id, operations, now)

    def pending_enrollments(self) -> list[Operation]:
        """Enrollment operations not yet done, from this run and earlier ones, in the order planned."""
        query = (select(Operation).where(col(Operation.kind) != OperationKind.WRITE,
                                         col(Operation.status).in_(_UNFINISHED))
                 .order_by(col(Operation.id)))
        with Session(self.engine) as session:
            return list(session.exec(query))

    def mark_operations(self, ids: Sequence[int], status: OperationStatus, error: str = "", *,
                        calls: CallCount | None = None) -> None:
        """`started` before the call, `done` after it; back to `planned` with the error when it
        was refused (it is tried again next run); `started` with an error when its answer was
        lost (the next try settles it against HubSpot first)."""
        now = utcnow()
        values: dict[str, object] = {"status": status, "updated_at": now}
        if status == OperationStatus.STARTED and not error:
            values["attempts"] = Operation.attempts + 1
        if status != OperationStatus.STARTED or error:  # `started` with an error: its outcome is unknown
            values["last_error"] = error[:2000]
        with Session(self.engine) as session:
            for chunk in _chunks(list(ids)):  # type: ignore[arg-type]
                session.exec(update(Operation).where(self._in(Operation.id, chunk)).values(**values))
            self._record_calls(session, calls)
            session.commit()

    _FAILED = (col(Operation.kind) != OperationKind.WRITE, col(Operation.status).in_(_UNFINISHED),
               col(Operation.last_error) != "")

    def failed_enrollments(self, limit: int | None = None) -> list[Operation]:
        """Enrollments and list changes not yet done that failed at least once, with the reason;
        the latest first, `limit` of them or all."""
        query = select(Operation).where(*self._FAILED).order_by(col(Operation.updated_at).desc()).limit(limit)
        with Session(self.engine) as session:
            return list(session.exec(query))

    def failed_enrollment_count(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.count()).select_from(Operation).where(*self._FAILED)).one())

    def enrollment_counts(self) -> dict[tuple[OperationKind, OperationStatus], int]:
        query = (select(Operation.kind, Operation.status, func.count())
                 .where(col(Operation.kind) != OperationKind.WRITE).group_by(Operation.kind, Operation.status))
        with Session(self.engine) as session:
            return {(OperationKind(kind), OperationStatus(status)): int(count)
                    for kind, status, count in session.exec(query)}

    def record_unsent(self, changes: Mapping[str, tuple[str, datetime | None]]) -> None:
        """Contacts whose state moves with nothing to send: a new fingerprint (the config
        dropped a property, say) or the demotion clock starting or stopping."""
        emails = list(changes)
        with self._planning_session() as session:
            for chunk in _chunks(emails):
                for contact in session.exec(select(Contact).where(self._in(Contact.email, chunk))):
                    contact.fingerprint, contact.below_since = changes[contact.email]
                    session.add(contact)

    # -- housekeeping ------------------------------------------------------------------------

    def prune(self, older_than: timedelta) -> dict[str, int]:
        """Forget run history, finished journal operations and stage changes older than this."""
        cutoff = utcnow() - older_than
        with Session(self.engine) as session:
            pruned = {
                "runs": session.exec(delete(Run).where(col(Run.started_at) < cutoff,
                                                       col(Run.outcome) != RunOutcome.RUNNING)).rowcount,
                "operations": session.exec(delete(Operation).where(
                    col(Operation.updated_at) < cutoff,
                    col(Operation.status).in_([OperationStatus.DONE, OperationStatus.SUPERSEDED]))).rowcount,
                "stage_changes": session.exec(delete(StageChange).where(col(StageChange.changed_at) < cutoff)).rowcount,
            }
            # part of the runs' history: they go with the runs
            session.exec(delete(StageCount).where(col(StageCount.counted_at) < cutoff))
            session.commit()
        release_free_space(self.engine)
        return {name: int(count or 0) for name, count in pruned.items()}

    # -- reporting ---------------------------------------------------------------------------

    def rejects(self, limit: int | None = None) -> list[Reject]:
        """The latest first; `limit` of them, or all."""
        with Session(self.engine) as session:
            return list(session.exec(select(Reject).order_by(col(Reject.last_rejected_at).desc()).limit(limit)))

    def reject_counts(self) -> dict[tuple[str, bool], int]:
        """Rejected records by (code, will be retried)."""
        query = select(Reject.code, Reject.will_retry, func.count()).group_by(col(Reject.code), col(Reject.will_retry))
        with Session(self.engine) as session:
            return {(code, bool(retried)): int(count) for code, retried, count in session.exec(query)}

    def segment_sizes(self) -> dict[str, int]:
        query = select(SegmentMember.segment, func.count()).group_by(col(SegmentMember.segment))
        with Session(self.engine) as session:
            return {segment: int(count) for segment, count in session.exec(query)}

    def unfinished_by_target(self) -> dict[tuple[OperationKind, str, OperationStatus], int]:
        """Enrollments and list changes not yet done, by (kind, target, status): `started` is an
        outcome unknown, checked in HubSpot before anything is sent again."""
        query = (select(Operation.kind, Operation.target, Operation.status, func.count())
                 .where(col(Operation.kind) != OperationKind.WRITE, col(Operation.status).in_(_UNFINISHED))
                 .group_by(col(Operation.kind), col(Operation.target), col(Operation.status)))
        with Session(self.engine) as session:
            return {(OperationKind(kind), target or "", OperationStatus(status)): int(count)
                    for kind, target, status, count in session.exec(query)}

    def rejected_emails(self) -> frozenset[str]:
        with Session(self.engine) as session:
            return frozenset(session.exec(select(Reject.email)))

    def forget_rejects(self, emails: Iterable[str]) -> None:
        """Drop the rejects of contacts that have nothing left to retry: HubSpot holds them as
        they should be, or their rows left the source. (A contact HubSpot confirms loses its
        reject in `record_results`.)"""
        settled = sorted(emails)
        if not settled:
            return
        with Session(self.engine) as session:
            for chunk in _chunks(settled):
                session.exec(delete(Reject).where(self._in(Reject.email, chunk)))
            session.commit()

    def contacts_per_stage(self) -> dict[str, int]:
        query = select(Contact.stage, func.count()).group_by(Contact.stage)
        with Session(self.engine) as session:
            return {stage or "(none)": count for stage, count in session.exec(query)}

    def stage_changes_since(self, since: datetime) -> int:
        query = select(func.count()).select_from(StageChange).where(col(StageChange.changed_at) >= since)
        with Session(self.engine) as session:
            return int(session.exec(query).one())

    def timing_medians(self) -> tuple[float | None, float | None]:
        """Median days from signup to first hello world, and to first working app."""
        medians: list[float | None] = []
        with Session(self.engine) as session:
            for column in (Contact.hello_world_days, Contact.working_app_days):
                days = [day for day in session.exec(select(column).where(col(column).is_not(None))) if day is not None]
                medians.append(statistics.median(days) if days else None)
        return medians[0], medians[1]

    def contact_count(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.count()).select_from(Contact)).one())

    # -- a state lost, and rebuilt from the CRM ------------------------------------------------

    def holds_nothing(self) -> bool:
        """A new or emptied state: no contact, nothing journaled, never rebuilt. Runs do not
        count: a sync that stopped on a lost state leaves its failed run behind."""
        with Session(self.engine) as session:
            for column in (Contact.email, Operation.id, SegmentMember.email):
                if session.exec(select(column).limit(1)).first() is not None:
                    return False
            return session.get(Meta, _REBUILT_AT) is None

    def rebuilt_at(self) -> datetime | None:
        with Session(self.engine) as session:
            mark = session.get(Meta, _REBUILT_AT)
        return datetime.fromisoformat(mark.value) if mark else None

    def record_rebuilt_state(self, contacts: Sequence[RebuiltContact], rebuilt_at: datetime) -> None:
        """What a rebuild read back from the CRM, in one transaction: a rebuild stopped or
        failing midway leaves the state as it was. Fingerprints are left empty, so the next
        diff compares the values property by property and sends only what differs."""
        with self.engine.begin() as connection:
            for start in range(0, len(contacts), _CHUNK):
                chunk = contacts[start : start + _CHUNK]
                written = [_rebuilt_row(c, rebuilt_at) for c in chunk if c.properties or c.stage]
                entries = [{"email": c.email, "stage": stage, "first_entered_at": at}
                           for c in chunk for stage, at in c.entries.items()]
                members = [{"email": c.email, "segment": segment, "entered_at": rebuilt_at}
                           for c in chunk for segment in sorted(c.segments)]
                for model, rows in ((Contact, written), (StageEntry, entries), (SegmentMember, members)):
                    if rows:
                        connection.execute(sa.insert(model), rows)
            connection.execute(sa.insert(Meta), [{"key": _REBUILT_AT, "value": rebuilt_at.isoformat()}])

    # -- alerts told ------------------------------------------------------------------------

    def told_alerts(self) -> dict[str, ToldAlert]:
        with Session(self.engine) as session:
            marks = session.exec(select(Meta).where(col(Meta.key).startswith(_TOLD_ALERT, autoescape=True))).all()
        return {told.event: told for told in map(_told_alert, marks)}

    def remember_told_alert(self, told: ToldAlert) -> None:
        value = json.dumps({"told_at": told.told_at.isoformat(), "runs": told.runs,
                            "since": told.since.isoformat() if told.since else None})
        with Session(self.engine) as session:
            session.merge(Meta(key=_TOLD_ALERT + told.event, value=value))
            session.commit()

    def forget_told_alert(self, event: str) -> None:
        with Session(self.engine) as session:
            session.exec(delete(Meta).where(col(Meta.key) == _TOLD_ALERT + event))
            session.commit()


_REBUILT_AT = "state_rebuilt_at"  # funnelsync_meta key: the state was filled from the CRM then
_TOLD_ALERT = "alert_told:"  # funnelsync_meta key prefix, then the alert's event


def _told_alert(mark: Meta) -> ToldAlert:
    told = json.loads(mark.value)
    since = told["since"]
    return ToldAlert(mark.key.removeprefix(_TOLD_ALERT), datetime.fromisoformat(told["told_at"]),
                     datetime.fromisoformat(since) if since else None, told["runs"])


def _rebuilt_row(contact: RebuiltContact, rebuilt_at: datetime) -> dict[str, object]:
    return {"email": contact.email, "record_id": contact.record_id, "fingerprint": "",
            "properties": json.dumps(contact.properties, sort_keys=True), "stage": contact.stage,
            "stage_entered_at": contact.entries.get(contact.stage) if contact.stage else None,
            "below_since": None, "written_at": rebuilt_at, "hello_world_days": contact.hello_world_days,
            "working_app_days": contact.working_app_days}
