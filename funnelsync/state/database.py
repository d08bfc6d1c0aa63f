"""Opening the state database: refuse what is not ours, migrate what is, and the locks.

Migrations (Alembic, versioned in `migrations/`) run at start under a lock, so two processes
starting together on a new database do not both create it.

Every failure of the state database (a full disk, a read-only state, a lost connection) leaves
the engine as a StateError naming the state and what went wrong, or StateLocked when another
process holds a SQLite state too long (see `_state_failure`); only a violated constraint or a
malformed statement, which are bugs, keep SQLAlchemy's own exceptions.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from filelock import FileLock, Timeout
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DataError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    NotSupportedError,
    ProgrammingError,
)

from funnelsync.errors import ConfigError, ConfigProblem, FunnelsyncError, StateError, StateLocked

MIGRATIONS = Path(__file__).with_name("migrations")
OUR_TABLES = {"funnelsync_meta"}
# PostgreSQL advisory lock keys ("fnl" + a number): one per purpose
LOCK_KEYS = {"sync": 0x666E6C01, "leader": 0x666E6C02, "migrate": 0x666E6C03}
# How long a SQLite connection waits for another's transaction: every write happens under the
# sync or the migration lock, so the wait is for one transaction (a batch's results), never a run.
BUSY_TIMEOUT_SECONDS = 30.0
# Tables, partitioned tables, views, materialized views and foreign tables: what a database
# that is someone else's holds, in whichever schema.
_PG_RELATIONS = """
SELECT CASE WHEN n.nspname = current_schema() THEN c.relname ELSE n.nspname || '.' || c.relname END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname <> 'information_schema' AND left(n.nspname, 3) <> 'pg_'
"""
_SQLITE_RELATIONS = "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND substr(name, 1, 7) <> 'sqlite_'"


def create_engine(url: str) -> sa.Engine:
    try:
        engine = sa.create_engine(url, **_engine_options(url))
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError([ConfigProblem("state.url", f"not a usable database URL: {exc}")]) from None
    folder = _missing_folder(engine)
    if folder is not None:
        engine.dispose()
        raise ConfigError([ConfigProblem("state.url", _no_folder(folder))])
    if engine.dialect.name == "sqlite":
        _begin_explicitly(engine)
    sa.event.listen(engine, "handle_error", _raise_state_failure)
    return engine


def _missing_folder(engine: sa.Engine) -> Path | None:
    """The folder a SQLite state would be in, when there is no such folder: funnelsync creates
    the state file and its lock files, never the folders above them."""
    path = _sqlite_file(engine)
    return path.parent if path is not None and not path.parent.is_dir() else None


def _no_folder(folder: Path) -> str:
    return (f"there is no folder {folder} for the SQLite state: create it, or point state.url at a file "
            "in a folder that exists")


def check_state(url: str) -> str | None:
    """What a sync needs of `state.url`, checked without creating or changing anything (for
    `validate`): a usable URL; for SQLite a folder that exists and may be written, and a file that
    is funnelsync's if there is one; for a server, a database that answers and is funnelsync's or
    empty. Raises ConfigError, or StateError for a database that cannot be opened or is not ours.
    Returns where the state is (password hidden) when there is none yet, else None."""
    engine = create_engine(url)
    try:
        path = _sqlite_file(engine)
        if path is not None and not path.exists():
            if not os.access(path.parent, os.W_OK | os.X_OK):
                raise ConfigError([ConfigProblem(
                    "state.url", f"funnelsync may not create the SQLite state {path.name} in {path.parent}")])
            return where(engine)
        relations = _relations(engine)
        _refuse_foreign(engine, relations)
        if relations:
            with engine.connect() as connection:
                current = MigrationContext.configure(connection).get_current_revision()
                if current is not None and not _known_revision(connection, current):
                    raise StateError(f"the state at {where(engine)} was written by a newer funnelsync "
                                     f"(schema {current}); this one knows up to {head_revision()}")
        return None if relations else where(engine)
    finally:
        engine.dispose()


def _engine_options(url: str) -> dict[str, Any]:
    options = _in_memory(url)
    if not options and sa.make_url(url).get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": BUSY_TIMEOUT_SECONDS}
    return options


def _in_memory(url: str) -> dict[str, Any]:
    """An in-memory SQLite state is one connection that every thread shares (the planner looks
    the state up from a second thread); SQLAlchemy's default gives each thread its own, empty,
    database."""
    with suppress(ArgumentError):
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            return {"poolclass": sa.pool.StaticPool, "connect_args": {"check_same_thread": False}}
    return {}


def _begin_explicitly(engine: sa.Engine) -> None:
    """Python's sqlite3 commits before DDL on its own; take the transactions over, so that a
    migration killed half-way leaves nothing behind (SQLite's DDL is transactional)."""

    @sa.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None
        # Only for a file still empty: the space the journal frees can then be handed back to
        # the filesystem (see `release_free_space`). On a database that exists, setting it is a
        # write, which would fail on a read-only state and take the write lock at every connect.
        if dbapi_connection.execute("PRAGMA page_count").fetchone()[0] == 0:
            dbapi_connection.execute("PRAGMA auto_vacuum = INCREMENTAL")

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        # A transaction that reads and then writes cannot wait for another writer (SQLite
        # answers "database is locked" at once, to avoid a deadlock): one known to write, the
        # migration, takes the write lock from its start, and so waits its turn.
        immediate = connection.get_execution_options().get("sqlite_begin_immediate")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# -- SQL that differs by backend -----------------------------------------------------------------

def insert_many(connection: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (each with the same keys; a column left out takes its default) in one
    executemany of the driver's own.

    SQLAlchemy's executemany turns every value of every row through the column's type on its
    own; here each type's conversion runs once per distinct value, as a batch's rows share their
    times and kinds. Recording a backfill's answers took a third less CPU for it."""
    if rows:
        statement = _driver_insert(table, frozenset(rows[0]), connection.dialect)
        connection.exec_driver_sql(statement.sql, statement.parameters(rows))


@dataclass(frozen=True)
class _DriverInsert:
    sql: str
    names: tuple[str, ...]  # in the order of the statement's parameters
    positional: bool
    defaults: dict[str, Any]  # of the columns the rows leave out
    conversions: Mapping[str, Callable[[Any], Any]]  # of the columns whose type converts values

    def parameters(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """Each row's values in the statement's order: tuples, or dicts for a driver that names them."""
        columns = [self._column(name, rows) for name in self.names]
        if self.positional:
            return list(zip(*columns, strict=True))
        return [dict(zip(self.names, values, strict=True)) for values in zip(*columns, strict=True)]

    def _column(self, name: str, rows: Sequence[dict[str, Any]]) -> list[Any]:
        given = [row[name] for row in rows] if name not in self.defaults else [self.defaults[name]] * len(rows)
        convert = self.conversions.get(name)
        if convert is None:
            return given
        converted = {value: convert(value) for value in set(given) if value is not None}
        return [None if value is None else converted[value] for value in given]


@functools.lru_cache(maxsize=64)  # a few tables and key sets, per engine's dialect
def _driver_insert(table: sa.Table, given: frozenset[str], dialect: sa.Dialect) -> _DriverInsert:
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.key in given or (column.primary_key and column.autoincrement is not False
                                   and column.default is None):
            continue
        default = column.default
        if not isinstance(default, sa.ColumnDefault) or not default.is_scalar:
            raise ValueError(f"{table.name}.{column.key} needs a value: it has no plain default")
        defaults[column.key] = default.arg
    names = [column.key for column in table.columns if column.key in given or column.key in defaults]
    statement = sa.insert(table).inline().values({name: sa.bindparam(name) for name in names})
    compiled = statement.compile(dialect=dialect)
    conversions = {}
    for name in names:
        convert = table.columns[name].type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None:
            conversions[name] = convert
    order = tuple(compiled.positiontup or ()) if compiled.positional else tuple(names)
    return _DriverInsert(str(compiled), order, compiled.positional, defaults, conversions)


def in_values(engine: sa.Engine, column: sa.ColumnElement[Any], values: Sequence[object]) -> sa.ColumnElement[bool]:
    """`column IN values` with the values as one bind parameter (a PostgreSQL array, a JSON
    array on SQLite), so every chunk runs the same statement: psycopg re-parses a statement of
    over 50 parameters on every call, and SQLite caps a statement's parameters."""
    if engine.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    array: sa.BindParameter[str] = sa.bindparam(None, json.dumps(list(values)))
    each: sa.Select[Any] = sa.select(sa.column("value")).select_from(sa.func.json_each(array))
    return column.in_(each)


def json_object_text(engine: sa.Engine, key: Any, value: Any) -> sa.ColumnElement[str]:
    """The aggregate of (key, value) rows as the text of one JSON object."""
    if engine.dialect.name == "postgresql":
        return sa.cast(sa.func.json_object_agg(key, value), sa.Text)
    return sa.func.json_group_object(key, value, type_=sa.Text)


def joined_text(engine: sa.Engine, value: Any, separator: str) -> sa.ColumnElement[str]:
    """The aggregate of rows' values as one text, joined by `separator`."""
    if engine.dialect.name == "postgresql":
        return sa.func.string_agg(value, separator, type_=sa.Text)
    return sa.func.group_concat(value, separator, type_=sa.Text)


def release_free_space(engine: sa.Engine) -> None:
    """Give the pages a prune freed back to the filesystem (SQLite; PostgreSQL's autovacuum
    keeps its free space for reuse)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        # sqlite3's execute() steps a statement once, and this one frees a page a step
        connection.connection.driver_connection.executescript("PRAGMA incremental_vacuum")  # type: ignore[union-attr]


def where(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _alembic_config(connection: sa.Connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _relations(engine: sa.Engine) -> set[str]:
    """The tables and views the database holds, in every schema but the server's own (those
    outside PostgreSQL's current schema named with theirs)."""
    if engine.dialect.name not in ("postgresql", "sqlite"):
        inspector = sa.inspect(engine)
        return {*inspector.get_table_names(), *inspector.get_view_names()}
    query = _PG_RELATIONS if engine.dialect.name == "postgresql" else _SQLITE_RELATIONS
    with engine.connect() as connection:
        return set(connection.exec_driver_sql(query).scalars())


def _refuse_foreign(engine: sa.Engine, relations: set[str]) -> None:
    if relations and not relations & OUR_TABLES:
        raise StateError(
            f"the database at {where(engine)} holds tables or views that are not funnelsync's "
            f"({', '.join(sorted(relations)[:5])}); refusing to write to it: point state.url at a "
            "new file or an empty database"
        )


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision; refuse a foreign or newer database."""
    # The check under the lock too: a database another funnelsync is creating is not taken
    # for a foreign one, and nothing another funnelsync does comes between check and migration.
    with _migration_lock(engine):
        _refuse_foreign(engine, _relations(engine))
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            known = current is None or _known_revision(connection, current)
        head = head_revision()
        if current == head:
            return
        if not known:
            raise StateError(
                f"the state at {where(engine)} was written by a newer funnelsync (schema "
                f"{current}); this one knows up to {head}"
            )
        with engine.connect().execution_options(sqlite_begin_immediate=True) as connection:
            command.upgrade(_alembic_config(connection), "head")
            connection.commit()


def _known_revision(connection: sa.Connection, revision: str) -> bool:
    script = ScriptDirectory.from_config(_alembic_config(connection))
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


@contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[None]:
    lock = StateLock(engine, "migrate")
    lock.acquire(wait=True)
    try:
        yield
    finally:
        lock.release()


# -- failures of the state database --------------------------------------------------------------

# A violated constraint or a malformed statement is a bug: its traceback is what a fix needs.
_BUGS = (IntegrityError, ProgrammingError, DataError, NotSupportedError)
_DISK_FULL = "the disk is full"
_READ_ONLY = "the state is read-only"
_LOST = "the connection to the state database was lost"
_IO_ERROR = "the disk failed to read or write the state"
_WHAT_NOW = {
    _DISK_FULL: "nothing was half-written: once there is room, the next run carries on",
    _READ_ONLY: "point state.url at a database funnelsync may write, or let this user write it",
    _LOST: "nothing was half-written: the next run carries on",
    _IO_ERROR: "nothing was half-written: check the disk, then the next run carries on",
}
_SQLITE_CODES = {  # by primary result code
    sqlite3.SQLITE_FULL: _DISK_FULL,  # also what `PRAGMA max_page_count` gives
    sqlite3.SQLITE_READONLY: _READ_ONLY,
    sqlite3.SQLITE_IOERR: _IO_ERROR,
}
_PG_STATES = {
    "53100": _DISK_FULL,
    "25006": _READ_ONLY,  # read_only_sql_transaction: a read-only database, role or replica
    "42501": _READ_ONLY,  # insufficient_privilege: a role that may only read
    "57P01": _LOST,  # admin_shutdown: pg_terminate_backend, a server shutting down
    "57P02": _LOST,  # crash_shutdown
}


def _raise_state_failure(context: ExceptionContext) -> None:
    """The engine's `handle_error` hook: what it raises takes the place of the driver's error."""
    failure = _state_failure(context)
    if failure is not None:
        raise failure


def _state_failure(context: ExceptionContext) -> FunnelsyncError | None:
    error, engine = context.original_exception, context.engine
    if engine is None or not isinstance(context.sqlalchemy_exception, DBAPIError):
        return None
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    connecting = context.connection is None
    if engine.dialect.name == "sqlite":
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return StateLocked(f"another process holds the state at {where(engine)} ({text})")
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            return _unreadable(engine, text)
        if code == sqlite3.SQLITE_ERROR:  # SQLite's answer to a malformed statement, a bug
            return None
        what = _SQLITE_CODES.get(code)
        connecting = connecting or code == sqlite3.SQLITE_CANTOPEN
    else:
        state = getattr(error, "sqlstate", None) or ""
        what = _PG_STATES.get(state)
        if what is None and not connecting and (context.is_disconnect or state.startswith("08")):
            what = _LOST
    if what is not None:
        return StateError(f"{what} ({where(engine)}: {text}); {_WHAT_NOW[what]}")
    if connecting:
        return StateError(f"cannot open the state database at {where(engine)}: {text}")
    if isinstance(context.sqlalchemy_exception, _BUGS):
        return None
    return StateError(f"the state database at {where(engine)} failed: {text}")


def _unreadable(engine: sa.Engine, reason: str) -> StateError:
    return StateError(
        f"the state database at {where(engine)} is not readable ({reason}); funnelsync will "
        "not touch it: point state.url at a funnelsync state database or at a new file"
    )


class StateLock:
    """A lock over the state for one purpose, released by the OS if the holder dies:
    a PostgreSQL advisory lock on its own autocommit connection, or a lock file beside SQLite.

    Whichever thread takes it, any thread may check or release it: the daemon's ticks run on
    APScheduler's worker threads, a different one each time."""

    def __init__(self, engine: sa.Engine, purpose: str) -> None:
        self.engine = engine
        self.purpose = purpose
        self._connection: sa.Connection | None = None
        self._file: FileLock | None = None
        path = _sqlite_file(engine)
        if path is not None:
            self._file = FileLock(str(path.with_name(f"{path.name}.{purpose}.lock")), thread_local=False)

    def acquire(self, *, wait: bool = False) -> bool:
        """Take the lock, or say it is another's (or wait for it); True at once if already held."""
        if self._file is not None:
            if self._file.is_locked:
                return True
            self._check_lock_file()
            try:
                self._file.acquire(timeout=-1 if wait else 0)
            except Timeout:
                return False
            return True
        if self.engine.dialect.name != "postgresql":
            return True
        if self._connection is not None:
            return True
        # autocommit: a session-level lock must not keep a transaction open for hours
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            function = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
            result = connection.execute(sa.text(f"SELECT {function}(:key)"), {"key": LOCK_KEYS[self.purpose]})
            taken = bool(wait or result.scalar())
        except BaseException:
            connection.close()
            raise
        if taken:
            self._connection = connection
            return True
        connection.close()
        return False

    def _check_lock_file(self) -> None:
        """filelock takes a lock file it cannot create for one another process holds (and would
        wait for it forever), and creates missing directories: neither, for a state's file."""
        assert self._file is not None
        try:
            os.close(os.open(self._file.lock_file, os.O_WRONLY | os.O_CREAT, 0o644))
        except OSError as exc:
            raise StateError(f"cannot open the state database at {where(self.engine)}: cannot create its "
                             f"lock file {self._file.lock_file} ({exc.strerror or exc})") from None

    def still_held(self) -> bool:
        """False when the server dropped the connection that held the lock."""
        if self._connection is None:
            return self._file is None or self._file.is_locked
        try:
            query = sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND pid = pg_backend_pid() AND objid = :key")
            return bool(self._connection.execute(query, {"key": LOCK_KEYS[self.purpose]}).scalar())
        except (DatabaseError, StateError):
            return False

    def release(self) -> None:
        if self._file is not None and self._file.is_locked:
            self._file.release(force=True)
        if self._connection is not None:
            with suppress(DatabaseError, StateError):  # the connection is gone, and the lock with it
                self._connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"),
                                         {"key": LOCK_KEYS[self.purpose]})
            self._connection.close()
            self._connection = None

    @contextmanager
    def held(self, message: str) -> Iterator[None]:
        if not self.acquire():
            raise StateLocked(message)
        try:
            yield
        finally:
            self.release()


def _sqlite_file(engine: sa.Engine) -> Path | None:
    """The file of a SQLite state, also when named by a `file:` URI (`?uri=true`); None in memory."""
    url = engine.url
    if engine.dialect.name != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    database = str(url.database)
    if str(url.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        if url.query.get("mode") == "memory":
            return None
        database = unquote(urlsplit(database).path)
        if database in ("", ":memory:"):
            return None
    return Path(database)
