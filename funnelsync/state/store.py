"""The state store: one SQL database (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from filelock import FileLock, Timeout
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError
from sqlmodel import Session, SQLModel, col, delete, func, select

from funnelsync.errors import ConfigError, ConfigProblem, StateError, StateLocked
from funnelsync.state.models import (
    APPLICATION,
    SCHEMA_VERSION,
    Contact,
    Meta,
    Reject,
    Run,
    StageChange,
)

_CHUNK = 500
_LOCK_KEY = 0x66756E6E656C  # "funnel": the advisory lock that one sync at a time holds


def fingerprint(properties: Mapping[str, object]) -> str:
    canonical = json.dumps(properties, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Aware, in UTC; a naive time is taken to be UTC already."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class KnownContact:
    fingerprint: str
    stage: str | None
    below_since: datetime | None


@dataclass(frozen=True)
class Confirmed:
    """A contact write HubSpot confirmed: `sent` merged over what the state held."""

    email: str
    record_id: str | None
    sent: dict[str, str]
    fingerprint: str  # of every value the contact should now hold, sent or not
    stage_property: str | None
    below_since: datetime | None = None


@dataclass(frozen=True)
class Refused:
    email: str
    reason: str
    code: str
    will_retry: bool = True


class StateStore:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = sa.create_engine(url)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError([ConfigProblem("state.url", f"not a usable database URL: {exc}")]) from None
        self._check_and_create()

    # -- opening -----------------------------------------------------------------------------

    def _check_and_create(self, *, attempt: int = 1) -> None:
        try:
            tables = set(sa.inspect(self.engine).get_table_names())
        except OperationalError as exc:
            raise StateError(f"cannot open the state database at {self._where()}: {exc.orig}") from None
        except DatabaseError as exc:
            raise StateError(
                f"the state database at {self._where()} is not readable ({exc.orig}); "
                "funnelsync will not touch it: point state.url at a funnelsync state database "
                "or at a new file"
            ) from None
        if tables and Meta.__tablename__ not in tables:
            raise StateError(
                f"the database at {self._where()} holds tables that are not funnelsync's "
                f"({', '.join(sorted(tables)[:5])}); refusing to write to it: "
                "point state.url at a new file or an empty database"
            )
        if not tables:
            try:
                self._create()
            except DatabaseError:
                if attempt > 1:
                    raise
                # another process created it at the same moment: look again
                self._check_and_create(attempt=attempt + 1)
            return
        with Session(self.engine) as session:
            meta = {m.key: m.value for m in session.exec(select(Meta))}
        if meta.get("application") != APPLICATION:
            raise StateError(f"the database at {self._where()} is not a funnelsync state database")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise StateError(
                f"the state at {self._where()} has schema version {meta.get('schema_version')}, "
                f"this funnelsync knows {SCHEMA_VERSION}"
            )

    def _create(self) -> None:
        SQLModel.metadata.create_all(self.engine)
        with Session(self.engine) as session:
            session.add(Meta(key="application", value=APPLICATION))
            session.add(Meta(key="schema_version", value=SCHEMA_VERSION))
            session.commit()

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the state for one sync; raise StateLocked at once when another sync holds it."""
        if self.engine.dialect.name == "postgresql":
            # autocommit: a session-level lock must not hold a transaction open for the whole
            # sync (servers end sessions idle in a transaction)
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                got = connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": _LOCK_KEY}).scalar()
                if not got:
                    raise StateLocked(f"another funnelsync sync holds the state at {self._where()}")
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
            return
        database = self.engine.url.database
        if not database or database == ":memory:":
            yield
            return
        lock = FileLock(str(Path(database).with_name(Path(database).name + ".lock")))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise StateLocked(f"another funnelsync sync holds the state at {self._where()}") from None
        try:
            yield
        finally:
            lock.release()

    # -- reading -----------------------------------------------------------------------------

    def known_contacts(self) -> dict[str, KnownContact]:
        query = select(Contact.email, Contact.fingerprint, Contact.stage, Contact.below_since)
        with Session(self.engine) as session:
            return {
                email: KnownContact(fp, stage, below)
                for email, fp, stage, below in session.exec(query)
            }

    def written_properties(self, emails: Iterable[str]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        wanted = list(emails)
        with Session(self.engine) as session:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                query = select(Contact.email, Contact.properties).where(col(Contact.email).in_(chunk))
                for email, properties in session.exec(query):
                    found[email] = json.loads(properties)
        return found

    def record_ids(self, emails: Iterable[str]) -> dict[str, str]:
        wanted = list(emails)
        found: dict[str, str] = {}
        with Session(self.engine) as session:
            for start in range(0, len(wanted), _CHUNK):
                query = select(Contact.email, Contact.record_id).where(
                    col(Contact.email).in_(wanted[start : start + _CHUNK])
                )
                found.update({email: rid for email, rid in session.exec(query) if rid})
        return found

    # -- runs --------------------------------------------------------------------------------

    def start_run(self) -> int:
        with Session(self.engine) as session:
            run = Run(started_at=utcnow())
            session.add(run)
            session.commit()
            assert run.id is not None
            return run.id

    def finish_run(self, run_id: int, outcome: str, **counts: int | str) -> None:
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

    # -- recording results -------------------------------------------------------------------

    def record_results(
        self, run_id: int, confirmed: Iterable[Confirmed], refused: Iterable[Refused]
    ) -> None:
        """One batch's outcome, in one transaction: confirmed values and rejected records."""
        now = utcnow()
        confirmed = list(confirmed)
        refused = list(refused)
        with Session(self.engine) as session:
            existing = {
                c.email: c
                for c in session.exec(
                    select(Contact).where(col(Contact.email).in_([c.email for c in confirmed]))
                )
            } if confirmed else {}
            for write in confirmed:
                self._merge_confirmed(session, existing.get(write.email), write, run_id, now)
            if confirmed:
                session.exec(delete(Reject).where(col(Reject.email).in_([c.email for c in confirmed])))
            for refusal in refused:
                self._record_refusal(session, refusal, run_id, now)
            session.commit()

    @staticmethod
    def _merge_confirmed(
        session: Session, contact: Contact | None, write: Confirmed, run_id: int, now: datetime
    ) -> None:
        held = json.loads(contact.properties) if contact else {}
        held.update(write.sent)
        held = {name: value for name, value in held.items() if value != ""}
        if contact is None:
            contact = Contact(email=write.email, fingerprint="", properties="{}", written_at=now)
        contact.properties = json.dumps(held, sort_keys=True)
        contact.fingerprint = write.fingerprint
        contact.record_id = write.record_id or contact.record_id
        contact.written_at = now
        contact.below_since = write.below_since
        if write.stage_property and write.stage_property in write.sent:
            new_stage = write.sent[write.stage_property]
            if new_stage != contact.stage:
                session.add(
                    StageChange(email=write.email, from_stage=contact.stage, to_stage=new_stage,
                                changed_at=now, run_id=run_id)
                )
                contact.stage = new_stage
                contact.stage_entered_at = now
        session.add(contact)

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

    def record_unsent(self, changes: Mapping[str, tuple[str, datetime | None]]) -> None:
        """Contacts whose state moves with nothing to send: a new fingerprint (the config
        dropped a property, say) or the demotion clock starting or stopping."""
        with Session(self.engine) as session:
            for start in range(0, len(emails := list(changes)), _CHUNK):
                query = select(Contact).where(col(Contact.email).in_(emails[start : start + _CHUNK]))
                for contact in session.exec(query):
                    contact.fingerprint, since = changes[contact.email]
                    contact.below_since = since
                    session.add(contact)
            session.commit()

    # -- reporting ---------------------------------------------------------------------------

    def rejects(self) -> list[Reject]:
        with Session(self.engine) as session:
            return list(session.exec(select(Reject).order_by(col(Reject.last_rejected_at).desc())))

    def contacts_per_stage(self) -> dict[str, int]:
        query = select(Contact.stage, func.count()).group_by(Contact.stage)
        with Session(self.engine) as session:
            return {stage or "(none)": count for stage, count in session.exec(query)}

    def stage_changes_since(self, since: datetime) -> int:
        query = select(func.count()).select_from(StageChange).where(col(StageChange.changed_at) >= since)
        with Session(self.engine) as session:
            return int(session.exec(query).one())

    def contact_count(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.count()).select_from(Contact)).one())

