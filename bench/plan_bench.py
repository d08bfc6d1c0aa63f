"""Planning a sync of a large portal: diff N source rows against a state of N written contacts.

    .venv/bin/python bench/plan_bench.py                       # N = 1,000,000, SQLite and PostgreSQL
    .venv/bin/python bench/plan_bench.py --quick               # smoke run: N = 20,000
    .venv/bin/python bench/plan_bench.py --out BENCHMARKS.md --json bench/plan_results.json
    .venv/bin/python bench/plan_bench.py --profile             # also: where the time goes
    .venv/bin/python bench/plan_bench.py --compare /tmp/x      # also measure the funnelsync in /tmp/x

Targets (issue): planning a sync of 1,000,000 contacts where 1 % changed (diff against the state,
journal the writes) takes under 60 s on a 2-core machine and stays under 500 MB of memory, on
SQLite and on PostgreSQL; the state of a 1,000,000-contact portal stays small.

What it does:

1. A SQLite source database (`usage`, one row per developer, N rows) and a config shaped like the
   repository's config.toml: 8 properties (numbers, enumerations, dates), a 3-stage funnel that
   enrolls (a sequence, a workflow, a list) with `signup_column` and `demote_after_days`, and 2
   segments with CEL rules (one with `days_since`, one with a bool property).
2. The state a backfill of those N contacts leaves behind, built in bulk ("the builder"): the
   backfill is planned by the real code (`SyncEngine._plan`: source, ContactMapper, Planner)
   against an empty state; each planned write is recorded as `StateStore.record_results` records
   it (from the write's typed facts) and each enrollment planned by the real `sync.outcomes`, given a
   stand-in for the ORM session that collects what they
   add (and, while they run, plain classes with the models' fields, defaults and tables instead
   of the ORM models: an instrumented SQLModel instance costs ~60 us, and a backfill of
   1,000,000 contacts makes 4,500,000); the rows are bulk-inserted with SQLAlchemy Core into the
   models' tables (so through the same column types) of a SQLite state and a PostgreSQL state at
   once. What the builder replicates rather than calls (the journal's write operations marked
   done, segment members, enrollment operations marked done by the enrollment runner) is
   checked: a real `SyncEngine.sync()` of the first `--sample` developers against the sandbox
   (the local HubSpot-compatible API) and the builder on the same developers must leave
   identical tables (every row and column, except HubSpot's record ids, operation ids and the
   run's API-call count).
   The backfill happened one hour before the measured run, everything it planned was confirmed
   and every enrollment done; the journal and history of the backfill are still there
   (retention has not pruned them yet), which is the largest the state gets. PostgreSQL's state
   is VACUUM ANALYZEd once built, as autovacuum would have done long before the next run.
3. 1 % of the developers' usage changes in the source.
4. `--repeat` times per backend (interleaved), a fresh child process (this file with
   `--child-plan`) on a fresh copy of the built state (flushed to disk first) does exactly what
   `SyncEngine._run` does before provisioning: `state.start_run()`, then, timed:
   `state.recover(run_id)`, `JournalSink(...)`, `engine._plan(sink, now)` (which calls
   `sink.finish()`). Peak RSS is the child's `getrusage(RUSAGE_SELF).ru_maxrss` at its end; the
   children are started by a small launcher process, because Linux hands a process's high-water
   RSS on to what it forks and execs (a child of this benchmark would otherwise report this
   benchmark's own RSS); each child also reports its VmHWM as a cross-check. The child checks
   the plan (to_write == changed, unchanged == N - changed) and the journal (ceil(changed / 100)
   planned write batches holding exactly the changed contacts).
5. With `--profile`: one more run per backend with timers around the planning's steps, and one
   under cProfile.
6. The state's size: the SQLite file, `pg_database_size`, per table, right after the backfill and
   after retention pruned the backfill's journal and history (PostgreSQL: then VACUUM FULL).

Nothing here asserts on time: it measures and checks correctness only (exit status 1 when a
check fails). Other work on the machine changes the timings: each run's load average is kept.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import common
from common import COMPANIES, FIRST, LAST, PLAN_WEIGHTS, PLANS, ROLE_WEIGHTS, ROLES

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

SEED = 20261201
DEFAULT_CONTACTS = 1_000_000
QUICK_CONTACTS = 20_000
CHANGED_FRACTION = 0.01
TOKEN = "plan-bench-token-0123456789"
TOKEN_ENV = "FUNNELSYNC_PLAN_BENCH_TOKEN"
BACKFILL_NOW = datetime(2026, 11, 1, 11, 0, tzinfo=UTC)  # the backfill's planning time
DONE_AT = BACKFILL_NOW + timedelta(minutes=5)  # the state store's clock while it was recorded
PLAN_NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # the measured run
RECORD_ID_BASE = 100_000_000_001  # HubSpot contact ids are 11-12 digits today
PG_STATE_DB = "plan_bench_state"
MARK_START = "<!-- plan-bench:results:start -->"
MARK_END = "<!-- plan-bench:results:end -->"
QUOTAS = {"free": 10_000, "growth": 1_000_000, "enterprise": 50_000_000}


WORKFLOW = 1234567
OVER_QUOTA_WORKFLOW = 2345678
SEQUENCE = "5550001"
SEQUENCE_USER = "7701"

CONFIG_BODY = """
[[properties]]
column = "used_event_count"
name = "used_event_count"
label = "Used Event Count"
type = "number"

[[properties]]
column = "error_count"
name = "api_error_count"
label = "API errors (last day)"
type = "number"

[[properties]]
column = "calls_last_30_days"
name = "api_calls_last_30_days"
label = "API calls (last 30 days)"
type = "number"

[[properties]]
column = "role"
name = "developer_role"
label = "Developer role"
type = "enumeration"
options = ["Product", "Engineering", "Marketing", "Customer Success", "Developer Relations", "Sales",
           "Support", "Executive"]

[[properties]]
column = "plan"
name = "api_plan"
label = "API plan"
type = "enumeration"
options = ["free", "growth", "enterprise"]

[[properties]]
column = "signed_up_at"
name = "api_signed_up_at"
label = "Signed up for the API"
type = "date"

[[properties]]
column = "first_event_at"
name = "first_api_call_at"
label = "First API call"
type = "date"

[[properties]]
column = "last_event_at"
name = "last_api_call_at"
label = "Last API call"
type = "date"

[funnel]
metric = "used_event_count"
property = "api_integration_stage"
label = "API integration stage"
signup_column = "signed_up_at"
demote_after_days = 7

[[funnel.stages]]
value = "top"
label = "Not yet integrated"
enroll = { sequence = { id = 5550001, sender_email = "devrel@example.com", user_id = 7701 } }

[[funnel.stages]]
value = "middle"
label = "Integrated in sandbox"
above = 0
enroll = { workflow_id = 1234567 }

[[funnel.stages]]
value = "bottom"
label = "Integrated in production"
above = 1000
enroll = { list = "API funnel: production" }

[[segments]]
name = "signed_up_no_calls"
label = "Signed up this week, no API calls yet"
when = "days_since(signed_up_at) <= 7 && used_event_count == 0"
enroll = { list = "Onboarding: no API calls yet" }

[[segments]]
name = "over_quota"
label = "Over the monthly quota"
when = "calls_last_30_days > monthly_quota"
enroll = { workflow_id = 2345678 }
property = "api_over_quota"
"""
QUERY = ("SELECT email, role, plan, monthly_quota, signed_up_at, used_event_count, error_count, "
         "calls_last_30_days, first_event_at, last_event_at FROM usage")


def write_config(path: Path, *, source: Path, state_url: str, base_url: str = "http://127.0.0.1:9") -> None:
    q = json.dumps  # a JSON string of ASCII is a TOML basic string
    head = "\n".join([
        "[source]", 'kind = "sql"', f"url = {q('sqlite:///' + str(source))}", 'key = "email"',
        f"query = {q(QUERY)}", "",
        "[hubspot]", f"base_url = {q(base_url)}", f"token_env = {q(TOKEN_ENV)}",
        "requests_per_10s = 250", 'property_group = "funnelsync"', "",
        "[state]", f"url = {q(state_url)}", "",
    ])
    path.write_text(head + CONFIG_BODY)


# -- the source ------------------------------------------------------------------------------

def source_rows(count: int, seed: int = SEED) -> Iterable[tuple[Any, ...]]:
    """`count` developers: a third never called the API (top), about 40 % call it a little
    (middle), a quarter more than 1,000 times a day (bottom); 1 in 100 signed up this week.
    Row i is the same whatever `count` is, so a sample is the first rows of the full source."""
    rng = random.Random(seed)
    today = PLAN_NOW.date()
    for number in range(count):
        first, last, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANIES)
        signed_up = today - timedelta(days=rng.randint(1, 7) if rng.random() < 0.01 else rng.randint(8, 900))
        plan = rng.choices(PLANS, PLAN_WEIGHTS)[0]
        used, errors, last30, first_event, last_event = common.api_usage(rng, signed_up, today)
        yield (f"{first}.{last}.{number}@{company}.example.com", f"{first.title()} {last.title()}",
               company.title(), rng.choices(ROLES, ROLE_WEIGHTS)[0], plan, QUOTAS[plan],
               signed_up.isoformat(), used, errors, last30, first_event, last_event)


def build_source(path: Path, count: int) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "CREATE TABLE usage (email TEXT PRIMARY KEY, name TEXT NOT NULL, company TEXT NOT NULL, "
            "role TEXT NOT NULL, plan TEXT NOT NULL, monthly_quota INTEGER NOT NULL, "
            "signed_up_at TEXT NOT NULL, used_event_count INTEGER NOT NULL, error_count INTEGER NOT NULL, "
            "calls_last_30_days INTEGER NOT NULL, first_event_at TEXT, last_event_at TEXT)"
        )
        db.executemany("INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", source_rows(count))
    db.close()


def change_usage(path: Path, fraction: float, seed: int = SEED + 1) -> int:
    """A day's usage for `fraction` of the developers: most call more (a few for the first time),
    some call less. Every change alters `used_event_count`, so each is one contact to write."""
    rng = random.Random(seed)
    today = PLAN_NOW.date().isoformat()
    db = sqlite3.connect(path)
    with db:
        count = db.execute("SELECT count(*) FROM usage").fetchone()[0]
        picked = sorted(rng.sample(range(1, count + 1), max(1, round(count * fraction))))
        updates = []
        for rowid in picked:
            used, last30, first_event = db.execute(
                "SELECT used_event_count, calls_last_30_days, first_event_at FROM usage WHERE rowid = ?",
                (rowid,)).fetchone()
            if used > 0 and rng.random() < 0.3:
                new = rng.randint(0, used - 1)
            else:
                new = used + rng.randint(1, 3000)
            last_event = today if new > 0 else None
            updates.append((new, last30 + new, first_event or (today if new > 0 else None),
                            last_event, rng.randint(0, max(1, new // 50)), rowid))
        db.executemany("UPDATE usage SET used_event_count = ?, calls_last_30_days = ?, first_event_at = ?, "
                       "last_event_at = coalesce(?, last_event_at), error_count = ? WHERE rowid = ?", updates)
    db.close()
    return len(picked)


class _NoCrm:
    """The CRM of an engine that only plans (`SyncEngine._plan` never calls it): the measured
    child leaves the HubSpot client unimported, which would count in its peak RSS."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"planning used the CRM ({name})")


# -- the builder: the state a confirmed backfill leaves ----------------------------------------

class _Writer:
    """Buffers rows per table and inserts them with SQLAlchemy Core into every target at once."""

    def __init__(self, engines: Sequence[Any], flush_rows: int = 5000) -> None:
        self.connections = [engine.connect() for engine in engines]
        self.buffers: dict[Any, list[dict[str, Any]]] = {}
        self.flush_rows = flush_rows
        self.counts: Counter[str] = Counter()

    def add(self, model: Any, **row: Any) -> None:
        """One row of `model`'s table: the given values over the model's defaults."""
        table = model.__table__
        defaults = _defaults(model)
        unknown = row.keys() - defaults.keys() - set(table.columns.keys())
        if unknown:
            raise TypeError(f"{model.__name__} has no column {sorted(unknown)}")
        full = {**defaults, **row}
        missing = set(table.columns.keys()) - full.keys() - {"id"}
        if missing:
            raise TypeError(f"{model.__name__} needs {sorted(missing)}")
        if full.get("id") is None:
            full.pop("id", None)  # the database numbers it
        buffer = self.buffers.setdefault(table, [])
        buffer.append(full)
        if len(buffer) >= self.flush_rows:
            self._flush(table)

    def _flush(self, table: Any) -> None:
        rows = self.buffers.get(table)
        if not rows:
            return
        for connection in self.connections:
            connection.execute(table.insert(), rows)
        self.counts[table.name] += len(rows)
        self.buffers[table] = []

    def close(self) -> None:
        for table in list(self.buffers):
            self._flush(table)
        for connection in self.connections:
            connection.commit()
            connection.close()


_DEFAULTS: dict[Any, dict[str, Any]] = {}


def _defaults(model: Any) -> dict[str, Any]:
    if model not in _DEFAULTS:
        from pydantic_core import PydanticUndefined

        _DEFAULTS[model] = {name: field.default for name, field in model.model_fields.items()
                            if field.default is not PydanticUndefined}
    return _DEFAULTS[model]


class BackfillSink:
    """The plan sink of the backfill. It writes the rows a real run leaves once HubSpot confirmed
    every write and the enrollment runner did every enrollment, as the state store would write
    them (the sample check holds it to that):

    * JournalSink -> StateStore.journal_writes: one `write` operation a batch of 100, marked done
      (its payload emptied) by record_results(operation_ids=...);
    * StateStore.record_results -> _merge_confirmed: a contact row, its stage change, its stage
      entry, and the stage's enrollments (sync.outcomes), marked done by the enrollment runner;
    * StateStore.record_segment_changes: segment members and their enrollments, marked done.
    """

    def __init__(self, config: Any, writer: _Writer, run_id: int, now: datetime, done_at: datetime) -> None:
        from funnelsync.sync.outcomes import segment_targets, stage_targets

        self.writer = writer
        self.run_id = run_id
        self.now = now  # the backfill's planning time
        self.done_at = done_at  # the state store's clock (utcnow) while the run was recorded
        self.batch_size = config.hubspot.batch_size
        self.stage_targets = stage_targets(config)
        self.segment_targets = segment_targets(config)
        self._pending: list[Any] = []
        self._batches = itertools.count(0)
        self._change_ids = itertools.count(1)
        self._record_ids = itertools.count(RECORD_ID_BASE)
        self.written = 0
        self.batches = 0
        self.enrollments = 0
        self.journaled_bytes = 0

    def add_writes(self, writes: Sequence[Any], held: Any = None) -> None:  # held: for `plan` only
        self._pending += writes
        while len(self._pending) >= self.batch_size:
            self._record(self._pending[: self.batch_size])
            self._pending = self._pending[self.batch_size :]

    def finish(self) -> None:
        if self._pending:
            self._record(self._pending)
        self._pending = []

    def _enrollments(self, operations: Sequence[Any], created_at: datetime) -> None:
        """The operations sync.outcomes plans for an entry, each then done (mark_operations
        "started", then "done")."""
        from funnelsync.state.models import Operation

        for planned in operations:
            self.writer.add(Operation, run_id=self.run_id, kind=planned.kind, key=planned.key, email=planned.email,
                            target=planned.target, payload=json.dumps(dict(planned.payload)),
                            status="done", attempts=1, last_error="", created_at=created_at,
                            updated_at=self.done_at)
            self.enrollments += 1

    def _record(self, batch: list[Any]) -> None:
        from funnelsync.state.models import Contact, Operation, StageChange, StageEntry
        from funnelsync.state.records import Confirmed
        from funnelsync.sync.outcomes import stage_entry_operations

        number = next(self._batches)
        self.journaled_bytes += len(json.dumps([w.as_json() for w in batch]))  # held until done
        self.writer.add(Operation, run_id=self.run_id, kind="write", key=f"write:{self.run_id}:{number}",
                        payload="[]", status="done", attempts=1, created_at=self.done_at, updated_at=self.done_at)
        for write in batch:  # a contact the state does not hold yet
            held = {name: value for name, value in write.properties.items() if value != ""}
            move = write.stage_move
            self.writer.add(Contact, email=write.email, record_id=str(next(self._record_ids)),
                            fingerprint=write.fingerprint, properties=json.dumps(held, sort_keys=True),
                            stage=move.to_stage if move else None, stage_entered_at=move.at if move else None,
                            below_since=write.below_since, written_at=self.done_at,
                            hello_world_days=write.hello_world_days, working_app_days=write.working_app_days)
            if move is not None:
                self.writer.add(StageChange, id=next(self._change_ids), email=write.email, from_stage=None,
                                to_stage=move.to_stage, changed_at=move.at, run_id=self.run_id)
                self.writer.add(StageEntry, email=write.email, stage=move.to_stage, first_entered_at=move.at)
        self._enrollments(stage_entry_operations([Confirmed(write, None) for write in batch], self.stage_targets),
                          self.done_at)
        self.written += len(batch)
        self.batches += 1

    def add_segment_changes(self, changes: Sequence[Any]) -> None:
        from funnelsync.state.models import SegmentMember
        from funnelsync.sync.outcomes import segment_change_operations

        for change in changes:
            if not change.entered:
                raise AssertionError("a backfill leaves no segment")
            self.writer.add(SegmentMember, email=change.email, segment=change.segment, entered_at=self.now)
        self._enrollments(segment_change_operations(changes, self.segment_targets, self.now), self.now)

    def add_unsent(self, changes: dict[str, Any]) -> None:
        raise AssertionError("a backfill has nothing unchanged")

    def drop_writes(self, emails: set[str]) -> list[Any]:
        raise AssertionError("the source has one row per email")


def build_state(config_path: Path, state_urls: Sequence[str], scratch: Path) -> dict[str, Any]:
    """The state a backfill of the config's source leaves, in every one of `state_urls`."""
    from funnelsync.config import load_config
    from funnelsync.connectors.sql import SqlUsageSource
    from funnelsync.state.models import Run, RunOutcome
    from funnelsync.state.store import StateStore
    from funnelsync.sync.engine import SyncEngine

    config = load_config(config_path)
    stores = [StateStore(url) for url in state_urls]  # creates the schema (the migrations)
    empty = StateStore(f"sqlite:///{scratch}")
    writer = _Writer([store.engine for store in stores])
    run_id = 1
    started = time.monotonic()
    source = SqlUsageSource(config.source)
    engine = SyncEngine(config, source, _NoCrm(), empty, now=lambda: BACKFILL_NOW)
    sink = BackfillSink(config, writer, run_id, BACKFILL_NOW, DONE_AT)
    plan = engine._plan(sink, BACKFILL_NOW)  # type: ignore[arg-type]
    assert plan.to_write == plan.contacts == plan.rows_read and not plan.refused, plan
    # api_calls: an estimate (upserts + one call per enrollment); the sample check leaves it out
    writer.add(Run, id=run_id, started_at=DONE_AT, finished_at=DONE_AT, outcome=RunOutcome.OK,
               rows_read=plan.rows_read, rows_skipped=0, contacts_changed=plan.to_write,
               contacts_written=sink.written, contacts_rejected=0, api_calls=sink.batches + sink.enrollments,
               message="")
    writer.close()
    for store in stores:
        if store.engine.dialect.name == "postgresql":
            import sqlalchemy as sa

            with store.engine.connect() as connection:
                for table in ("runs", "operations", "stage_changes"):  # ids given explicitly
                    connection.execute(sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 1) FROM {table}))"))
                connection.commit()
            # what autovacuum does to a table long after it was filled
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(sa.text("VACUUM ANALYZE"))
        store.close()
    empty.close()
    source.close()
    return {"seconds": time.monotonic() - started, "rows": dict(writer.counts), "contacts": sink.written,
            "write_batches": sink.batches, "journaled_bytes": sink.journaled_bytes,
            "stage_moves": dict(plan.stage_moves),
            "segment_moves": dict(plan.segment_moves)}


# -- the sample check: the builder against a real sync ----------------------------------------

def real_backfill(config_path: Path, sandbox: Any) -> None:
    """A real `SyncEngine.sync()` of the config's source against the sandbox, with the state
    store's clock fixed at DONE_AT and the plan's at BACKFILL_NOW, as the builder assumes."""
    import funnelsync.state.store as store_module
    from funnelsync.config import load_config
    from funnelsync.connectors.budget import RequestBudget
    from funnelsync.connectors.hubspot import HubSpotCrm
    from funnelsync.connectors.sql import SqlUsageSource
    from funnelsync.state.models import RunOutcome
    from funnelsync.state.store import StateStore
    from funnelsync.sync.engine import SyncEngine

    config = load_config(config_path)
    clock = store_module.utcnow
    store_module.utcnow = lambda: DONE_AT
    state = StateStore(config.state.url)
    try:
        crm = HubSpotCrm(config.hubspot, TOKEN, budget=RequestBudget(1_000_000, 10.0))
        engine = SyncEngine(config, SqlUsageSource(config.source), crm, state, now=lambda: BACKFILL_NOW)
        summary = engine.sync()
        assert summary.outcome == RunOutcome.OK and summary.written == summary.rows_read, summary
        assert not summary.enrollments.failed, summary.enrollments
    finally:
        store_module.utcnow = clock
        state.close()


# (table, key columns, columns left out of the comparison)
COMPARED = [
    ("contacts", ("email",), {"record_id"}),
    ("stage_changes", ("id",), set()),
    ("stage_entries", ("email", "stage"), set()),
    ("segment_members", ("email", "segment"), set()),
    ("operations", ("key",), {"id"}),
    ("rejects", ("email",), set()),
    ("runs", ("id",), {"api_calls"}),
    ("funnelsync_meta", ("key",), set()),
    ("alembic_version", ("version_num",), set()),
]


def compare_states(real: Path, built: Path) -> tuple[dict[str, int], list[str]]:
    """Rows per table, and every difference between two SQLite states."""
    problems: list[str] = []
    rows: dict[str, int] = {}
    dbs = [sqlite3.connect(real), sqlite3.connect(built)]
    for table, key, left_out in COMPARED:
        tables = []
        for db in dbs:
            cursor = db.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            content = {}
            for values in cursor:
                row = dict(zip(names, values, strict=True))
                content[tuple(row[k] for k in key)] = {n: v for n, v in row.items() if n not in left_out}
            tables.append(content)
        real_rows, built_rows = tables
        rows[table] = len(real_rows)
        if real_rows.keys() != built_rows.keys():
            only_real = sorted(real_rows.keys() - built_rows.keys())[:3]
            only_built = sorted(built_rows.keys() - real_rows.keys())[:3]
            problems.append(f"{table}: {len(real_rows)} rows by the real sync, {len(built_rows)} built; "
                            f"only real e.g. {only_real}, only built e.g. {only_built}")
            continue
        for k, row in real_rows.items():
            if row != built_rows[k]:
                diff = {n: (v, built_rows[k].get(n)) for n, v in row.items() if built_rows[k].get(n) != v}
                problems.append(f"{table} {k}: real vs built {diff}")
                break
    for db in dbs:
        db.close()
    # the record ids: HubSpot's (the sandbox's) in one, the builder's in the other; both set
    for path in (real, built):
        db = sqlite3.connect(path)
        missing = db.execute("SELECT count(*) FROM contacts WHERE record_id IS NULL OR record_id = ''").fetchone()[0]
        db.close()
        if missing:
            problems.append(f"{path.name}: {missing} contacts without a record id")
    return rows, problems


def sample_check(root: Path, size: int) -> dict[str, Any]:
    from funnelsync.sandbox import SandboxServer

    source = root / "sample-source.db"
    build_source(source, size)
    real_state, built_state = root / "sample-real.db", root / "sample-built.db"
    started = time.monotonic()
    os.environ[TOKEN_ENV] = TOKEN
    with SandboxServer(token=TOKEN) as sandbox:
        sandbox.add_workflow(WORKFLOW, "Sandbox nurture")
        sandbox.add_workflow(OVER_QUOTA_WORKFLOW, "Over quota")
        sandbox.add_sequence(SEQUENCE, SEQUENCE_USER, "Getting started")
        config = root / "sample-real.toml"
        write_config(config, source=source, state_url=f"sqlite:///{real_state}", base_url=sandbox.url)
        real_backfill(config, sandbox)
    real_seconds = time.monotonic() - started
    config = root / "sample-built.toml"
    write_config(config, source=source, state_url=f"sqlite:///{built_state}")
    build_state(config, [f"sqlite:///{built_state}"], root / "sample-empty.db")
    rows, problems = compare_states(real_state, built_state)
    return {"contacts": size, "rows": rows, "problems": problems, "real_sync_seconds": real_seconds}


# -- the measured planning, in a child process --------------------------------------------------

def child_plan(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: the planning phase of one sync, as SyncEngine._run does it."""
    import resource

    wall_started = time.monotonic()
    import sqlalchemy as sa

    from funnelsync.config import load_config
    from funnelsync.connectors.sql import SqlUsageSource
    from funnelsync.state.records import PlannedWrite
    from funnelsync.state.store import StateStore
    from funnelsync.sync.engine import SyncEngine
    from funnelsync.sync.sinks import JournalSink

    os.environ.setdefault(TOKEN_ENV, TOKEN)
    config = load_config(spec["config"])
    state = StateStore(spec["state_url"])
    source = SqlUsageSource(config.source)
    engine = SyncEngine(config, source, _NoCrm(), state, now=lambda: PLAN_NOW)
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    split = _split_timers() if spec.get("split") else None
    profile = None
    if spec.get("profile"):
        import cProfile

        profile = cProfile.Profile()
    with state.exclusive():
        run_id = state.start_run()
        cpu0, t0 = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        # -- SyncEngine._run up to provisioning --
        resumed = state.recover(run_id)
        now = engine.now()
        segment_enrollments = {segment.name: segment.enroll for segment in config.segments}
        sink = JournalSink(state, run_id, config.hubspot.batch_size, segment_enrollments, now)
        plan = engine._plan(sink, now)  # calls sink.finish()
        # --
        if profile:
            profile.disable()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        # a plain string: --compare runs this child on trees older than RunOutcome
        state.finish_run(run_id, "stopped", rows_read=plan.rows_read,  # type: ignore[arg-type]
                         contacts_changed=plan.to_write)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # the journal this run left
    with state.engine.connect() as connection:
        payloads = connection.execute(sa.text(
            "SELECT payload FROM operations WHERE run_id = :run AND kind = 'write' AND status = 'planned' "
            "ORDER BY id"), {"run": run_id}).scalars().all()
        enrollments = dict(connection.execute(sa.text(
            "SELECT kind, count(*) FROM operations WHERE run_id = :run AND kind != 'write' GROUP BY kind"),
            {"run": run_id}).all())
    sizes = [len(json.loads(p)) for p in payloads]
    journaled = [PlannedWrite.from_json(w) for p in payloads for w in json.loads(p)]
    result = {
        "backend": state.engine.dialect.name,
        "code": str(Path(sys.modules["funnelsync"].__file__ or "").parent),
        "run_id": run_id,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "process_seconds": time.monotonic() - wall_started,
        "peak_rss_kb": usage.ru_maxrss,
        "vm_hwm_kb": vm_hwm_kb(),
        "rss_before_planning_kb": rss_before_kb,
        "resumed_writes": resumed,
        "rows_read": plan.rows_read,
        "contacts": plan.contacts,
        "unchanged": plan.unchanged,
        "to_write": plan.to_write,
        "refused": len(plan.refused),
        "skipped": dict(plan.skipped),
        "stage_moves": dict(plan.stage_moves),
        "segment_moves": dict(plan.segment_moves),
        "journal_batches": len(sizes),
        "journal_batch_sizes": sorted(Counter(sizes).items()),
        "journal_contacts": len({w.email for w in journaled}),
        "journal_properties": sum(len(w.properties) for w in journaled),
        "enrollments_planned": enrollments,
    }
    if split is not None:
        result["split"] = {name: round(value, 2) for name, value in sorted(split.items(), key=lambda kv: -kv[1])}
    if profile:
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        result["profile"] = out.getvalue()
    state.close()
    source.close()
    return result


class Launcher:
    """Starts the measured children from a small process.

    Linux hands a process's peak RSS on to what it execs: a child forked from this benchmark (which
    holds hundreds of MB while it builds) and exec'd starts with `ru_maxrss` = this process's RSS,
    whatever it uses itself. The launcher is started first, while this process is small, and
    starts every measured child, so their `ru_maxrss` is theirs (each child also reports its
    VmHWM, the peak RSS of its own address space, as a cross-check)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--launcher"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, argv: list[str], cwd: Path) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def launcher_loop() -> int:
    for line in sys.stdin:
        request = json.loads(line)
        done = subprocess.run(request["argv"], cwd=request["cwd"], capture_output=True, text=True, check=False)
        print(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}), flush=True)
    return 0


def _split_timers() -> dict[str, float]:
    """Where the planning's time goes, without a profiler's overhead: timers around the steps
    (the planner's own loop is what is left of the total)."""
    from funnelsync.mappings.contacts import ContactMapper
    from funnelsync.state.store import StateStore
    from funnelsync.sync import planner as plan_module

    timers: dict[str, float] = Counter()

    def timed(owner: Any, name: str, label: str) -> None:
        function = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timers[label] += time.perf_counter() - started

        setattr(owner, name, wrapper)

    timed(ContactMapper, "map", "mapping rows (ContactMapper.map)")
    timed(StateStore, "known_contacts", "reading the state (StateStore.known_contacts, in the look-up thread)")
    timed(StateStore, "written_properties", "reading written values (StateStore.written_properties)")
    timed(plan_module.Planner, "_full_properties", "stage, entries, timing (Planner._full_properties)")
    timed(plan_module, "fingerprint", "fingerprints (store.fingerprint)")
    timed(StateStore, "journal_writes", "journaling (StateStore.journal_writes)")
    timed(StateStore, "record_segment_changes", "segment changes (StateStore.record_segment_changes)")
    timed(StateStore, "record_unsent", "unsent changes (StateStore.record_unsent)")
    chunks = plan_module._chunks

    def timed_chunks(rows: Any, size: int) -> Any:
        iterator = chunks(rows, size)
        while True:
            started = time.perf_counter()
            try:
                chunk = next(iterator)
            except StopIteration:
                return
            finally:
                timers["reading the source (SqlUsageSource rows)"] += time.perf_counter() - started
            yield chunk

    plan_module._chunks = timed_chunks
    return timers


def run_child(launcher: Launcher, spec: dict[str, Any], root: Path, name: str,
              code: Path | None = None) -> dict[str, Any]:
    """One planning child; `code`: a directory holding another funnelsync package to measure
    (put first on its PYTHONPATH), e.g. a patched copy."""
    spec_path = root / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    argv = [sys.executable, str(Path(__file__).resolve()), "--child-plan", str(spec_path)]
    if code is not None:
        argv = ["env", f"PYTHONPATH={code}", *argv]
    done = launcher.run(argv, root)
    if done["returncode"] != 0:
        raise RuntimeError(f"planning child {name} failed ({done['returncode']}):\n{done['stderr'][-4000:]}")
    return json.loads(done["stdout"].strip().splitlines()[-1])


def vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


# -- state size ---------------------------------------------------------------------------------

def sqlite_size(path: Path) -> dict[str, Any]:
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0] * page_size
    objects = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
    per_table: Counter[str] = Counter()
    for name, size in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
        per_table[objects.get(name, name)] += size
    db.close()
    return {"bytes": path.stat().st_size, "free_bytes": free, "tables": dict(per_table)}


def postgres_size(url: str) -> dict[str, Any]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        total = connection.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
        tables = dict(connection.execute(sa.text(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'")).all())
    engine.dispose()
    return {"bytes": int(total), "tables": {k: int(v) for k, v in tables.items()}}


def row_counts(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        counts = {table: int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() or 0)
                  for table in ("contacts", "stage_entries", "stage_changes", "segment_members", "operations",
                                "runs")}
    engine.dispose()
    return counts


def prune_retention(url: str) -> dict[str, int]:
    """What `state.prune(retention)` leaves once the backfill is older than the retention: on
    SQLite the file as funnelsync leaves it (prune hands the freed pages back); PostgreSQL keeps
    freed space for reuse, so its figure is after a VACUUM FULL."""
    import sqlalchemy as sa

    from funnelsync.state.store import StateStore, utcnow

    store = StateStore(url)
    pruned = store.prune(utcnow() - DONE_AT - timedelta(seconds=1))  # cutoff just after DONE_AT
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM FULL"))
    store.close()
    return pruned


# -- the report ---------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    pg = ""
    try:
        from tests.postgres import find_bindir

        pg = subprocess.run([str(find_bindir() / "postgres"), "--version"], capture_output=True, text=True,
                            check=False).stdout.strip()
    except Exception:
        pass
    facts = common.machine(("funnelsync", "sqlalchemy", "sqlmodel", "psycopg"))
    facts["packages"] += f", SQLite {sqlite3.sqlite_version}"
    return {**facts, "postgres": pg or "unknown", "commit": common.working_tree_commit()}


def mb(kb_or_bytes: float, *, kb: bool = False) -> str:
    value = kb_or_bytes * 1024 if kb else kb_or_bytes
    return f"{value / 1e6:,.0f} MB"


def n(value: float) -> str:
    return f"{value:,.0f}"


BACKEND_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
TABLE_ORDER = ["contacts", "stage_entries", "segment_members", "stage_changes", "operations", "runs", "rejects",
               "funnelsync_meta", "alembic_version"]


def _in_lookup_thread(step: str) -> bool:
    return "known_contacts" in step


def _comparison(results: dict[str, Any]) -> list[str]:
    """The --compare variants beside the working tree, measured in the same run, interleaved."""
    plans = results["plans"]
    if not any(m["variant"] != "working tree" for m in plans):
        return []
    out = ["Beside it in the same run (interleaved, same state and source):", "",
           "| backend | code | planning wall (median) | min to max | CPU | peak RSS | median / working tree |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for backend in BACKEND_NAMES:
        mine = [m for m in plans if m["backend"] == backend]
        ours = next((m for m in mine if m["variant"] == "working tree"), None)
        for m in mine:
            ratio = f"{m['seconds'] / ours['seconds']:.2f}" if ours else ""
            out.append(f"| {BACKEND_NAMES[backend]} | {m['variant']} | {m['seconds']:.1f} s | "
                       f"{m['seconds_min']:.1f} to {m['seconds_max']:.1f} s | {m['cpu_seconds']:.1f} s | "
                       f"{mb(m['peak_rss_kb'], kb=True)} | {ratio} |")
    return [*out, ""]


def markdown(results: dict[str, Any]) -> str:
    count = results["contacts"]
    changed = results["changed"]
    m = results["machine"]
    out = [
        "## Planning a sync of 1,000,000 contacts",
        "",
        "`bench/plan_bench.py` times the planning phase of a sync (read the source, map, diff against "
        "the state in chunks, journal the writes: what `SyncEngine._run` does before it provisions) "
        "of N contacts of which 1 % changed, against a state that holds all N as a confirmed backfill "
        "left them, on SQLite and on PostgreSQL. See the script's docstring for how the state is built "
        "and checked.",
        "",
        "    .venv/bin/python bench/plan_bench.py [--contacts 1000000] [--out BENCHMARKS.md] [--json FILE] [--profile]",
        "    .venv/bin/python bench/plan_bench.py --quick     # smoke run, N = 20,000",
        "",
        "Targets: under 60 s and under 500 MB peak RSS at N = 1,000,000, on each backend.",
        "",
        MARK_START,
        f"Run: `bench/plan_bench.py {results['argv']}` on {m['date']}.",
        "",
        f"Machine: {m['cpu']}, {m['memory']} RAM, {m['os']}, {m['python']}; {m['packages']}; {m['postgres']} "
        "(the throwaway cluster of tests/postgres.py: fsync off, default shared_buffers); "
        f"commit {m['commit']}.",
        "",
        f"Source: a SQLite `usage` table of {n(count)} rows (12 columns); {n(changed)} rows "
        f"({changed / count:.0%}) changed since the backfill. Config: 8 properties (3 numbers, 2 enumerations, "
        "3 dates), a 3-stage funnel with `signup_column`, `demote_after_days` and an enrollment per stage, "
        "2 CEL segments (one with `days_since`, one with a bool property), batch size 100.",
        "",
        "| backend | planning wall (median) | min to max | CPU | rows/s | peak RSS | RSS before planning "
        "| to write | unchanged | journal batches | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    plans = [m for m in results["plans"] if m["variant"] == "working tree"]  # a --compare is for the console
    for m in plans:
        out.append(
            f"| {BACKEND_NAMES[m['backend']]} | {m['seconds']:.1f} s | "
            f"{m['seconds_min']:.1f} to {m['seconds_max']:.1f} s | {m['cpu_seconds']:.1f} s | "
            f"{n(m['rows_read'] / m['seconds'])} | {mb(m['peak_rss_kb'], kb=True)} | "
            f"{mb(m['rss_before_planning_kb'], kb=True)} | {n(m['to_write'])} | {n(m['unchanged'])} | "
            f"{m['journal_batches']} | {m['load'][0]:.1f} to {m['load'][1]:.1f} |")
    runs = plans[0]["runs"]
    out += [
        "",
        f"{runs} run(s) per backend, interleaved. planning wall / CPU: `state.recover` + `JournalSink` + "
        "`engine._plan` (`sink.finish` included), each run in a fresh process on a fresh copy of the built state "
        "(the copy flushed to disk first); peak RSS = the largest `ru_maxrss` of those processes at their end "
        "(imports and all; the processes are started by a small launcher, so they do not inherit the "
        "benchmark's own high-water mark, and their VmHWM agrees); RSS before planning = `ru_maxrss` once "
        "imports, config, state and source were opened; load avg = the machine's 1-minute load average "
        "before the runs (other work shares this 2-core machine: PostgreSQL's server, and whatever else "
        "runs). rows/s = source rows / median wall.",
        "",
        "Checks: " + "; ".join(c for c in results["checks"] if c.split(",")[0] in BACKEND_NAMES.values()) + ".",
        "",
        "Targets at N = " + n(count) + ": " + "; ".join(results["targets"]) + ".",
        "",
    ]
    out += _comparison(results)
    if results.get("splits"):
        keys = [k for k in results["splits"] if "|" not in k]
        steps = list(dict.fromkeys(step for split in results["splits"].values() for step in split if step != "total"))
        label = {k: BACKEND_NAMES[k.split("|")[0]] + (f" ({k.split('|')[1]})" if "|" in k else "") for k in keys}
        out += ["Where the time goes (one more run per backend with timers around the steps, no profiler):", "",
                "| step | " + " | ".join(label[k] for k in keys) + " |",
                "|---|" + "---:|" * len(keys)]
        for step in steps:
            out.append(f"| {step} | " + " | ".join(f"{results['splits'][k].get(step, 0):.1f} s" for k in keys) + " |")
        rest = {k: results["splits"][k]["total"] - sum(v for st, v in results["splits"][k].items()
                                                        if st != "total" and not _in_lookup_thread(st))
                for k in keys}
        out.append("| the planner's own loop and its waits for the look-up (the rest) | "
                   + " | ".join(f"{rest[k]:.1f} s" for k in keys) + " |")
        out.append("| **total** | " + " | ".join(f"**{results['splits'][k]['total']:.1f} s**" for k in keys) + " |")
        out += ["", "The state look-up of a chunk runs in a second thread while the chunk's rows are mapped: its "
                "time overlaps the others and is not part of the rest.", ""]
    if results.get("profile_summary"):
        out += ["cProfile of the planning (one more run per backend; the profiler roughly doubles the time), "
                "own time of the top functions:", ""]
        out += results["profile_summary"] + [""]
    out += [
        "## State size",
        "",
        f"The state of a portal of {n(count)} contacts, as the backfill left it (all written, every "
        "enrollment done, the backfill's journal and stage history still held) and after retention "
        "pruned that journal and history (`state.prune`: on SQLite the file as funnelsync leaves it, "
        "the freed pages handed back; PostgreSQL keeps freed space for reuse, so its figure is after "
        "a VACUUM FULL). A done write operation keeps no payload; while the backfill's writes were "
        f"planned and not yet done, their payloads held {mb(results['build'].get('journaled_bytes', 0))} "
        "more, freed as each batch was confirmed. Building the state took "
        f"{results['build']['seconds']:.0f} s for both backends at once.",
        "",
        "| backend | after the backfill | per contact | after retention | per contact |",
        "|---|---:|---:|---:|---:|",
    ]
    for backend, size in results["sizes"].items():
        out.append(f"| {BACKEND_NAMES[backend]} | {mb(size['backfill']['bytes'])} | "
                   f"{n(size['backfill']['bytes'] / count)} B | {mb(size['retained']['bytes'])} | "
                   f"{n(size['retained']['bytes'] / count)} B |")
    out += ["", "Per table (table + its indexes + TOAST), after the backfill -> after retention:", "",
            "| table | rows | " + " | ".join(BACKEND_NAMES[b] for b in results["sizes"]) + " |",
            "|---|---:|" + "---:|" * len(results["sizes"])]
    rows_before = results["rows_backfill"]
    rows_after = results["rows_retained"]
    for table in TABLE_ORDER:
        cells = []
        for size in results["sizes"].values():
            before = size["backfill"]["tables"].get(table, 0)
            after = size["retained"]["tables"].get(table, 0)
            cells.append(f"{mb(before)} -> {mb(after)}")
        rows = f"{n(rows_before.get(table, 0))} -> {n(rows_after.get(table, 0))}" if table in rows_before else ""
        out.append(f"| {table} | {rows} | " + " | ".join(cells) + " |")
    sample = results["sample"]
    out += [
        "",
        f"PostgreSQL's figure is `pg_database_size` (it includes the ~7.5 MB of an empty database's "
        f"catalog); SQLite's is the file's size. The builder inserts the rows in the order a real run "
        f"does, with HubSpot-like 12-digit record ids. Sample check: a real sync of the first "
        f"{n(sample['contacts'])} developers against the sandbox and the builder on the same developers "
        f"left {'identical tables' if not sample['problems'] else 'DIFFERENT tables: ' + '; '.join(sample['problems'])}"
        " "
        f"({', '.join(f'{t} {c}' for t, c in sample['rows'].items() if c)} rows).",
        MARK_END,
    ]
    return "\n".join(out)


def write_out(path: Path, body: str) -> None:
    """Replace this benchmark's sections (from its first heading to its end mark) or append them;
    other sections of the file are left as they are."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    heading = body.split("\n", 1)[0]
    if heading in text and MARK_END in text:
        head, _, rest = text.partition(heading)
        _, _, tail = rest.partition(MARK_END)
        text = head + body + tail
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import statistics

    out = []
    for key in dict.fromkeys((r["backend"], r["variant"]) for r in runs):
        mine = [r for r in runs if (r["backend"], r["variant"]) == key]
        seconds = [r["seconds"] for r in mine]
        out.append({
            "backend": key[0], "variant": key[1], "runs": len(mine),
            "seconds": statistics.median(seconds), "seconds_min": min(seconds), "seconds_max": max(seconds),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in mine),
            "peak_rss_kb": max(r["peak_rss_kb"] for r in mine),
            "rss_before_planning_kb": max(r["rss_before_planning_kb"] for r in mine),
            "rows_read": mine[0]["rows_read"], "to_write": mine[0]["to_write"], "unchanged": mine[0]["unchanged"],
            "journal_batches": mine[0]["journal_batches"],
            "process_seconds": statistics.median(r["process_seconds"] for r in mine),
            "load": (min(r["loadavg_before"] for r in mine), max(r["loadavg_before"] for r in mine)),
        })
    return out


def _short(where: str) -> str:
    import re

    where = where.replace(str(REPO) + "/", "")
    where = re.sub(r"^.*/site-packages/", "", where)
    return re.sub(r"^.*/lib/python3\.\d+/", "", where)


def profile_summary(profiles: dict[str, str], top: int = 12) -> list[str]:
    lines: list[str] = []
    for backend, text in profiles.items():
        body = text.split("Ordered by: internal time", 1)[-1].split("Ordered by", 1)[0]
        entries = []
        for line in body.splitlines():
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[1].replace(".", "").isdigit():
                entries.append((float(parts[1]), parts[5]))
        total_line = next((ln for ln in text.splitlines() if "function calls" in ln), "")
        lines.append(f"- {BACKEND_NAMES[backend]} ({total_line.strip()}):")
        for tottime, where in entries[:top]:
            lines.append(f"  - {tottime:.1f} s `{_short(where.strip())}`")
    return lines


# -- main ---------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: N = {QUICK_CONTACTS:,}")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--sample", type=int, default=500, help="developers in the builder's check")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per backend (the median is reported)")
    parser.add_argument("--profile", action="store_true",
                        help="also time the planning's steps and cProfile it (extra runs, not in the timings)")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="also measure the funnelsync package in DIR (e.g. a patched copy), interleaved")
    parser.add_argument("--compare-label", help="what to call --compare in the results")
    parser.add_argument("--out", type=Path, help="write the results into this Markdown file (BENCHMARKS.md)")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--keep", type=Path, help="build in this directory and keep it")
    parser.add_argument("--from-json", type=Path, help="only render the results of an earlier --json (with --out)")
    parser.add_argument("--child-plan", help=argparse.SUPPRESS)
    parser.add_argument("--launcher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.launcher:
        return launcher_loop()
    if args.child_plan:
        print(json.dumps(child_plan(json.loads(Path(args.child_plan).read_text()))))
        return 0
    if args.from_json:
        body = markdown(json.loads(args.from_json.read_text()))
        print(body)
        if args.out:
            write_out(args.out, body)
        return 0
    count = QUICK_CONTACTS if args.quick else args.contacts
    sample = min(args.sample, 300) if args.quick else args.sample
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    argv = " ".join(sys.argv[1:])
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="plan-bench-", dir=args.keep))
    else:
        root = Path(tempfile.mkdtemp(prefix="plan-bench-"))
    cluster = None
    launcher = Launcher()  # first, while this process is small
    try:
        print(f"work directory {root}", flush=True)
        results: dict[str, Any] = {"contacts": count, "argv": argv, "machine": machine()}
        print(f"sample check: a real sync of {sample:,} developers against the sandbox vs the builder",
              flush=True)
        (root / "sample").mkdir()
        results["sample"] = check = sample_check(root / "sample", sample)
        print(f"  rows {check['rows']}; {'identical' if not check['problems'] else check['problems']}", flush=True)
        urls: dict[str, str] = {}
        if "sqlite" in backends:
            urls["sqlite"] = f"sqlite:///{root / 'state.db'}"
        if "postgresql" in backends:
            from tests.postgres import PostgresCluster

            cluster = PostgresCluster().start()
            urls["postgresql"] = cluster.new_database(PG_STATE_DB)
            print(f"PostgreSQL {cluster.server_version_num} on port {cluster.port}", flush=True)
        source = root / "source.db"
        started = time.monotonic()
        build_source(source, count)
        print(f"source: {count:,} rows in {time.monotonic() - started:.0f} s", flush=True)
        config = root / "config.toml"
        write_config(config, source=source, state_url=next(iter(urls.values())))
        print("building the state of the backfill ...", flush=True)
        results["build"] = build = build_state(config, list(urls.values()), root / "empty.db")
        print(f"  {build['seconds']:.0f} s: {build['rows']}", flush=True)
        results["rows_backfill"] = row_counts(next(iter(urls.values())))
        sizes: dict[str, dict[str, Any]] = {}
        for backend, url in urls.items():
            sizes[backend] = {"backfill": sqlite_size(root / "state.db") if backend == "sqlite" else postgres_size(url)}
            print(f"  {backend} state: {sizes[backend]['backfill']['bytes'] / 1e6:,.0f} MB", flush=True)
        changed = change_usage(source, CHANGED_FRACTION)
        results["changed"] = changed
        print(f"changed {changed:,} developers' usage", flush=True)

        def pristine(backend: str, name: str) -> str:
            if backend == "sqlite":
                copy = root / f"{name}.db"
                shutil.copyfile(root / "state.db", copy)
                url = f"sqlite:///{copy}"
            else:
                assert cluster is not None
                with cluster._admin() as admin:
                    admin.execute(f"CREATE DATABASE {name} TEMPLATE {PG_STATE_DB} STRATEGY FILE_COPY")
                url = cluster.url(name)
            os.sync()  # the copy's writeback is not the measured run's I/O
            return url

        def discard(backend: str, name: str) -> None:
            if backend == "sqlite":
                for path in root.glob(f"{name}.db*"):
                    path.unlink()
            else:
                assert cluster is not None
                cluster.drop_database(name)

        variants: list[tuple[str, Path | None]] = [("working tree", None)]
        if args.compare:
            variants.append((args.compare_label or str(args.compare), args.compare.resolve()))
        runs: list[dict[str, Any]] = []
        checks: list[str] = []
        expected_batches = math.ceil(changed / 100)
        for repeat in range(args.repeat):
            for backend in urls:
                for variant, code in variants:
                    name = f"plan_{backend}_{len(runs)}"
                    url = pristine(backend, name)
                    load = os.getloadavg()[0]
                    r = run_child(launcher, {"config": str(config), "state_url": url}, root, name, code)
                    discard(backend, name)
                    r.update(variant=variant, repeat=repeat, loadavg_before=load, loadavg_after=os.getloadavg()[0])
                    runs.append(r)
                    print(f"planning on {backend} ({variant}, run {repeat + 1}/{args.repeat}, load {load:.1f}): "
                          f"{r['seconds']:.1f} s, CPU {r['cpu_seconds']:.1f} s, peak RSS "
                          f"{r['peak_rss_kb'] / 1024:,.0f} MiB (before planning "
                          f"{r['rss_before_planning_kb'] / 1024:,.0f} MiB, VmHWM {r['vm_hwm_kb'] / 1024:,.0f} MiB); "
                          f"to_write {r['to_write']:,}, unchanged "
                          f"{r['unchanged']:,}, journal {r['journal_batches']} batches {r['journal_batch_sizes']}, "
                          f"enrollments {r['enrollments_planned']}", flush=True)
                    ok = (r["to_write"] == changed and r["unchanged"] == count - changed and r["refused"] == 0
                          and r["journal_batches"] == expected_batches and r["journal_contacts"] == changed)
                    r["ok"] = ok
                    if not ok:
                        print("  CHECK FAILED", flush=True)
        for backend in urls:
            for variant, _code in variants:
                mine = [r for r in runs if r["backend"] == backend and r["variant"] == variant]
                r = mine[0]
                checks.append(
                    f"{BACKEND_NAMES[backend]}{'' if variant == 'working tree' else f' ({variant})'}, "
                    f"{len(mine)} run(s): to_write {n(r['to_write'])} (expected {n(changed)}), unchanged "
                    f"{n(r['unchanged'])} (expected {n(count - changed)}), {r['journal_batches']} write batches "
                    f"journaled (expected {expected_batches}) holding {n(r['journal_contacts'])} contacts, stage "
                    f"moves {r['stage_moves']}, segment moves {r['segment_moves']} -> "
                    f"{'ok' if all(x['ok'] for x in mine) else 'FAILED'}")
        splits: dict[str, dict[str, float]] = {}
        profiles: dict[str, str] = {}
        if args.profile:
            for backend in urls:
                for variant, code in variants:
                    name = f"split_{backend}"
                    url = pristine(backend, name)
                    r = run_child(launcher, {"config": str(config), "state_url": url, "split": True}, root, name, code)
                    discard(backend, name)
                    key = backend if variant == "working tree" else f"{backend}|{variant}"
                    splits[key] = {"total": round(r["seconds"], 2), **r["split"]}
                    print(f"time split, {backend} ({variant}): {splits[key]}", flush=True)
                name = f"profile_{backend}"
                url = pristine(backend, name)
                r = run_child(launcher, {"config": str(config), "state_url": url, "profile": True}, root, name)
                discard(backend, name)
                profiles[backend] = r["profile"]
                print(r["profile"], flush=True)
        results["runs"] = runs
        results["plans"] = summaries = summarize(runs)
        results["checks"] = checks
        results["targets"] = [
            f"{BACKEND_NAMES[m['backend']]}: under 60 s {'met' if m['seconds'] < 60 else 'MISSED'} "
            f"({m['seconds']:.1f} s, median of {m['runs']}), under 500 MB "
            f"{'met' if m['peak_rss_kb'] * 1024 < 500e6 else 'MISSED'} ({mb(m['peak_rss_kb'], kb=True)})"
            for m in summaries if m["variant"] == "working tree"]
        if splits:
            results["splits"] = splits
        if profiles:
            results["profiles"] = profiles
            results["profile_summary"] = profile_summary(profiles)
        print("pruning the backfill's journal and history (retention) ...", flush=True)
        for backend, url in urls.items():
            results.setdefault("pruned", {})[backend] = prune_retention(url)
            sizes[backend]["retained"] = (sqlite_size(root / "state.db") if backend == "sqlite"
                                          else postgres_size(url))
            print(f"  {backend} state: {sizes[backend]['retained']['bytes'] / 1e6:,.0f} MB", flush=True)
        results["rows_retained"] = row_counts(next(iter(urls.values())))
        results["sizes"] = sizes
        body = markdown(results)
        print(body)
        if args.out:
            write_out(args.out, body)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
        failed = bool(check["problems"]) or not all(r["ok"] for r in runs)
        return 1 if failed else 0
    finally:
        launcher.close()
        if cluster is not None:
            cluster.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
