"""The SQL source: any SQLAlchemy URL and a query that returns one row per contact.

The source is only ever read. A SQLite file is opened read-only (`mode=ro`, `query_only`, and an
authorizer that lets a statement only read); on PostgreSQL the query runs in a read-only
transaction. On every database the query must return rows, and its transaction is rolled back,
never committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from funnelsync.connectors.source import Row, Source, SourceRows
from funnelsync.connectors.sql_settings import SqlSource
from funnelsync.errors import ConfigError, ConfigProblem, FatalError

_FETCH = 1000

_NOT_A_QUERY = (
    "the source query must be a SELECT that returns one row per contact: it returns no rows (it is a "
    "statement such as CREATE, DROP, DELETE, ATTACH or PRAGMA), and funnelsync only reads the source"
)
_WRITES = (
    "the source query must be a SELECT that only reads: it tries to change the source database, "
    "which funnelsync opens read-only ({detail})"
)

# What a SQLite statement may do; anything else (writing, DDL, ATTACH, PRAGMA) is refused before
# it runs. Transactions are allowed because closing a connection may roll one back.
_SQLITE_READING = frozenset({
    sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE,
    sqlite3.SQLITE_TRANSACTION,
})
_PG_READ_ONLY_TRANSACTION = "25006"


def _redacted(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


class _SqliteGuard:
    """Lets a SQLite statement only read, and remembers refusing one: SQLite reports a refusal
    under several error codes, depending on where in the statement it comes."""

    def __init__(self) -> None:
        self.refused = False

    def authorize(self, action: int, *_: Any) -> int:
        if action in _SQLITE_READING:
            return sqlite3.SQLITE_OK
        self.refused = True
        return sqlite3.SQLITE_DENY

    def on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only = ON")
        cursor.close()
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_authorizer(self.authorize)


def _sqlite_read_only_url(url: sa.URL) -> sa.URL:
    """The URL of the same SQLite file, opened read-only; refused when there is no such file,
    since opening it would create an empty one."""
    database = url.database or ""
    if database in ("", ":memory:"):
        return url  # an in-memory database has nothing to protect
    if url.query.get("uri") in ("true", "1"):
        return url.update_query_dict({"mode": "ro"})
    path = Path(database).absolute()
    if not path.exists():
        raise ConfigError([ConfigProblem(
            "source.url",
            f"there is no SQLite database at {path}: check the path (the source is only read, never created)",
        )])
    return url.set(database=path.as_uri()).update_query_dict({"mode": "ro", "uri": "true"})


def _read_only_engine(url_text: str, guard: _SqliteGuard) -> sa.Engine:
    url = sa.make_url(url_text)
    if url.get_backend_name() != "sqlite":
        # PostgreSQL: `postgresql_readonly` at each connection (see `_connect`). Other dialects have
        # no read-only mode SQLAlchemy can set; there the query must return rows and is rolled back,
        # and only a database user without write grants keeps a writing statement from running.
        return sa.create_engine(url)
    engine = sa.create_engine(_sqlite_read_only_url(url))
    sa.event.listen(engine, "connect", guard.on_connect)
    return engine


def _refused_a_write(exc: SQLAlchemyError) -> bool:
    orig = getattr(exc, "orig", None)
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF == sqlite3.SQLITE_READONLY  # the primary code of an extended one
    return (getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)) == _PG_READ_ONLY_TRANSACTION


def _detail(exc: SQLAlchemyError) -> object:
    return getattr(exc, "orig", None) or exc


class SqlUsageSource(Source):
    def __init__(self, settings: SqlSource) -> None:
        self.settings = settings
        self.key = settings.key
        self._guard = _SqliteGuard()
        try:
            self._engine = _read_only_engine(settings.url, self._guard)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError([ConfigProblem("source.url", f"not a usable SQLAlchemy URL: {exc}")]) from None

    def _connect(self) -> sa.Connection:
        try:
            connection = self._engine.connect()
        except OperationalError as exc:
            raise FatalError(
                f"cannot reach the source database {_redacted(self.settings.url)} "
                f"(source.url): {exc.orig}"
            ) from None
        if self._engine.dialect.name == "postgresql":
            connection.execution_options(postgresql_readonly=True)
        return connection

    def _execute(self, connection: sa.Connection) -> sa.CursorResult[Any]:
        query = sa.text(self.settings.query)
        self._guard.refused = False
        try:
            result = connection.execute(query, execution_options={"stream_results": True})
        except SQLAlchemyError as exc:
            message = self._why_it_failed(connection, query, exc)
            raise ConfigError([ConfigProblem("source.query", message)]) from None
        if not result.returns_rows:
            raise ConfigError([ConfigProblem("source.query", _NOT_A_QUERY)])
        return result

    def _why_it_failed(self, connection: sa.Connection, query: sa.TextClause, exc: SQLAlchemyError) -> str:
        if self._guard.refused or _refused_a_write(exc):
            return _WRITES.format(detail=_detail(exc))
        if self._engine.dialect.supports_server_side_cursors:
            # A server-side cursor takes only a query (PostgreSQL's DECLARE ... CURSOR FOR), so a
            # statement that writes fails there as a syntax error. Run it once more without one,
            # still read-only and rolled back, to say which it is.
            connection.rollback()
            try:
                again = connection.execute(query)
            except SQLAlchemyError as second:
                if _refused_a_write(second):
                    return _WRITES.format(detail=_detail(second))
            else:
                returns_rows = again.returns_rows
                again.close()
                if not returns_rows:
                    return _NOT_A_QUERY
        return f"the source query failed: {_detail(exc)}"

    def _open(self) -> tuple[sa.Connection, sa.CursorResult[Any]]:
        connection = self._connect()
        try:
            return connection, self._execute(connection)
        except BaseException:
            connection.close()
            raise

    def read(self) -> SourceRows:
        connection, result = self._open()
        columns = tuple(result.keys())
        if self.key not in columns:
            connection.close()
            raise ConfigError(
                [ConfigProblem("source.key",
                               f"the query returns no column {self.key!r} (it returns {', '.join(columns)})")]
            )

        def rows() -> Iterator[Row]:
            try:
                while batch := result.fetchmany(_FETCH):
                    for values in batch:
                        yield dict(zip(columns, values, strict=True))
            except SQLAlchemyError as exc:
                raise FatalError(f"reading the source failed part-way: {getattr(exc, 'orig', exc)}") from None
            finally:
                connection.close()

        return SourceRows(columns, rows())

    def check(self) -> None:
        rows = self.read().rows
        next(rows, None)
        getattr(rows, "close", lambda: None)()

    def read_columns(self) -> tuple[str, ...]:
        connection, result = self._open()
        try:
            return tuple(result.keys())
        finally:
            connection.close()

    def close(self) -> None:
        self._engine.dispose()
