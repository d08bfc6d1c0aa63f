"""Per-user usage rows from Moesif.

A run pages through the users with `search_after`; for each page it sends one events search with
`size: 0` whose aggregations give every user on the page their weighted call and error counts,
per-route counts and first/last call times. So a run costs two requests a page (plus the empty
page that ends the paging), however many users and events there are, and only one page of users
is held in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
import structlog

from funnelsync.connectors.budget import RequestBudget
from funnelsync.connectors.moesif.client import MoesifClient
from funnelsync.connectors.moesif.settings import MoesifSource
from funnelsync.connectors.moesif.times import RelativeTime, parse_moesif_time
from funnelsync.connectors.source import Row, Source, SourceRows
from funnelsync.errors import FatalError

log = structlog.get_logger("funnelsync.sources.moesif")

USERS_SEARCH = "/search/~/search/usermetrics/users"
EVENTS_SEARCH = "/search/~/search/events"
EVENTS_COUNT = "/search/~/count/events"

METRIC_COLUMNS = MoesifSource.USAGE_COLUMNS
NO_EMAIL = "moesif user without email"


def output_columns(settings: MoesifSource) -> tuple[str, ...]:
    """email, the [source.fields] columns, the [source.routes] columns, then the usage columns.

    The config has already refused names that clash (`MoesifSource`), so every one is unique."""
    fields = [name for name in settings.fields if name != "email"]
    return ("email", *fields, *settings.routes, *METRIC_COLUMNS)


# -- reading Moesif's answers ---------------------------------------------------------------------


def _hits(body: Mapping[str, Any], what: str) -> tuple[list[Any], int | None]:
    """The hits, and the total when Moesif gives it exactly (an int, or `{value: n}`)."""
    hits = body.get("hits")
    if not isinstance(hits, dict) or not isinstance(hits.get("hits"), list):
        raise FatalError(f"Moesif's {what} answer has no hits.hits list")
    total = hits.get("total")
    if isinstance(total, dict) and total.get("relation", "eq") == "eq":
        total = total.get("value")
    return hits["hits"], total if isinstance(total, int) and not isinstance(total, bool) else None


def _path(record: Any, dotted: str) -> Any:
    """The value at a dotted path; None when a step is missing or goes through a non-object."""
    value = record
    for step in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def _count(aggregation: Any, what: str) -> int:
    value = aggregation.get("value") if isinstance(aggregation, dict) else None
    if value is None:
        return 0
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise FatalError(f"Moesif's events aggregation gave {what} = {value!r}, not a number")
    return round(value)  # weights are 1 / sample rate: the sum need not be whole


def _time(aggregation: Any, what: str) -> datetime | None:
    if not isinstance(aggregation, dict):
        return None
    value = aggregation.get("value")
    if value is None:
        value = aggregation.get("value_as_string")
    parsed = parse_moesif_time(value)
    if parsed is None and value is not None:
        raise FatalError(f"Moesif's events aggregation gave {what} = {value!r}, not a time")
    return parsed


def _weight_sum() -> dict[str, Any]:
    # As in Moesif's own examples: the true count is the sum of weights; no weight counts 1.
    return {"sum": {"field": "weight", "missing": 1}}


def _api_calls() -> dict[str, Any]:
    """API calls, not custom actions; `event_type` matched as a keyword field and through its
    `.raw` keyword subfield, whichever the org's mapping has."""
    return {
        "bool": {
            "should": [
                {"term": {"event_type.raw": "api_call"}},
                {"term": {"event_type": "api_call"}},
            ],
            "minimum_should_match": 1,
        }
    }


@dataclass
class Usage:
    calls: int = 0
    errors: int = 0
    routes: dict[str, int] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None


# -- the source -----------------------------------------------------------------------------------


class MoesifUsageSource(Source):
    key = "email"

    def __init__(
        self,
        settings: MoesifSource,
        token: str,
        *,
        session: requests.Session | None = None,
        now: datetime | None = None,
        sleep: Callable[[float], None] | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        self.settings = settings
        self.columns = output_columns(settings)
        self.started_at = (now or datetime.now(UTC)).astimezone(UTC)
        self._email_path = settings.fields["email"]  # the config requires it
        self._fields = {k: v for k, v in settings.fields.items() if k != "email"}
        self._routes = list(settings.routes.items())
        self._owns_session = session is None
        self._session = session or requests.Session()
        if budget is None:
            budget = RequestBudget(settings.queries_per_minute, 60.0)
        self.client = MoesifClient(
            settings.base_url,
            token,
            settings.token_env,
            session=self._session,
            budget=budget,
            sleep=sleep,
        )
        # The events search spans the longer of window and lookback (Moesif's own from/to); the
        # shorter becomes a filter aggregation inside it, so both ranges are Moesif's.
        self._window = RelativeTime.parse(settings.window)
        lookback = RelativeTime.parse(settings.lookback)
        window_start = self._window.start(self.started_at)
        lookback_start = lookback.start(self.started_at)
        self._events_from = lookback if lookback_start <= window_start else self._window
        self._window_filter = self._since(self._window, window_start > lookback_start)
        self._lookback_filter = self._since(lookback, lookback_start > window_start)

    @staticmethod
    def _since(relative: RelativeTime, narrower: bool) -> dict[str, Any]:
        if not narrower:
            return {"match_all": {}}
        return {"range": {"request.time": {"gte": relative.date_math}}}

    # -- Source ---------------------------------------------------------------------------------

    def read(self) -> SourceRows:
        """Rows stream page by page. The first page is read here, so a refused token or a missing
        scope raises from `read()` itself. `skipped` is complete once the rows are exhausted."""
        skipped: dict[str, int] = {}
        pages = self._user_pages()
        first = self._rows(next(pages, []), skipped)
        return SourceRows(self.columns, self._stream(first, pages, skipped), skipped)

    def check(self) -> None:
        _, users = _hits(self.client.post(USERS_SEARCH, {"size": 0}), "users search")
        answer = self.client.post(
            EVENTS_COUNT,
            {"query": {"bool": {"filter": [_api_calls()]}}},
            params={"from": self._window.param, "to": "now"},
        )
        _, calls = _hits(answer, "events count")
        log.info("moesif_check_passed", users=users, api_calls_in_window=calls)

    def read_columns(self) -> tuple[str, ...]:
        """The columns come from the settings; the check proves the token and scopes."""
        self.check()
        return self.columns

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # -- paging ---------------------------------------------------------------------------------

    def _stream(
        self, first: list[Row], pages: Iterator[list[Any]], skipped: dict[str, int]
    ) -> Iterator[Row]:
        count = len(first)
        yield from first
        for users in pages:
            rows = self._rows(users, skipped)
            count += len(rows)
            yield from rows
        log.info(
            "moesif_read", rows=count, skipped=dict(skipped), requests=self.client.requests_sent
        )

    def _user_pages(self) -> Iterator[list[Any]]:
        """Pages of user hits, until Moesif answers an empty page: a short page does not prove
        the end (Moesif may cap `size`), nor does `hits.total` (it may stop at 10,000)."""
        body: dict[str, Any] = {
            "size": self.settings.page_size,
            "sort": [  # user_id is unique; _id breaks ties as in Moesif's paging example
                {"user_id.raw": {"order": "asc", "unmapped_type": "string"}},
                {"_id": "asc"},
            ],
        }
        while True:
            hits, total = _hits(self.client.post(USERS_SEARCH, body), "users search")
            if not hits:
                return
            after = hits[-1].get("sort") if isinstance(hits[-1], dict) else None
            if not isinstance(after, list) or not after:
                raise FatalError("Moesif's users search answer has no sort values to page on")
            if after == body.get("search_after"):
                raise FatalError("Moesif's users search did not move past search_after")
            log.debug("moesif_users_page", users=len(hits), total=total)
            yield hits
            body = {**body, "search_after": after}

    def _rows(self, users: list[Any], skipped: dict[str, int]) -> list[Row]:
        people: list[tuple[str, str, dict[str, Any]]] = []
        for hit in users:
            profile = hit.get("_source") if isinstance(hit, dict) else None
            if not isinstance(profile, dict):
                raise FatalError("Moesif's users search answer has a user without _source")
            email = _path(profile, self._email_path)
            if not isinstance(email, str) or not email.strip():
                skipped[NO_EMAIL] = skipped.get(NO_EMAIL, 0) + 1
                continue
            user_id = profile.get("user_id") or hit.get("_id")
            if user_id is None or user_id == "":
                raise FatalError("Moesif's users search answer has a user without user_id or _id")
            people.append((str(user_id), email, profile))
        usage = self._usage(sorted({user_id for user_id, _, _ in people}))
        rows: list[Row] = []
        for user_id, email, profile in people:
            found = usage.get(user_id) or Usage()
            row: dict[str, Any] = {"email": email}
            row.update((column, _path(profile, dotted)) for column, dotted in self._fields.items())
            row.update((column, found.routes.get(column, 0)) for column, _ in self._routes)
            row.update(
                used_event_count=found.calls,
                error_count=found.errors,
                first_event_at=found.first,
                last_event_at=found.last,
            )
            rows.append(row)
        return rows

    # -- usage ----------------------------------------------------------------------------------

    def events_body(self, user_ids: list[str]) -> dict[str, Any]:
        window_aggs: dict[str, Any] = {
            "calls": _weight_sum(),
            "errors": {
                "filter": {"range": {"response.status": {"gte": 400}}},
                "aggs": {"calls": _weight_sum()},
            },
        }
        if self._routes:
            window_aggs["routes"] = {
                "filters": {
                    "filters": {  # keyed by position: column names need not suit an agg name
                        f"r{i}": {"term": {"request.route.raw": route}}
                        for i, (_, route) in enumerate(self._routes)
                    }
                },
                "aggs": {"calls": _weight_sum()},
            }
        return {
            "size": 0,
            "query": {"bool": {"filter": [{"terms": {"user_id.raw": user_ids}}, _api_calls()]}},
            "aggs": {
                "users": {
                    "terms": {"field": "user_id.raw", "size": len(user_ids)},
                    "aggs": {
                        "window": {"filter": self._window_filter, "aggs": window_aggs},
                        "lookback": {
                            "filter": self._lookback_filter,
                            "aggs": {
                                "first": {"min": {"field": "request.time"}},
                                "last": {"max": {"field": "request.time"}},
                            },
                        },
                    },
                }
            },
        }

    def _usage(self, user_ids: list[str]) -> dict[str, Usage]:
        if not user_ids:
            return {}
        answer = self.client.post(
            EVENTS_SEARCH,
            self.events_body(user_ids),
            params={"from": self._events_from.param, "to": "now"},
        )
        per_user = _path(answer, "aggregations.users")
        if not isinstance(per_user, dict) or not isinstance(per_user.get("buckets"), list):
            raise FatalError("Moesif's events search answer has no aggregations.users.buckets")
        if per_user.get("sum_other_doc_count"):
            raise FatalError("Moesif's events search left users out of its per-user buckets")
        usage = {}
        for bucket in per_user["buckets"]:
            if not isinstance(bucket, dict) or "key" not in bucket:
                raise FatalError("Moesif's events search answer has a user bucket without a key")
            window = bucket.get("window") or {}
            lookback = bucket.get("lookback") or {}
            usage[str(bucket["key"])] = Usage(
                calls=_count(window.get("calls"), "calls"),
                errors=_count(_path(window, "errors.calls"), "errors"),
                routes={
                    column: _count(_path(window, f"routes.buckets.r{i}.calls"), column)
                    for i, (column, _) in enumerate(self._routes)
                },
                first=_time(lookback.get("first"), "first_event_at"),
                last=_time(lookback.get("last"), "last_event_at"),
            )
        return usage
