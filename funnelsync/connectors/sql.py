"""The SQL source: any SQLAlchemy URL and a query that returns one row per contact."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from funnelsync.config import SqlSource
from funnelsync.connectors.source import Row, Source, SourceRows
from funnelsync.errors import ConfigError, ConfigProblem, FatalError

_FETCH = 1000


def _redacted(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


class SqlUsageSource(Source):
    def __init__(self, settings: SqlSource) -> None:
        self.settings = settings
        self.key = settings.key
        try:
            self._engine = sa.create_engine(settings.url)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError([ConfigProblem("source.url", f"not a usable SQLAlchemy URL: {exc}")]) from None

    def _connect(self) -> sa.Connection:
        try:
            return self._engine.connect()
        except OperationalError as exc:
            raise FatalError(
                f"cannot reach the source database {_redacted(self.settings.url)} "
                f"(source.url): {exc.orig}"
            ) from None

    def read(self) -> SourceRows:
        connection = self._connect()
        try:
            result = connection.execution_options(stream_results=True).execute(sa.text(self.settings.query))
        except SQLAlchemyError as exc:
            connection.close()
            detail = getattr(exc, "orig", None) or exc
            raise ConfigError(
                [ConfigProblem("source.query", f"the source query failed: {detail}")]
            ) from None
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

    def close(self) -> None:
        self._engine.dispose()
