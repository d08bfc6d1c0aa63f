"""Every HubSpot request goes through `HubSpotApi.request`: JSON over HTTPS on the configured API
version's paths (`paths.py`), the shared rate budget, retries by error class, and the error table.

A request that is not idempotent (an enrollment) is resent only when it surely never reached
HubSpot (the connection was refused, a 429). When its answer is lost after it was sent, or
HubSpot answers 5xx, the call raises `OutcomeUnknown` at once: the caller settles it.
"""

from __future__ import annotations

import json as json_module
import math
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

import requests
import structlog
import urllib3

from funnelsync import telemetry
from funnelsync.connectors.budget import RequestBudget, Slot
from funnelsync.connectors.hubspot.errors import HubSpotAnswer, classify, parse_body
from funnelsync.connectors.hubspot.paths import ApiPaths
from funnelsync.connectors.hubspot_settings import HubSpotSettings
from funnelsync.connectors.retry import call_with_retries
from funnelsync.errors import (
    DailyLimitReached,
    FatalError,
    OutcomeUnknown,
    RateLimited,
    RetriableError,
    StopRequested,
)

log = structlog.get_logger("funnelsync.hubspot")
Send = Callable[..., requests.Response]  # its body not yet read
JSON_CONTENT = {"Content-Type": "application/json"}
# a lost answer: no connection, no answer in time, or an answer cut short
LOST = (urllib3.exceptions.HTTPError, requests.ConnectionError, requests.Timeout,
        requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
MOST_IN_FLIGHT = 32  # whatever the latency: more would only wait for the budget

# path part -> the kind of endpoint, for the request metrics (never a path with ids in it)
ENDPOINT_KINDS = (("/batch/upsert", "contacts_upsert"), ("/batch/read", "contacts_read"),
                  ("/search", "contacts_search"), ("/memberships", "list_memberships"), ("/lists", "lists"),
                  ("/properties", "properties"), ("/workflows", "workflows"), ("/sequences", "sequences"),
                  ("/event-definitions", "event_definitions"), ("/events", "events"),
                  ("/account-info", "account"), ("/contacts", "contacts"))


def endpoint_kind(path: str) -> str:
    return next((kind for part, kind in ENDPOINT_KINDS if part in path), "other")


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _never_sent(error: Exception) -> bool:
    """The connection was never made, so HubSpot cannot have seen the request."""
    if isinstance(error, requests.ConnectTimeout | urllib3.exceptions.NewConnectionError
                  | urllib3.exceptions.ConnectTimeoutError):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)


class HubSpotApi:
    def __init__(
        self,
        settings: HubSpotSettings,
        token: str,
        *,
        budget: RequestBudget | None = None,
        retry_attempts: int = 6,
        rate_limit_wait: float = 1.0,
        sleep: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.rate_limit_wait = rate_limit_wait  # after a 429 that carries no Retry-After
        self.paths = ApiPaths(settings.api_version)
        self._token = token
        self._sessions = threading.local()  # a requests.Session is not shared between threads
        self.budget = budget or RequestBudget(
            settings.requests_per_10s, 10.0, daily_limit=settings.daily_request_budget, stop=self.stop
        )
        self.retry_attempts = retry_attempts
        self._sleep = sleep or self._wait
        self.calls = 0
        self.rate_limited = 0
        self._counting = threading.Lock()  # requests go out from several threads at once

    def request(self, what: str, method: str, path: str, *, params: Mapping[str, str | int] | None = None,
                json: Any = None, allow: Collection[int] = (), idempotent: bool = True) -> tuple[Any, int]:
        """Send one request to HubSpot and return (body, status): the body as JSON ({} when empty).

        Statuses in `allow` come back instead of raising (e.g. 404 for "not there yet").
        """

        body, headers = (None, None) if json is None else (_json_bytes(json), JSON_CONTENT)

        def send(*, _request_timeout: float) -> requests.Response:
            return self._session().request(method, self.settings.base_url + path, params=params, data=body,
                                           headers=headers, timeout=_request_timeout, stream=True)

        return self.call(what, send, kind=endpoint_kind(path), allow=allow, idempotent=idempotent)

    def requests_wanted_in_flight(self) -> int:
        """How many requests to keep in flight: `[hubspot].concurrency`, or (0) as many as the
        budget's rate times HubSpot's measured answer time, plus one."""
        if self.settings.concurrency:
            return self.settings.concurrency
        rate = self.budget.window_limit() / self.budget.interval
        return min(MOST_IN_FLIGHT, math.ceil(rate * self.budget.latency) + 1)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._sessions, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update({"Authorization": f"Bearer {self._token}", "Accept": "application/json"})
            self._sessions.session = session
        return session

    def call(self, what: str, send: Send, *, kind: str = "other", allow: Collection[int] = (),
             idempotent: bool = True) -> tuple[Any, int]:
        """Send one request through the budget and retries. `send` answers HubSpot's response,
        whatever the status, its body still unread; an HTTP error status is classified here.

        The budget counts the request from its status line: HubSpot has had it by then, and
        reading and parsing a large body must not keep the next request waiting."""

        def attempt() -> tuple[Any, int]:
            if self.stop.is_set():
                raise StopRequested(f"stopped before {what}")
            slot = self.budget.acquire()
            with self._counting:
                self.calls += 1
            try:
                response = send(_request_timeout=self.settings.timeout_seconds)
                self.budget.answered(slot)
                data, status, headers = _body(response), response.status_code, response.headers
            except LOST as exc:
                telemetry.hubspot_request(kind, "timeout" if isinstance(exc, requests.Timeout) else "reset")
                if idempotent or _never_sent(exc):
                    raise RetriableError(f"no answer from HubSpot ({type(exc).__name__})") from None
                raise OutcomeUnknown(f"HubSpot's answer to {what} was lost ({type(exc).__name__})") from None
            finally:
                self.budget.answered(slot)  # a request in flight counts until then; once answered, no change
            telemetry.hubspot_request(kind, status)
            if status >= 400:
                answer = HubSpotAnswer(status, data if isinstance(data, dict) else {}, dict(headers))
                return self._refused(answer, allow, idempotent, slot)
            self._observe(dict(headers or {}), slot)
            return data, status

        try:
            return call_with_retries(attempt, attempts=self.retry_attempts, sleep=self._sleep)
        except OutcomeUnknown:
            raise
        except RetriableError as exc:
            if self.stop.is_set():
                raise StopRequested(f"stopped while retrying {what}: {exc}") from None
            raise FatalError(
                f"HubSpot at {self.settings.base_url} did not answer {what} after "
                f"{self.retry_attempts} attempts: {exc}"
            ) from None

    def _wait(self, seconds: float) -> None:
        self.stop.wait(seconds)  # a stop cuts a wait between retries short

    def _refused(self, answer: HubSpotAnswer, allow: Collection[int], idempotent: bool,
                 slot: Slot) -> tuple[Any, int]:
        self._observe(answer.headers, slot)
        if answer.status in allow:
            return None, answer.status
        error = classify(answer, self.settings.token_env)
        if not idempotent and type(error) is RetriableError:  # a 5xx: HubSpot may have applied it
            raise OutcomeUnknown(str(error), retry_after=error.retry_after) from None
        if isinstance(error, RateLimited | DailyLimitReached):
            telemetry.rate_limited(str(answer.body.get("policyName") or "unknown"))
        if isinstance(error, RateLimited):
            error.retry_after = error.retry_after or self.rate_limit_wait
            self.budget.pause(error.retry_after)
            with self._counting:
                self.rate_limited += 1
        raise error from None

    def _observe(self, headers: Mapping[str, str], slot: Slot) -> None:
        self.budget.observe(
            _header_int(headers, "X-HubSpot-RateLimit-Remaining"),
            _header_int(headers, "X-HubSpot-RateLimit-Interval-Milliseconds"),
            _header_int(headers, "X-HubSpot-RateLimit-Daily-Remaining"),
            _header_int(headers, "X-HubSpot-RateLimit-Max"),
            answering=slot,
        )
        telemetry.rate_budget(self.budget.used_share(), self.budget.left_today())


def _json_bytes(payload: Any) -> bytes:
    """A request's body, made before the budget lets the request through."""
    return json_module.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def _body(response: requests.Response) -> Any:
    """The body as JSON ({} when empty); reading it may raise one of `LOST`."""
    with response:
        raw = response.content
    if response.status_code >= 400 or not raw:
        return parse_body(raw)
    try:
        return json_module.loads(raw)
    except ValueError:
        return {}
