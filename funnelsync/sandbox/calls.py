"""One API call as a handler sees it, and the answer it gives."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import validation_error
from .versions import LEGACY

NO_BODY = object()


@dataclass
class ApiCall:
    method: str
    path: str
    query: dict[str, list[str]]
    params: dict[str, str]
    raw_body: bytes
    rejected_emails: frozenset[str] = frozenset()  # set by a `reject_rows` fault
    version: str = LEGACY  # the API version of the route that answers it

    def json(self) -> Any:
        """The body as JSON; HubSpot's 400 when it is not JSON."""
        if not self.raw_body.strip():
            raise validation_error("Invalid input JSON: the request body is empty")
        try:
            return json.loads(self.raw_body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise validation_error(f"Invalid input JSON: the body is not UTF-8 ({exc})") from exc
        except json.JSONDecodeError as exc:
            raise validation_error(
                f"Invalid input JSON on line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc

    def query_one(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def query_list(self, name: str) -> list[str]:
        """A repeated or comma-separated query parameter (`properties=a,b&properties=c`)."""
        return [item for value in self.query.get(name, []) for item in value.split(",") if item]

    def page_size(self, default: int, maximum: int) -> int:
        """The `limit` parameter, capped at `maximum`."""
        text = self.query_one("limit")
        if text is None:
            return default
        if not text.isdigit() or int(text) < 1:
            raise validation_error(f"limit must be a positive integer, not {text}")
        return min(int(text), maximum)

    def cursor(self) -> int:
        """The `after` parameter: the sandbox's paging cursors are numbers."""
        text = self.query_one("after")
        if text is None:
            return 0
        if not text.isdigit():
            raise validation_error(f"after must be a cursor from a previous page, not {text}")
        return int(text)


@dataclass
class Answer:
    status: int
    body: Any = NO_BODY
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False  # sent with its status and headers, then the connection drops mid-body
