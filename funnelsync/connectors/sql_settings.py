"""`[source]` with `kind = "sql"`: the settings of the SQL source (`sql.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from funnelsync.settings import _Strict


class SqlSource(_Strict):
    kind: Literal["sql"]
    url: str = Field(min_length=1)
    key: str = Field(default="email", min_length=1)
    query: str = Field(min_length=1)
