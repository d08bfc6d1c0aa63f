"""Opening the state database: refuse what is not ours, migrate what is, and the locks.

Migrations (Alembic, versioned in `migrations/`) run at start under a lock, so two processes
starting together on a new database do not both create it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from filelock import FileLock, Timeout
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError

from funnelsync.errors import ConfigError, ConfigProblem, StateError, StateLocked

MIGRATIONS = Path(__file__).with_name("migrations")
OUR_TABLES = {"funnelsync_meta"}
# PostgreSQL advisory lock keys ("fnl" + a number): one per purpose
LOCK_KEYS = {"sync": 0x666E6C01, "leader": 0x666E6C02, "migrate": 0x666E6C03}


def create_engine(url: str) -> sa.Engine:
    try:
        engine = sa.create_engine(url, **_in_memory(url))
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError([ConfigProblem("state.url", f"not a usable database URL: {exc}")]) from None
    if engine.dialect.name == "sqlite":
        _begin_explicitly(engine)
    return engine


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
        # Takes effect when the file is created (a no-op on an existing one): the space the
        # journal frees can then be handed back to the filesystem (see `release_free_space`).
        dbapi_connection.execute("PRAGMA auto_vacuum = INCREMENTAL")

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN")


# -- SQL that differs by backend -----------------------------------------------------------------

def in_values(engine: sa.Engine, column: sa.ColumnElement[Any], values: Sequence[object]) -> sa.ColumnElement[bool]:
    """`column IN values` with the values as one bind parameter (a PostgreSQL array, a JSON
    array on SQLite), so every chunk runs the same statement: psycopg re-parses a statement of
    over 50 parameters on every call, and SQLite caps a statement's parameters."""
    if engine.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    each = sa.select(sa.column("value")).select_from(sa.func.json_each(sa.bindparam(None, json.dumps(list(values)))))
    return column.in_(each)


def json_object_text(engine: sa.Engine, key: sa.ColumnElement[Any],
                     value: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """The aggregate of (key, value) rows as the text of one JSON object."""
    if engine.dialect.name == "postgresql":
        return sa.cast(sa.func.json_object_agg(key, value), sa.Text)
    return sa.func.json_group_object(key, value, type_=sa.Text)


def joined_text(engine: sa.Engine, value: sa.ColumnElement[Any], separator: str) -> sa.ColumnElement[str]:
    """The aggregate of rows' values as one text, joined by `separator`."""
    name = "string_agg" if engine.dialect.name == "postgresql" else "group_concat"
    return getattr(sa.func, name)(value, separator, type_=sa.Text)


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


def _tables(engine: sa.Engine) -> set[str]:
    try:
        return set(sa.inspect(engine).get_table_names())
    except OperationalError as exc:
        if "file is not a database" in str(exc.orig) or "file is encrypted" in str(exc.orig):
            raise _unreadable(engine, exc) from None
        raise StateError(f"cannot open the state database at {where(engine)}: {exc.orig}") from None
    except DatabaseError as exc:
        raise _unreadable(engine, exc) from None


def _unreadable(engine: sa.Engine, exc: DatabaseError) -> StateError:
    return StateError(
        f"the state database at {where(engine)} is not readable ({exc.orig}); funnelsync will "
        "not touch it: point state.url at a funnelsync state database or at a new file"
    )


def _refuse_foreign(engine: sa.Engine, tables: set[str]) -> None:
    if tables and not tables & OUR_TABLES:
        raise StateError(
            f"the database at {where(engine)} holds tables that are not funnelsync's "
            f"({', '.join(sorted(tables)[:5])}); refusing to write to it: point state.url at a "
            "new file or an empty database"
        )


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision; refuse a foreign or newer database."""
    _refuse_foreign(engine, _tables(engine))
    with _migration_lock(engine), engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        head = head_revision()
        if current == head:
            return
        if current is not None and not _known_revision(connection, current):
            raise StateError(
                f"the state at {where(engine)} was written by a newer funnelsync (schema "
                f"{current}); this one knows up to {head}"
            )
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


class StateLock:
    """A lock over the state for one purpose, released by the OS if the holder dies:
    a PostgreSQL advisory lock on its own autocommit connection, or a lock file beside SQLite."""

    def __init__(self, engine: sa.Engine, purpose: str) -> None:
        self.engine = engine
        self.purpose = purpose
        self._connection: sa.Connection | None = None
        self._file: FileLock | None = None
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            path = Path(database)
            self._file = FileLock(str(path.with_name(f"{path.name}.{purpose}.lock")))

    def acquire(self, *, wait: bool = False) -> bool:
        if self._file is not None:
            try:
                self._file.acquire(timeout=-1 if wait else 0)
            except Timeout:
                return False
            return True
        if self.engine.dialect.name != "postgresql":
            return True
        # autocommit: a session-level lock must not keep a transaction open for hours
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        function = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
        result = connection.execute(sa.text(f"SELECT {function}(:key)"), {"key": LOCK_KEYS[self.purpose]})
        if wait or result.scalar():
            self._connection = connection
            return True
        connection.close()
        return False

    def still_held(self) -> bool:
        """False when the server dropped the connection that held the lock."""
        if self._connection is None:
            return self._file is None or self._file.is_locked
        try:
            query = sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND pid = pg_backend_pid() AND objid = :key")
            return bool(self._connection.execute(query, {"key": LOCK_KEYS[self.purpose]}).scalar())
        except DatabaseError:
            return False

    def release(self) -> None:
        if self._file is not None and self._file.is_locked:
            self._file.release()
        if self._connection is not None:
            with suppress(DatabaseError):  # the connection is gone, and the lock with it
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
