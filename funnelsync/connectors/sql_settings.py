"""`[source]` with `kind = "sql"`: the settings of the SQL source (`sql.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from funnelsync.settings import _Strict


class SqlSource(_Strict):
    kind: Literal["sql"] = Field(description="A SQL query over any database SQLAlchemy can open.")
    url: str = Field(min_length=1, description=(
        "The analytics database, as a SQLAlchemy URL; only ever read (a SQLite file is opened read-only, "
        "PostgreSQL in a read-only transaction). A relative SQLite path is taken from the config file's folder."),
        examples=["postgresql+psycopg://analytics@db/analytics"])
    key: str = Field(default="email", min_length=1, description=(
        "The column that holds the contact's email, the key contacts are matched on."))
    query: str = Field(min_length=1, description=(
        "The SELECT that yields one row per contact: the key column and every column the mappings, the "
        "funnel and the segments read. Anything but a SELECT is refused."),
        examples=["SELECT email, role, used_event_count, signed_up_at FROM usage"])
