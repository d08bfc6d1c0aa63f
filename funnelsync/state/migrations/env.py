"""Alembic's environment: runs on the connection funnelsync hands it (never from a URL in a file)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from funnelsync.state import models  # noqa: F401 - registers the tables on the metadata

connection = context.config.attributes["connection"]
# SQLite's DDL is transactional too (the engine begins transactions itself): a migration is
# all or nothing on both backends.
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True,
                  transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
