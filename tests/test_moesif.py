"""The Moesif source, against a fake Moesif Management API.

The fake answers the three endpoints the connector uses by evaluating the Elasticsearch DSL it is
sent over fixture users and events built from the spec's own examples, and it checks every
request against Moesif's OpenAPI description (tests/fixtures/moesif/management-api.json).
Expected values are computed separately, by plain loops over the same events.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from structlog.testing import capture_logs

from funnelsync.config import parse_config
from funnelsync.connectors.budget import RequestBudget
from funnelsync.connectors.moesif import MoesifUsageSource, RelativeTime, parse_moesif_time
from funnelsync.connectors.moesif.settings import MoesifSource
from funnelsync.errors import ConfigError, CredentialsError, FatalError

FIXTURES = Path(__file__).parent / "fixtures" / "moesif"
SPEC = json.loads((FIXTURES / "management-api.json").read_text())
BASE_URL = "https://api.moesif.com/v1"
TOKEN = "eyJtb2VzaWYiOiJzZWNyZXQtbWFuYWdlbWVudC10b2tlbiJ9"

NOW = datetime(2024, 5, 14, 10, 37, 12, tzinfo=UTC)
WINDOW_START = datetime(2024, 5, 13, 10, tzinfo=UTC)  # -24h starts at the top of the hour
LOOKBACK_START = datetime(2024, 2, 14, tzinfo=UTC)  # -90d starts at midnight

USERS = "/search/~/search/usermetrics/users"
EVENTS = "/search/~/search/events"
COUNT = "/search/~/count/events"


# -- checking requests against Moesif's OpenAPI description --------------------------------------


PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "boolean": bool,
    "number": (int, float),
}


def header(request: requests.PreparedRequest, name: str) -> str:
    value = request.headers.get(name) or ""
    return value.decode() if isinstance(value, bytes) else value


class SpecChecker:
    """Method, path template, query parameters, auth and body schema, from the spec."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.base_path = urlsplit(spec["servers"][0]["url"]).path.rstrip("/")

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for template, item in self.spec["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path) and method.lower() in item:
                return template, item[method.lower()]
        return None

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].removeprefix("#/components/schemas/")
            # The spec points every Elasticsearch DSL body at "object", a schema it never
            # defines: read it as "a JSON object".
            schema = self.spec["components"]["schemas"].get(name, {"type": name})
        return schema

    def validate(self, value: Any, schema: dict[str, Any], where: str) -> list[str]:
        schema = self.resolve(schema)
        kind = str(schema.get("type"))
        python = PYTHON_TYPES.get(kind)
        if python and not isinstance(value, python):
            return [f"{where} should be {kind}, is {type(value).__name__}"]
        problems = []
        if isinstance(value, dict):
            problems += [
                f"{where}.{k} is required" for k in schema.get("required", []) if k not in value
            ]
            for key, sub in schema.get("properties", {}).items():
                if key in value:
                    problems += self.validate(value[key], sub, f"{where}.{key}")
        if isinstance(value, list) and "items" in schema:
            for i, item in enumerate(value):
                problems += self.validate(item, schema["items"], f"{where}[{i}]")
        return problems

    def check(self, request: requests.PreparedRequest) -> tuple[str | None, list[str]]:
        url = urlsplit(str(request.url))
        if not url.path.startswith(self.base_path + "/"):
            return None, [f"{url.path} is not under the spec's server {self.base_path}"]
        path = url.path.removeprefix(self.base_path)
        found = self.operation(request.method or "", path)
        if found is None:
            return None, [f"{request.method} {path} is not an operation of the spec"]
        template, operation = found
        problems: list[str] = []
        query = parse_qs(url.query, keep_blank_values=True)
        declared = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
        for name, parameter in declared.items():
            if parameter.get("required") and not query.get(name, [""])[0]:
                problems.append(f"{template}: required query parameter {name} is missing")
        problems += [
            f"{template}: undeclared query parameter {n}" for n in query if n not in declared
        ]
        scopes = [
            s for need in operation.get("security", []) for s in need.get("managementAPIToken", [])
        ]
        if scopes and not header(request, "Authorization").startswith("Bearer "):
            problems.append(f"{template}: no bearer token for scopes {scopes}")
        body_spec = operation.get("requestBody")
        if body_spec:
            content = body_spec["content"]
            if body_spec.get("required") and not request.body:
                problems.append(f"{template}: the request body is required")
            elif request.body:
                media = header(request, "Content-Type").split(";")[0]
                if media not in content:
                    problems.append(
                        f"{template}: body sent as {media!r}, spec takes {list(content)}"
                    )
                else:
                    problems += self.validate(body_of(request), content[media]["schema"], "body")
        return template, problems

    def success_status(self, template: str, method: str) -> int:
        return int(min(self.spec["paths"][template][method.lower()]["responses"]))

    def scopes(self, template: str, method: str) -> set[str]:
        operation = self.spec["paths"][template][method.lower()]
        return {s for need in operation.get("security", []) for s in need["managementAPIToken"]}


def body_of(request: requests.PreparedRequest) -> Any:
    return json.loads(request.body) if isinstance(request.body, str | bytes) else None


CHECKER = SpecChecker(SPEC)


# -- a fake Moesif: Elasticsearch DSL evaluated over fixture documents ----------------------------


def moesif_time(moment: datetime) -> str:
    """How Moesif writes request.time: UTC, no zone, milliseconds."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def floor_to(moment: datetime, unit: str) -> datetime:
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "M":
        return midnight.replace(day=1)
    if unit == "w":
        return midnight - timedelta(days=midnight.weekday())
    zeroed = {
        "s": ["microsecond"],
        "m": ["second", "microsecond"],
        "h": ["minute", "second", "microsecond"],
        "d": ["hour", "minute", "second", "microsecond"],
    }
    return moment.replace(**dict.fromkeys(zeroed[unit], 0))  # type: ignore[arg-type]


def minus(moment: datetime, amount: int, unit: str) -> datetime:
    if unit == "M":
        months = moment.year * 12 + moment.month - 1 - amount
        return moment.replace(year=months // 12, month=months % 12 + 1, day=min(moment.day, 28))
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    return moment - timedelta(seconds=amount * seconds)


def moesif_relative(text: str, now: datetime) -> datetime:
    """Moesif's from/to: `now`, or -N<unit> starting at that unit's calendar boundary."""
    if text == "now":
        return now
    match = re.fullmatch(r"-(\d+)([smhdwM])", text)
    assert match, f"Moesif does not read {text!r} as a relative date"
    return floor_to(minus(now, int(match[1]), match[2]), match[2])


def date_math(text: str, now: datetime) -> datetime:
    match = re.fullmatch(r"now-(\d+)([smhdwMy])/([smhdwMy])", text)
    assert match, f"unsupported date math {text!r}"
    return floor_to(minus(now, int(match[1]), match[2]), match[3])


def when(value: Any) -> datetime:
    parsed = parse_moesif_time(value)
    assert parsed is not None, f"{value!r} is not a Moesif time"
    return parsed


def get(doc: Any, dotted: str) -> Any:
    if dotted.endswith(".raw"):  # the keyword subfield exists for strings only
        value = get(doc, dotted[:-4])
        return value if isinstance(value, str) else None
    for step in dotted.split("."):
        doc = doc.get(step) if isinstance(doc, dict) else None
    return doc


class Unsupported(AssertionError):
    pass


@dataclass
class FakeMoesif:
    users: list[dict[str, Any]]
    events: list[dict[str, Any]]
    token: str = TOKEN
    now: datetime = NOW
    total_style: str = "int"  # "int", "value" ({value, relation}) or "absent"
    failures: list[tuple[str, Callable[[int], bool], Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def fail(self, path: str, when: Callable[[int], bool], answer: Any) -> None:
        """For the n-th calls to `path` where `when(n)`: answer (status, headers, body), or
        raise it when it is an exception."""
        self.failures.append((path, when, answer))

    @contextmanager
    def serving(self, *passthru: str) -> Iterator[FakeMoesif]:
        """Answer every `requests` call to BASE_URL while inside; calls to `passthru` prefixes go
        out for real; on leaving, no request may have broken Moesif's spec."""
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.add_callback(responses.POST, re.compile(re.escape(BASE_URL) + r"/.*"), callback=self.handle,
                              content_type="application/json")
            for prefix in passthru:
                mock.add_passthru(prefix)
            yield self
        assert self.violations == [], "requests that break Moesif's spec"

    def handle(self, request: requests.PreparedRequest) -> Any:
        template, problems = CHECKER.check(request)
        url = urlsplit(str(request.url))
        path = url.path.removeprefix(CHECKER.base_path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = body_of(request) or {}
        self.calls.append({"path": path, "params": params, "body": body, "request": request})
        if problems:
            self.violations += problems
            return 400, {}, json.dumps({"message": "; ".join(problems)})
        if header(request, "Authorization") != f"Bearer {self.token}":
            return 401, {}, json.dumps({"message": "Unauthorized"})
        n = sum(1 for c in self.calls if c["path"] == path)
        for fail_path, when, answer in self.failures:
            if fail_path == path and when(n):
                return answer
        try:
            if path == USERS:
                answer = self.search_users(body)
            elif path == EVENTS:
                answer = self.search_events(params, body)
            else:
                answer = self.count_events(params, body)
        except (Unsupported, AssertionError, KeyError) as exc:
            self.violations.append(f"{path}: {exc!r}")
            return 400, {}, json.dumps({"message": str(exc)})
        assert template is not None
        return CHECKER.success_status(template, "POST"), {}, json.dumps(answer)

    def total(self, n: int) -> dict[str, Any]:
        if self.total_style == "int":
            return {"total": n}
        if self.total_style == "value":
            return {"total": {"value": n, "relation": "eq"}}
        return {}

    def search_users(self, body: dict[str, Any]) -> dict[str, Any]:
        keys = []
        for item in body.get("sort", []):
            ((name, how),) = item.items()
            order = how if isinstance(how, str) else how["order"]
            if order != "asc":
                raise Unsupported("the fake sorts ascending only")
            keys.append(name)

        def key(user: dict[str, Any]) -> list[Any]:
            return [user["_id"] if k == "_id" else get(user["_source"], k) for k in keys]

        ordered = sorted(self.users, key=key)
        after = body.get("search_after")
        if after is not None:
            assert len(after) == len(keys), "search_after must have one value a sort key"
            ordered = [u for u in ordered if key(u) > after]
        page = ordered[: body.get("size", 10)]
        hits = [{"_id": u["_id"], "_source": u["_source"], "sort": key(u)} for u in page]
        return {
            "took": 3,
            "timed_out": False,
            "hits": {**self.total(len(self.users)), "hits": hits},
        }

    def in_range(self, params: dict[str, str]) -> list[dict[str, Any]]:
        start, end = (
            moesif_relative(params["from"], self.now),
            moesif_relative(params["to"], self.now),
        )
        return [e for e in self.events if start <= when(e["request"]["time"]) <= end]

    def search_events(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        docs = [
            e
            for e in self.in_range(params)
            if self.matches(e, body.get("query", {"match_all": {}}))
        ]
        answer: dict[str, Any] = {
            "took": 12,
            "timed_out": False,
            "hits": {**self.total(len(docs)), "hits": []},
        }
        if body.get("size", 10) != 0:
            raise Unsupported("the connector should only ask for aggregations")
        if "aggs" in body:
            answer["aggregations"] = self.aggregate(docs, body["aggs"])
        return answer

    def count_events(self, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        docs = [
            e
            for e in self.in_range(params)
            if self.matches(e, body.get("query", {"match_all": {}}))
        ]
        return {
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"hits": [], **self.total(len(docs)), "max_score": 0},
            "took": 1,
            "timed_out": False,
        }

    def matches(self, doc: dict[str, Any], query: dict[str, Any]) -> bool:
        ((kind, body),) = query.items()
        if kind == "match_all":
            return True
        if kind == "bool":
            musts = body.get("filter", []) + body.get("must", [])
            if not all(self.matches(doc, q) for q in musts):
                return False
            if any(self.matches(doc, q) for q in body.get("must_not", [])):
                return False
            should = body.get("should", [])
            needed = body.get("minimum_should_match", 0 if musts else 1)
            return sum(self.matches(doc, q) for q in should) >= (needed if should else 0)
        ((name, value),) = body.items()
        if kind == "term":
            return bool(get(doc, name) == (value["value"] if isinstance(value, dict) else value))
        if kind == "terms":
            return get(doc, name) in value
        if kind == "range":
            have = get(doc, name)
            if have is None:
                return False
            if name == "request.time":
                have = parse_moesif_time(have)
                value = {op: date_math(v, self.now) for op, v in value.items()}
            ops = {
                "gte": lambda a, b: a >= b,
                "gt": lambda a, b: a > b,
                "lte": lambda a, b: a <= b,
                "lt": lambda a, b: a < b,
            }
            return all(ops[op](have, bound) for op, bound in value.items())
        raise Unsupported(f"query {kind}")

    def aggregate(self, docs: list[dict[str, Any]], aggs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, agg in aggs.items():
            sub = agg.get("aggs", {})
            ((kind, body),) = ((k, v) for k, v in agg.items() if k != "aggs")
            if kind == "terms":
                groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
                for doc in docs:
                    if get(doc, body["field"]) is not None:
                        groups[get(doc, body["field"])].append(doc)
                ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
                size = int(body.get("size", 10))
                out[name] = {
                    "doc_count_error_upper_bound": 0,
                    "sum_other_doc_count": sum(len(v) for _, v in ordered[size:]),
                    "buckets": [
                        {"key": k, "doc_count": len(v), **self.aggregate(v, sub)}
                        for k, v in ordered[:size]
                    ],
                }
            elif kind == "filter":
                kept = [d for d in docs if self.matches(d, body)]
                out[name] = {"doc_count": len(kept), **self.aggregate(kept, sub)}
            elif kind == "filters":
                buckets = {}
                for key, query in body["filters"].items():
                    kept = [d for d in docs if self.matches(d, query)]
                    buckets[key] = {"doc_count": len(kept), **self.aggregate(kept, sub)}
                out[name] = {"buckets": buckets}
            elif kind == "sum":
                values = [get(d, body["field"]) for d in docs]
                if "missing" in body:
                    values = [body["missing"] if v is None else v for v in values]
                out[name] = {"value": float(sum(v for v in values if v is not None))}
            elif kind in ("min", "max"):
                times = [when(get(d, body["field"])) for d in docs]
                if not times:
                    out[name] = {"value": None}
                else:
                    pick = min(times) if kind == "min" else max(times)
                    out[name] = {
                        "value": pick.timestamp() * 1000,
                        "value_as_string": moesif_time(pick),
                    }
            else:
                raise Unsupported(f"aggregation {kind}")
        return out


# -- the fixture world: users and events built from the spec's examples ---------------------------

USER_HIT = json.loads((FIXTURES / "user-hit.json").read_text())
EVENT_HIT = json.loads((FIXTURES / "event-hit.json").read_text())
ROLES = ["Engineering", "Product", "Developer Relations", "Support"]


def make_user(user_id: str, email: Any = "missing", metadata: Any = "missing") -> dict[str, Any]:
    source = copy.deepcopy(USER_HIT["_source"])
    source["user_id"] = user_id
    source["company_id"] = f"c-{user_id}"
    source.pop("email", None)
    if email != "missing":
        source["email"] = email
    if metadata != "missing":
        source["metadata"] = metadata
    return {"_id": user_id, "_source": source}


def make_event(
    user_id: str,
    at: datetime,
    *,
    route: str = "/",
    status: int = 200,
    weight: float | None = 1,
    event_type: str = "api_call",
) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(EVENT_HIT["_source"])
    event.update(user_id=user_id, event_type=event_type)
    event["request"].update(time=moesif_time(at), route=route)
    event["response"].update(status=status, time=moesif_time(at + timedelta(milliseconds=76)))
    if weight is not None:
        event["weight"] = weight
    return event


def in_window(i: int, n: int) -> datetime:
    """n-th of a user's calls, spread over the window (the first hour before -24h included)."""
    span = int((NOW - WINDOW_START).total_seconds())
    return WINDOW_START + timedelta(seconds=(i * 977 + n * 3121) % span, milliseconds=n)


@dataclass
class World:
    users: list[dict[str, Any]]
    events: list[dict[str, Any]]


def build_world(n_users: int = 250) -> World:
    users, events = [], []
    for i in range(n_users):
        uid = f"u{i:04d}"
        email: Any = f"Dev{i}@Example.com"
        if i % 25 == 7:
            email = ["missing", "", None, "   "][i // 25 % 4]
        metadata: Any = {
            "role": ROLES[i % 4],
            "signed_up_at": "2024-05-01T08:00:00.0000000Z",
            "plan": {"name": "pro" if i % 3 else "free"},
        }
        if i % 50 == 3:
            metadata = None
        elif i % 50 == 13:
            metadata = "not an object"
        elif i % 50 == 23:
            metadata = {"role": ["a", "list"], "plan": "free"}  # plan.name goes through a string
        elif i % 50 == 33:
            metadata = "missing"
        users.append(make_user(uid, email, metadata))

        kind = i % 10
        if kind in (0, 5):  # never called the API
            continue
        if kind == 2:  # production traffic, sampled at 5%: weight 20
            for n in range(60):
                status = 500 if n % 15 == 0 else 200
                events.append(
                    make_event(
                        uid,
                        in_window(i, n),
                        route="/payments" if n % 4 else "/refunds",
                        status=status,
                        weight=20,
                    )
                )
            events.append(make_event(uid, in_window(i, 61), weight=None))  # no weight: counts 1
        elif kind == 4:  # stopped calling: traffic in the lookback only
            events.append(make_event(uid, NOW - timedelta(days=100)))  # beyond the lookback
            events.append(make_event(uid, LOOKBACK_START + timedelta(hours=1), status=404))
            events.append(make_event(uid, WINDOW_START - timedelta(minutes=10)))
        elif kind == 7:  # sampled at 30%: fractional weights, and custom actions that do not count
            for n in range(2):
                events.append(make_event(uid, in_window(i, n), route="/payments", weight=10 / 3))
            events.append(make_event(uid, in_window(i, 9), weight=1, event_type="user_action"))
            events.append(make_event(uid, NOW - timedelta(days=20), status=401))
        else:  # trying it out in a sandbox
            for n in range(i % 9 + 1):
                status = 400 + n % 30 if n % 3 == 0 else 201
                events.append(
                    make_event(
                        uid,
                        in_window(i, n),
                        route="/payments" if n % 2 else "/users",
                        status=status,
                        weight=2 if n % 2 else 1,
                    )
                )
    return World(users, events)


def expected_rows(
    world: World, fields: dict[str, str], routes: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """The rows, computed with plain loops (no Elasticsearch)."""
    rows = {}
    for user in world.users:
        profile = user["_source"]
        email = profile.get("email")
        if not isinstance(email, str) or not email.strip():
            continue
        row: dict[str, Any] = {"email": email}
        for column, dotted in fields.items():
            value: Any = profile
            for step in dotted.split("."):
                value = value.get(step) if isinstance(value, dict) else None
            row[column] = value
        calls = [
            e for e in world.events if e["user_id"] == user["_id"] and e["event_type"] == "api_call"
        ]
        times = {id(e): when(e["request"]["time"]) for e in calls}
        window = [e for e in calls if WINDOW_START <= times[id(e)] <= NOW]
        lookback = sorted(times[id(e)] for e in calls if LOOKBACK_START <= times[id(e)] <= NOW)

        def weighed(events: list[dict[str, Any]]) -> int:
            return round(sum(float(e.get("weight", 1)) for e in events))

        for column, route in routes.items():
            row[column] = weighed([e for e in window if e["request"]["route"] == route])
        row["used_event_count"] = weighed(window)
        row["error_count"] = weighed([e for e in window if e["response"]["status"] >= 400])
        row["first_event_at"] = lookback[0] if lookback else None
        row["last_event_at"] = lookback[-1] if lookback else None
        rows[email] = row
    return rows


# -- harness --------------------------------------------------------------------------------------

FIELDS = {
    "email": "email",
    "role": "metadata.role",
    "plan": "metadata.plan.name",
    "signed_up_at": "metadata.signed_up_at",
    "company_id": "company_id",
}
ROUTES = {"calls_payments": "/payments", "calls_refunds": "/refunds"}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def settings(**overrides: Any) -> MoesifSource:
    values: dict[str, Any] = {"kind": "moesif", "fields": FIELDS, "routes": ROUTES, "page_size": 60}
    return MoesifSource(**{**values, **overrides})


PRISTINE = build_world()


@pytest.fixture
def world() -> World:
    """The fixture world; tests may add or drop documents (the documents are shared)."""
    return World(list(PRISTINE.users), list(PRISTINE.events))


@pytest.fixture
def fake(world: World) -> Iterator[FakeMoesif]:
    with FakeMoesif(world.users, world.events).serving() as moesif:
        yield moesif


@pytest.fixture
def clock() -> Clock:
    return Clock()


MakeSource = Callable[..., MoesifUsageSource]


@pytest.fixture
def make_source(clock: Clock) -> MakeSource:
    def make(
        token: str = TOKEN, session: requests.Session | None = None, **overrides: Any
    ) -> MoesifUsageSource:
        budget = RequestBudget(450, 60.0, clock=clock.monotonic, sleep=clock.sleep)
        return MoesifUsageSource(
            settings(**overrides), token, session=session, now=NOW, sleep=clock.sleep, budget=budget
        )

    return make


def read_all(source: MoesifUsageSource) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    result = source.read()
    rows = {}
    for row in result.rows:
        assert tuple(row) == result.columns
        rows[row["email"]] = dict(row)
    return rows, result.skipped


def calls_to(fake: FakeMoesif, path: str) -> list[dict[str, Any]]:
    return [c for c in fake.calls if c["path"] == path]


# -- reading usage --------------------------------------------------------------------------------


@pytest.mark.parametrize("total_style", ["int", "value", "absent"])
def test_every_user_with_an_email_gets_their_weighted_usage(
    fake: FakeMoesif, world: World, make_source: MakeSource, total_style: str
) -> None:
    fake.total_style = total_style
    rows, skipped = read_all(make_source())

    assert rows == expected_rows(world, {k: v for k, v in FIELDS.items() if k != "email"}, ROUTES)
    assert len(rows) == 240
    assert skipped == {"moesif user without email": 10}
    counts = [row["used_event_count"] for row in rows.values()]
    assert any(c == 0 for c in counts), "top of the funnel"
    assert any(0 < c <= 1000 for c in counts), "middle"
    assert any(c > 1000 for c in counts), "bottom"


def test_columns_are_known_before_the_first_row_in_config_order(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    result = make_source().read()
    assert result.columns == (
        "email",
        "role",
        "plan",
        "signed_up_at",
        "company_id",
        "calls_payments",
        "calls_refunds",
        "used_event_count",
        "error_count",
        "first_event_at",
        "last_event_at",
    )


def test_sampled_calls_count_by_weight_and_custom_actions_do_not_count(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    rows, _ = read_all(make_source())
    heavy = rows["Dev2@Example.com"]  # 60 calls sampled at 5% (weight 20), one without weight
    assert heavy["used_event_count"] == 60 * 20 + 1
    assert heavy["error_count"] == 4 * 20
    assert heavy["calls_payments"] == 45 * 20
    assert heavy["calls_refunds"] == 15 * 20
    sampled = rows["Dev17@Example.com"]  # 2 calls sampled at 30% (6.67 calls), a user action
    assert sampled["used_event_count"] == 7
    assert sampled["calls_payments"] == 7
    assert sampled["error_count"] == 0
    assert all(isinstance(row["used_event_count"], int) for row in rows.values())


def test_a_user_without_calls_gets_zeros_not_missing_values(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    rows, _ = read_all(make_source())
    quiet = rows["Dev10@Example.com"]
    assert quiet["used_event_count"] == 0 and quiet["error_count"] == 0
    assert quiet["calls_payments"] == 0 and quiet["calls_refunds"] == 0
    assert quiet["first_event_at"] is None and quiet["last_event_at"] is None


def test_first_and_last_call_look_back_beyond_the_window_in_utc(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    rows, _ = read_all(make_source())
    stopped = rows["Dev4@Example.com"]  # calls 10 minutes before the window, none inside it
    assert stopped["used_event_count"] == 0
    assert stopped["first_event_at"] == LOOKBACK_START + timedelta(
        hours=1
    )  # not the 100-day-old one
    assert stopped["last_event_at"] == WINDOW_START - timedelta(minutes=10)
    assert stopped["last_event_at"].tzinfo == UTC


def test_a_window_longer_than_the_lookback_still_gets_both_right(
    fake: FakeMoesif, world: World, make_source: MakeSource
) -> None:
    world.events.append(make_event("u0000", NOW - timedelta(days=10)))
    rows, _ = read_all(make_source(window="-30d", lookback="-7d"))
    user = rows["Dev0@Example.com"]
    assert user["used_event_count"] == 1
    assert user["last_event_at"] is None  # 10 days ago is outside the 7-day lookback
    assert {c["params"]["from"] for c in calls_to(fake, EVENTS)} == {"-30d"}


def test_users_without_email_are_skipped_and_counted(
    fake: FakeMoesif, world: World, make_source: MakeSource
) -> None:
    rows, skipped = read_all(make_source())
    assert len(rows) == 240
    no_email = {u["_id"] for u in world.users if not (u["_source"].get("email") or "").strip()}
    assert len(no_email) == 10
    assert skipped == {"moesif user without email": 10}
    asked = {
        uid
        for c in calls_to(fake, EVENTS)
        for uid in c["body"]["query"]["bool"]["filter"][0]["terms"]["user_id.raw"]
    }
    assert asked.isdisjoint(no_email)


def test_emails_are_given_as_moesif_has_them(fake: FakeMoesif, make_source: MakeSource) -> None:
    rows, _ = read_all(make_source())
    assert "Dev1@Example.com" in rows


def test_missing_or_malformed_metadata_gives_none(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    rows, _ = read_all(make_source())
    assert rows["Dev3@Example.com"]["role"] is None  # metadata null
    assert rows["Dev13@Example.com"]["role"] is None  # metadata a string
    assert rows["Dev23@Example.com"]["plan"] is None  # plan.name through a string
    assert rows["Dev23@Example.com"]["role"] == ["a", "list"]  # a value is passed as it is
    assert rows["Dev33@Example.com"]["signed_up_at"] is None  # no metadata at all
    assert rows["Dev1@Example.com"]["signed_up_at"] == "2024-05-01T08:00:00.0000000Z"


def test_an_org_with_no_users_gives_no_rows(
    fake: FakeMoesif, world: World, make_source: MakeSource
) -> None:
    world.users.clear()
    result = make_source().read()
    assert list(result.rows) == []
    assert result.skipped == {}
    assert [c["path"] for c in fake.calls] == [USERS]


def test_a_user_known_only_by_id_is_matched_to_their_events(
    fake: FakeMoesif, world: World, make_source: MakeSource
) -> None:
    world.users[:] = [make_user("u0001", "solo@example.com")]
    del world.users[0]["_source"]["user_id"]  # as in the spec's example user
    rows, _ = read_all(make_source(fields={"email": "email"}))
    assert (
        rows["solo@example.com"]["used_event_count"]
        == expected_rows(world, {}, ROUTES)["solo@example.com"]["used_event_count"]
    )
    assert rows["solo@example.com"]["used_event_count"] > 0


# -- request shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("page_size", "pages"), [(60, 5), (100, 3), (250, 1), (1000, 1)])
def test_requests_grow_with_pages_not_with_users(
    fake: FakeMoesif, make_source: MakeSource, page_size: int, pages: int
) -> None:
    read_all(make_source(page_size=page_size))
    assert len(calls_to(fake, USERS)) == pages + 1  # the last one comes back empty
    assert len(calls_to(fake, EVENTS)) == pages
    assert len(fake.calls) == 2 * pages + 1


def test_users_are_paged_with_search_after_on_a_unique_sort(
    fake: FakeMoesif, world: World, make_source: MakeSource
) -> None:
    read_all(make_source())
    example = json.loads(
        (FIXTURES / "examples" / "search-events-paginate-compound-key.request.json").read_text()
    )
    searches = calls_to(fake, USERS)
    first = searches[0]["body"]
    assert first["size"] == 60
    assert [next(iter(s)) for s in first["sort"]] == ["user_id.raw", "_id"]
    assert first["sort"][0]["user_id.raw"].keys() == example["sort"][0]["user_id.raw"].keys()
    assert "search_after" not in first
    ids = sorted(u["_id"] for u in world.users)
    for page, search in enumerate(searches[1:], start=1):
        last_seen = ids[min(page * 60, len(ids)) - 1]
        assert search["body"]["search_after"] == [last_seen, last_seen]


def test_one_events_search_per_page_aggregates_that_pages_users(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    read_all(make_source())
    weight_sum = json.loads(
        (FIXTURES / "examples" / "search-events-top-companies-by-weight.request.json").read_text()
    )["aggs"]["seg"]["aggs"]["weight|sum"]
    for call in calls_to(fake, EVENTS):
        assert call["params"] == {"from": "-90d", "to": "now"}
        body = call["body"]
        assert body["size"] == 0
        ids = body["query"]["bool"]["filter"][0]["terms"]["user_id.raw"]
        per_user = body["aggs"]["users"]
        assert per_user["terms"] == {"field": "user_id.raw", "size": len(ids)}
        window = per_user["aggs"]["window"]
        assert window["filter"] == {"range": {"request.time": {"gte": "now-24h/h"}}}
        assert window["aggs"]["calls"] == weight_sum
        assert window["aggs"]["errors"]["filter"] == {"range": {"response.status": {"gte": 400}}}
        assert per_user["aggs"]["lookback"]["filter"] == {"match_all": {}}


def test_every_request_carries_the_token_a_timeout_and_one_session(
    fake: FakeMoesif, make_source: MakeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = requests.Session()
    timeouts = []
    original = session.send

    def send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        timeouts.append(kwargs.get("timeout"))
        return original(request, **kwargs)

    monkeypatch.setattr(session, "send", send)
    source = make_source(session=session)
    read_all(source)
    source.check()
    closed = []
    monkeypatch.setattr(session, "close", lambda: closed.append(True))
    source.close()
    assert len(timeouts) == len(fake.calls) and all(timeouts)
    assert all(c["request"].headers["Authorization"] == f"Bearer {TOKEN}" for c in fake.calls)
    assert all(c["request"].headers["Content-Type"] == "application/json" for c in fake.calls)
    assert closed == [], "a session passed in is the caller's to close"


def test_the_spec_checker_catches_what_moesif_would_refuse() -> None:
    bare = requests.Request("POST", BASE_URL + EVENTS, json={"size": 0}).prepare()
    _, problems = CHECKER.check(bare)
    assert any("from" in p for p in problems) and any("to" in p for p in problems)
    assert any("bearer" in p for p in problems)
    _, problems = CHECKER.check(
        requests.Request("POST", BASE_URL + "/search/~/search/things").prepare()
    )
    assert problems == ["POST /search/~/search/things is not an operation of the spec"]
    _, problems = CHECKER.check(
        requests.Request(
            "POST",
            BASE_URL + USERS,
            data="[1]",
            headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        ).prepare()
    )
    assert problems == ["body should be object, is list"]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_names_the_scopes_and_the_variable_never_the_token(
    fake: FakeMoesif, make_source: MakeSource, status: int
) -> None:
    fake.fail(USERS, lambda n: True, (status, {}, json.dumps({"message": f"bad token {TOKEN}"})))
    with capture_logs() as logs, pytest.raises(CredentialsError) as raised:
        make_source().read()
    message = str(raised.value)
    needed = CHECKER.scopes(USERS, "POST") | CHECKER.scopes(EVENTS, "POST")
    assert needed == {"read:users", "read:events"}
    assert all(scope in message for scope in needed)
    assert "MOESIF_MANAGEMENT_TOKEN" in message
    assert TOKEN not in message and TOKEN not in repr(logs)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert len(fake.calls) == 1, "a refused token is not retried"


def test_a_wrong_token_is_refused(fake: FakeMoesif, make_source: MakeSource) -> None:
    with pytest.raises(CredentialsError, match="read:users and read:events"):
        make_source(token="not-the-token").read()


def test_a_token_without_the_events_scope_fails_read_before_any_row(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    fake.fail(EVENTS, lambda n: True, (401, {}, json.dumps({"message": "missing scope"})))
    with pytest.raises(CredentialsError):
        make_source().read()


def test_no_management_api_subscription_is_fatal(fake: FakeMoesif, make_source: MakeSource) -> None:
    fake.fail(USERS, lambda n: True, (402, {}, json.dumps({"message": "Payment Required"})))
    with pytest.raises(FatalError, match="no active subscription"):
        make_source().read()


def test_another_refusal_is_fatal_with_moesifs_message(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    fake.fail(
        EVENTS, lambda n: True, (400, {}, json.dumps({"message": "No mapping found for [weight]"}))
    )
    with pytest.raises(FatalError, match=r"HTTP 400.*No mapping found for \[weight\]"):
        make_source().read()
    assert len(calls_to(fake, EVENTS)) == 1


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        ((201, {"Content-Type": "text/html"}, "<html>gateway</html>"), "not with JSON"),
        ((201, {}, "[]"), "not an object"),
        ((201, {}, json.dumps({"hits": {"total": 0, "hits": []}})), "no aggregations"),
        (
            (
                201,
                {},
                json.dumps(
                    {
                        "aggregations": {
                            "users": {
                                "buckets": [
                                    {"key": "u0001", "window": {"calls": {"value": "many"}}}
                                ]
                            }
                        }
                    }
                ),
            ),
            "calls = 'many'",
        ),
        (
            (
                201,
                {},
                json.dumps({"aggregations": {"users": {"sum_other_doc_count": 4, "buckets": []}}}),
            ),
            "left users out",
        ),
    ],
)
def test_a_malformed_answer_is_fatal_and_says_what_was_wrong(
    fake: FakeMoesif, make_source: MakeSource, answer: Any, complaint: str
) -> None:
    fake.fail(EVENTS, lambda n: True, answer)
    with pytest.raises(FatalError, match=re.escape(complaint)):
        make_source().read()


def test_a_users_page_without_hits_is_fatal(fake: FakeMoesif, make_source: MakeSource) -> None:
    fake.fail(USERS, lambda n: True, (200, {}, json.dumps({"took": 1})))
    with pytest.raises(FatalError, match=r"no hits\.hits list"):
        make_source().read()


def test_a_rate_limit_is_waited_out_as_moesif_asks(
    fake: FakeMoesif, world: World, make_source: MakeSource, clock: Clock
) -> None:
    fake.fail(
        EVENTS,
        lambda n: n == 2,
        (429, {"Retry-After": "7"}, json.dumps({"message": "Too Many Requests"})),
    )
    rows, _ = read_all(make_source())
    assert rows == expected_rows(world, {k: v for k, v in FIELDS.items() if k != "email"}, ROUTES)
    assert len(calls_to(fake, EVENTS)) == 5 + 1
    assert clock.slept and max(clock.slept) >= 7


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectionError("connection reset by peer"), requests.ReadTimeout("read timed out")],
)
def test_a_dropped_connection_or_timeout_is_retried(
    fake: FakeMoesif, world: World, make_source: MakeSource, failure: Exception
) -> None:
    fake.fail(USERS, lambda n: n in (2, 3), failure)
    rows, _ = read_all(make_source())
    assert len(rows) == 240


def test_a_5xx_storm_beyond_the_retry_limit_is_fatal(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    fake.fail(USERS, lambda n: True, (503, {}, json.dumps({"message": "Service Unavailable"})))
    with pytest.raises(FatalError, match="still failing after 6 attempts"):
        make_source().read()
    assert len(fake.calls) == 6


def test_a_page_failing_midway_raises_after_the_rows_already_read(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    fake.fail(USERS, lambda n: n >= 2, (500, {}, json.dumps({"message": "Internal Server Error"})))
    result = make_source().read()
    got = []
    with pytest.raises(FatalError):
        for row in result.rows:
            got.append(row)
    assert len(got) == 60 - 3  # the first page, less its users without email


def test_a_users_search_that_ignores_search_after_is_fatal_not_endless(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    first_page = fake.search_users({"size": 60, "sort": [{"user_id.raw": "asc"}, {"_id": "asc"}]})
    fake.fail(USERS, lambda n: n >= 2, (200, {}, json.dumps(first_page)))
    rows = make_source().read().rows
    with pytest.raises(FatalError, match="did not move past search_after"):
        list(rows)
    assert len(calls_to(fake, USERS)) == 2


# -- check() --------------------------------------------------------------------------------------


def test_check_proves_the_token_reads_users_and_events_cheaply(
    fake: FakeMoesif, make_source: MakeSource
) -> None:
    with capture_logs() as logs:
        make_source().check()
    assert [(c["path"], c["body"].get("size")) for c in fake.calls] == [(USERS, 0), (COUNT, None)]
    assert calls_to(fake, COUNT)[0]["params"] == {"from": "-24h", "to": "now"}
    assert logs[-1]["users"] == 250
    assert logs[-1]["api_calls_in_window"] > 0


def test_check_with_a_refused_token(fake: FakeMoesif, make_source: MakeSource) -> None:
    with pytest.raises(CredentialsError, match="MOESIF_MANAGEMENT_TOKEN"):
        make_source(token="expired").check()


# -- config and formats ---------------------------------------------------------------------------


def moesif_problems(source: dict[str, Any], **sections: Any) -> dict[str, str]:
    """The config problems, by TOML key, of a config with this Moesif [source]."""
    with pytest.raises(ConfigError) as raised:
        parse_config({"source": {"kind": "moesif", **source}, **sections})
    return {p.key: p.message for p in raised.value.problems}


def test_output_columns_that_clash_are_config_errors_named_by_key_all_at_once() -> None:
    found = moesif_problems(
        {
            "fields": {"email": "email", "role": "metadata.role"},
            "routes": {
                "used_event_count": "/a",
                "email": "/b",
                "role": "/c",
                "calls_payments": "/payments",
            },
        },
        hubspot={"requests_per_10s": 0},  # another section's problem comes out with them
    )
    assert set(found) == {
        "source.routes.used_event_count",
        "source.routes.email",
        "source.routes.role",
        "hubspot.requests_per_10s",
    }
    assert "usage column 'used_event_count'" in found["source.routes.used_event_count"]
    assert "the `email` column" in found["source.routes.email"]
    assert "clashes with source.fields.role" in found["source.routes.role"]

    found = moesif_problems(
        {
            "fields": {"email": "email", "error_count": "metadata.errors"},
            "routes": {"last_event_at": "/a"},
        }
    )
    assert set(found) == {"source.fields.error_count", "source.routes.last_event_at"}
    assert "usage column 'error_count'" in found["source.fields.error_count"]


@pytest.mark.parametrize("column", ["used_event_count", "error_count", "first_event_at",
                                    "last_event_at"])
def test_every_usage_column_is_reserved(column: str) -> None:
    found = moesif_problems({"routes": {column: "/payments"}})
    assert list(found) == [f"source.routes.{column}"]
    found = moesif_problems({"fields": {"email": "email", column: "metadata.x"}})
    assert list(found) == [f"source.fields.{column}"]


@pytest.mark.parametrize("fields", [{"role": "metadata.role"}, {"email": ""}, {"email": "  "}, {}])
def test_fields_must_map_email(fields: dict[str, str]) -> None:
    found = moesif_problems({"fields": fields})
    assert list(found) == ["source.fields"]
    assert "must map `email`" in found["source.fields"]


@pytest.mark.parametrize(
    "url", ["api.moesif.com/v1", "ftp://api.moesif.com/v1", "https://", "https://x/v1?org=1", ""]
)
def test_base_url_must_be_an_http_url(url: str) -> None:
    found = moesif_problems({"base_url": url})
    assert list(found) == ["source.base_url"]
    assert "http(s) URL" in found["source.base_url"]


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://api.moesif.com/v1/", "https://api.moesif.com/v1"),
        ("https://moesif-proxy:9500/api/v1", "https://moesif-proxy:9500/api/v1"),
    ],
)
def test_base_url_loses_its_trailing_slash(url: str, kept: str) -> None:
    config = parse_config({"source": {"kind": "moesif", "base_url": url}})
    assert isinstance(config.source, MoesifSource)
    assert config.source.base_url == kept


def test_the_defaults_are_a_valid_moesif_source() -> None:
    config = parse_config({"source": {"kind": "moesif"}})
    assert isinstance(config.source, MoesifSource)
    assert config.source.fields == {"email": "email"}
    assert MoesifUsageSource(config.source, TOKEN, now=NOW).columns == (
        "email",
        "used_event_count",
        "error_count",
        "first_event_at",
        "last_event_at",
    )


def test_the_readmes_moesif_block_is_a_valid_config() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### The Moesif source", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    config = parse_config(tomllib.loads(block))
    assert isinstance(config.source, MoesifSource)
    assert config.source.lookback == "-90d"
    assert MoesifUsageSource(config.source, TOKEN, now=NOW).columns == (
        "email",
        "signed_up_at",
        "role",
        "company_id",
        "calls_payments",
        "used_event_count",
        "error_count",
        "first_event_at",
        "last_event_at",
    )


def test_validate_reports_moesif_config_problems_with_the_others(tmp_path: Path) -> None:
    """`funnelsync validate` exits 2 naming every key before it calls Moesif or HubSpot."""
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        """
[source]
kind = "moesif"
base_url = "api.moesif.com/v1"

[source.fields]
role = "metadata.role"

[source.routes]
used_event_count = "/payments"

[hubspot]
requests_per_10s = 0
"""
    )
    result = subprocess.run(
        [sys.executable, "-m", "funnelsync", "-c", str(config_file), "validate"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    for key in (
        "source.base_url",
        "source.fields",
        "source.routes.used_event_count",
        "hubspot.requests_per_10s",
    ):
        assert f"  - {key}: " in result.stderr
    assert "4 problem(s)" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_moesif_section_of_config_toml_builds_a_source() -> None:
    config = parse_config(
        {"source": {"kind": "moesif", "window": "-7d", "routes": {"calls_payments": "/payments"}}}
    )
    assert isinstance(config.source, MoesifSource)
    source = MoesifUsageSource(config.source, TOKEN, now=NOW)
    assert source.key == "email"
    assert source.columns[0] == "email" and "calls_payments" in source.columns
    source.close()


@pytest.mark.parametrize(
    ("text", "param", "start"),
    [
        ("-24h", "-24h", datetime(2024, 5, 13, 10, tzinfo=UTC)),
        ("-1d", "-1d", datetime(2024, 5, 13, tzinfo=UTC)),
        ("-90d", "-90d", LOOKBACK_START),
        ("-2w", "-2w", datetime(2024, 4, 29, tzinfo=UTC)),
        ("-1M", "-1M", datetime(2024, 4, 1, tzinfo=UTC)),
        ("-1y", "-12M", datetime(2023, 5, 1, tzinfo=UTC)),  # Moesif has no year unit
        ("-30m", "-30m", datetime(2024, 5, 14, 10, 7, tzinfo=UTC)),
    ],
)
def test_relative_times_are_sent_as_moesif_reads_them(
    text: str, param: str, start: datetime
) -> None:
    relative = RelativeTime.parse(text)
    assert relative.param == param
    assert relative.start(NOW) == start == moesif_relative(param, NOW)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-07-27T21:52:58.0990000Z", datetime(2023, 7, 27, 21, 52, 58, 99000, tzinfo=UTC)),
        ("2023-07-09T06:14:58.550", datetime(2023, 7, 9, 6, 14, 58, 550000, tzinfo=UTC)),
        ("2023-07-09T08:14:58+02:00", datetime(2023, 7, 9, 6, 14, 58, tzinfo=UTC)),
        (1688883298550.0, datetime(2023, 7, 9, 6, 14, 58, 550000, tzinfo=UTC)),
        (None, None),
        ("yesterday", None),
    ],
)
def test_moesif_times_are_utc(value: Any, expected: datetime | None) -> None:
    assert parse_moesif_time(value) == expected


def test_fixture_world_covers_what_the_tests_claim(world: World) -> None:
    assert len(world.users) == 250
    assert any(e.get("weight") not in (None, 1) for e in world.events)
    window_times = [when(e["request"]["time"]) for e in world.events]
    assert any(WINDOW_START <= t < NOW - timedelta(hours=24) for t in window_times), (
        "calls in the hour that -24h rounds back to"
    )
    assert len({t for t in window_times if t >= WINDOW_START}) > 500, "calls spread over the window"
    assert any(t < LOOKBACK_START for t in window_times), "calls older than the lookback"
