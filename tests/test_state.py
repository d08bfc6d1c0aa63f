"""The state store, the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import Session, SQLModel, col, select

from funnelsync.errors import StateError, StateLocked
from funnelsync.mappings.values import epoch_ms
from funnelsync.state import StateStore
from funnelsync.state.database import insert_many
from funnelsync.state.models import Operation, OperationKind, OperationStatus, RunOutcome
from funnelsync.state.records import (
    Confirmed,
    KnownContact,
    PlannedWrite,
    Refused,
    SegmentChange,
    StageMove,
    ToldAlert,
)
from funnelsync.state.store import fingerprint, utcnow


@pytest.fixture
def store(state_url: str) -> StateStore:
    opened = StateStore(state_url)
    yield opened
    opened.close()


def write(email: str, **properties: str) -> PlannedWrite:
    return PlannedWrite(email, properties, fingerprint(properties))


def test_the_migrations_build_exactly_the_tables_the_code_uses(store: StateStore) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []


def test_reopening_migrates_nothing_and_keeps_the_data(state_url: str) -> None:
    first = StateStore(state_url)
    run = first.start_run()
    top = replace(write("ada@example.com", stage="top"), stage_move=StageMove("top", utcnow()))
    first.record_results(run, [Confirmed(top, "101")], [])
    first.close()
    second = StateStore(state_url)
    assert second.known_contacts(["ada@example.com"])["ada@example.com"].stage == "top"
    second.close()


def test_known_contacts_bring_their_stage_entries_and_segments_over_several_chunks(store: StateStore) -> None:
    run = store.start_run()
    entered = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    writes = [replace(write(f"dev{i}@example.com", stage="top", top_at=epoch_ms(entered)),
                      stage_move=StageMove("top", entered)) for i in range(4500)]
    store.record_results(run, [Confirmed(w, None) for w in writes], [])
    moved = replace(write("dev7@example.com", stage="middle", middle_at=epoch_ms(entered + timedelta(days=2))),
                    stage_move=StageMove("middle", entered + timedelta(days=2)), previous_stage="top")
    store.record_results(run, [Confirmed(moved, None)], [])
    store.record_segment_changes([SegmentChange("dev7@example.com", "quota", True),
                                  SegmentChange("dev7@example.com", "new", True),
                                  SegmentChange("never-written@example.com", "new", True)], [], run, utcnow())

    known = store.known_contacts([*(f"dev{i}@example.com" for i in range(4500)), "never-written@example.com",
                                  "unknown@example.com"])

    assert len(known) == 4501
    assert known["dev7@example.com"].entries == {"top": entered,
                                                 "middle": entered + timedelta(days=2)}
    assert known["dev7@example.com"].entries["top"].tzinfo is not None
    assert (known["dev7@example.com"].stage, known["dev7@example.com"].segments) == ("middle", {"quota", "new"})
    assert known["dev4499@example.com"] == KnownContact(writes[4499].fingerprint, "top", None,
                                                        {"top": entered})
    assert known["never-written@example.com"] == KnownContact("", None, None, {}, frozenset({"new"}))


def test_confirmed_writes_merge_over_what_was_held_and_cleared_values_are_dropped(store: StateStore) -> None:
    run = store.start_run()
    store.record_results(run, [Confirmed(write("ada@example.com", a="1", b="x"), "101")], [])
    store.record_results(run, [Confirmed(write("ada@example.com", a="2", b=""), None)], [])
    assert store.written_properties(["ada@example.com"]) == {"ada@example.com": {"a": "2"}}


def test_a_confirmation_clears_the_contacts_earlier_rejection(store: StateStore) -> None:
    run = store.start_run()
    store.record_results(run, [], [Refused("ada@example.com", "bad option", "INVALID_OPTION")])
    store.record_results(run, [], [Refused("ada@example.com", "bad option again", "INVALID_OPTION")])
    [reject] = store.rejects()
    assert (reject.attempts, reject.reason) == (2, "bad option again")
    store.record_results(run, [Confirmed(write("ada@example.com", a="1"), "7")], [])
    assert store.rejects() == []


def test_journaled_batches_come_back_in_order_and_done_ones_do_not(store: StateStore) -> None:
    run = store.start_run()
    batches = [[write(f"dev{b}-{i}@example.com", n=str(i)) for i in range(3)] for b in range(45)]
    assert store.journal_writes(run, batches, 0) == 45
    first = next(store.planned_write_batches(run))
    store.record_results(run, [Confirmed(w, None) for w in first.writes], [], operation_ids=[first.operation_id])
    remaining = list(store.planned_write_batches(run))
    assert len(remaining) == 44
    assert remaining[0].writes[0].email == "dev1-0@example.com"


def test_batches_answered_together_are_recorded_in_one_transaction(store: StateStore) -> None:
    run = store.start_run()
    store.journal_writes(run, [[write(f"dev{b}-{i}@example.com", n=str(i)) for i in range(2)] for b in range(3)], 0)
    first, second, third = store.planned_write_batches(run)
    writes = [*first.writes, *second.writes]
    store.record_results(run, [Confirmed(w, None) for w in writes], [],
                         operation_ids=[first.operation_id, second.operation_id])
    assert [batch.operation_id for batch in store.planned_write_batches(run)] == [third.operation_id]
    emails = [w.email for w in [*writes, *third.writes]]
    assert set(store.known_contacts(emails)) == {w.email for w in writes}


def test_a_run_after_a_crash_supersedes_the_unfinished_writes_and_marks_the_run_interrupted(store: StateStore) -> None:
    crashed = store.start_run()
    store.journal_writes(crashed, [[write("ada@example.com", n="1")], [write("bob@example.com", n="1")]], 0)
    interrupted = store.interrupted_run()
    assert interrupted is not None
    assert (interrupted.run_id, interrupted.unfinished) == (crashed, {OperationKind.WRITE: 2})
    next_run = store.start_run()
    assert store.recover(next_run) == 2
    assert list(store.planned_write_batches(crashed)) == []
    assert store.recent_runs()[1].outcome == RunOutcome.INTERRUPTED


def test_planned_writes_of_a_contact_found_to_be_duplicated_are_dropped(store: StateStore) -> None:
    run = store.start_run()
    store.journal_writes(run, [[write("ada@example.com", n="1"), write("bob@example.com", n="2")]], 0)
    dropped = store.drop_planned_writes(run, {"ada@example.com"})
    assert [w.email for w in dropped] == ["ada@example.com"]
    [batch] = store.planned_write_batches(run)
    assert [w.email for w in batch.writes] == ["bob@example.com"]


def test_a_finished_write_keeps_no_payload(store: StateStore) -> None:
    crashed = store.start_run()
    store.journal_writes(crashed, [[write("ada@example.com", n="1")]], 0)
    run = store.start_run()
    store.recover(run)
    store.journal_writes(run, [[write("bob@example.com", n="1")]], 0)
    [batch] = store.planned_write_batches(run)
    store.record_results(run, [Confirmed(w, None) for w in batch.writes], [], operation_ids=[batch.operation_id])
    with store.engine.connect() as connection:
        payloads = connection.execute(sa.text("SELECT status, payload FROM operations ORDER BY id")).all()
    assert [tuple(row) for row in payloads] == [("superseded", "[]"), ("done", "[]")]  # the strings stored


def test_a_sqlite_state_gives_the_space_retention_frees_back(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(f"sqlite:///{path}")
    crashed = store.start_run()
    batches = [[write(f"dev{b}-{i}@example.com", note="x" * 400) for i in range(100)] for b in range(40)]
    store.journal_writes(crashed, batches, 0)
    grown = path.stat().st_size
    run = store.start_run()
    store.recover(run)
    store.finish_run(run, RunOutcome.OK)
    store.prune(timedelta(0))
    store.close()
    assert path.stat().st_size < grown / 2
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_old_history_and_finished_operations_are_pruned(store: StateStore) -> None:
    run = store.start_run()
    store.journal_writes(run, [[write("ada@example.com", n="1")]], 0)
    [batch] = store.planned_write_batches(run)
    store.record_results(run, [Confirmed(batch.writes[0], None)], [], operation_ids=[batch.operation_id])
    store.finish_run(run, RunOutcome.OK)
    assert store.prune(timedelta(days=30)) == {"runs": 0, "operations": 0, "stage_changes": 0}
    pruned = store.prune(timedelta(seconds=-1))
    assert pruned["runs"] == 1 and pruned["operations"] == 1
    assert store.contact_count() == 1  # what HubSpot holds is never pruned


def test_one_sync_at_a_time(state_url: str) -> None:
    first, second = StateStore(state_url), StateStore(state_url)
    with first.exclusive(), pytest.raises(StateLocked), second.exclusive():
        pass
    with second.exclusive():
        pass
    first.close()
    second.close()


def test_the_leader_lock_is_held_by_one_daemon_at_a_time(state_url: str) -> None:
    first, second = StateStore(state_url), StateStore(state_url)
    lead, standby = first.leader_lock(), second.leader_lock()
    assert lead.acquire()
    assert not standby.acquire()
    lead.release()
    assert standby.acquire()
    standby.release()
    first.close()
    second.close()


def test_api_calls_today_adds_up_todays_runs(store: StateStore) -> None:
    for calls in (10, 32):
        run = store.start_run()
        store.finish_run(run, RunOutcome.OK, api_calls=calls)
    assert store.api_calls_today() == 42


def test_a_foreign_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    before = path.read_bytes()
    with pytest.raises(StateError, match="tables or views that are not funnelsync's"):
        StateStore(f"sqlite:///{path}")
    assert path.read_bytes() == before


def test_a_corrupt_file_is_refused_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database at all" * 100)
    before = path.read_bytes()
    with pytest.raises(StateError, match="not readable"):
        StateStore(f"sqlite:///{path}")
    assert path.read_bytes() == before


def test_a_state_from_a_newer_funnelsync_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).close()
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StateError, match="newer funnelsync"):
        StateStore(url)


def test_an_unreachable_postgresql_server_is_a_clear_error() -> None:
    with pytest.raises(StateError, match="cannot open the state database"):
        StateStore("postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2")


def test_operations_have_unique_keys(store: StateStore) -> None:
    run = store.start_run()
    store.journal_writes(run, [[write("ada@example.com", n="1")]], 0)
    with pytest.raises(sa.exc.IntegrityError):
        store.journal_writes(run, [[write("ada@example.com", n="1")]], 0)
    assert Operation.__table__.c.key.unique
    assert utcnow().tzinfo is not None


def test_a_migration_that_fails_half_way_leaves_nothing_behind(state_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic.operations import Operations

    real_create_table = Operations.create_table
    created: list[str] = []

    def create_then_fail(self: Operations, name: str, *columns: object, **kwargs: object) -> object:
        if len(created) == 3:
            raise RuntimeError("killed half-way")
        created.append(name)
        return real_create_table(self, name, *columns, **kwargs)

    monkeypatch.setattr(Operations, "create_table", create_then_fail)
    with pytest.raises(RuntimeError):
        StateStore(state_url)
    engine = sa.create_engine(state_url)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()
    monkeypatch.undo()
    StateStore(state_url).close()  # the next start migrates from scratch


def test_the_alerts_told_are_kept_changed_and_forgotten_and_leave_the_state_empty(store: StateStore) -> None:
    since = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    store.remember_told_alert(ToldAlert("run_failed", since, since, 1))
    store.remember_told_alert(ToldAlert("run_failed", since + timedelta(hours=1), since, 5))
    store.remember_told_alert(ToldAlert("daily_budget_exhausted", since))
    assert store.told_alerts() == {
        "run_failed": ToldAlert("run_failed", since + timedelta(hours=1), since, 5),
        "daily_budget_exhausted": ToldAlert("daily_budget_exhausted", since),
    }
    assert store.told_alerts()["run_failed"].told_at.tzinfo is not None
    assert store.holds_nothing()  # what was told is no contact, nor a rebuild
    store.forget_told_alert("run_failed")
    store.forget_told_alert("run_failed")  # forgetting twice is no error
    assert list(store.told_alerts()) == ["daily_budget_exhausted"]


def test_rows_inserted_through_the_driver_read_back_as_the_orm_writes_them(store: StateStore) -> None:
    """`insert_many` hands plain values to the driver: the columns left out take their defaults,
    and times and kinds are stored as SQLAlchemy stores them."""
    at = datetime(2026, 12, 2, 6, 30, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
    count = 50
    rows = [{"run_id": 7, "kind": OperationKind.LIST_ADD, "key": f"list:{n:04d}", "email": f"dev{n}@example.com",
             "target": "42", "payload": "{}", "created_at": at, "updated_at": at + timedelta(seconds=n)}
            for n in range(count)]
    with store.engine.begin() as connection:
        insert_many(connection, Operation.__table__, rows)  # type: ignore[attr-defined]
    with Session(store.engine) as session:
        held = session.exec(select(Operation).order_by(col(Operation.key))).all()
    assert [(o.key, o.kind, o.status, o.attempts, o.last_error, o.updated_at) for o in held] == [
        (f"list:{n:04d}", OperationKind.LIST_ADD, OperationStatus.PLANNED, 0, "", at + timedelta(seconds=n))
        for n in range(count)]
    assert all(o.created_at == at and o.created_at.tzinfo is not None for o in held)
    by_sqlalchemy = {**rows[0], "key": "list:by-sqlalchemy"}
    with store.engine.begin() as connection:
        connection.execute(sa.insert(Operation), [by_sqlalchemy])
        stored = connection.execute(sa.text(
            "SELECT kind, status, attempts, last_error, CAST(created_at AS TEXT), CAST(updated_at AS TEXT) "
            "FROM operations WHERE key IN ('list:0000', 'list:by-sqlalchemy') ORDER BY key")).all()
    assert stored[0] == stored[1]  # the same text on SQLite, the same values on PostgreSQL
