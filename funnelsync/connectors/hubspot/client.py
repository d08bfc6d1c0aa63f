"""Every HubSpot request goes through `HubSpotApi.call`: the shared rate budget, retries by
error class, and the error table. The generated client's own retries stay off.

A request that is not idempotent (an enrollment) is resent only when it surely never reached
HubSpot (the connection was refused, a 429). When its answer is lost after it was sent, or
HubSpot answers 5xx, the call raises `OutcomeUnknown` at once: the caller settles it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

import hubspot
import requests
import structlog
import urllib3
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.lists.exceptions import ApiException as ListsApiException
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException

from funnelsync.connectors.budget import RequestBudget
from funnelsync.connectors.hubspot.errors import HubSpotAnswer, classify, parse_body
from funnelsync.connectors.hubspot_settings import HubSpotSettings
from funnelsync.connectors.retry import call_with_retries
from funnelsync.errors import FatalError, OutcomeUnknown, RateLimited, RetriableError, StopRequested

log = structlog.get_logger("funnelsync.hubspot")

API_EXCEPTIONS = (ContactsApiException, PropertiesApiException, ListsApiException)


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
        # api_request ignores `host` and reads `base_url`: give both so every path goes one place.
        self.client = hubspot.Client.create(
            access_token=token, host=settings.base_url, base_url=settings.base_url
        )
        self.budget = budget or RequestBudget(
            settings.requests_per_10s, 10.0, daily_limit=settings.daily_request_budget, stop=self.stop
        )
        self.retry_attempts = retry_attempts
        self._sleep = sleep or self._wait
        self.calls = 0
        self.rate_limited = 0

    def call(
        self,
        what: str,
        send: Callable[..., tuple[Any, int, Mapping[str, str]]],
        *args: Any,
        allow: Collection[int] = (),
        idempotent: bool = True,
        **kwargs: Any,
    ) -> tuple[Any, int]:
        """Send one request and return (data, status). `send` is a generated
        `*_with_http_info` method (raises on HTTP errors) or a function that answers
        (body, status, headers) whatever the status.

        Statuses in `allow` come back instead of raising (e.g. 404 for "not there yet").
        """

        def attempt() -> tuple[Any, int]:
            if self.stop.is_set():
                raise StopRequested(f"stopped before {what}")
            self.budget.acquire()
            self.calls += 1
            try:
                data, status, headers = send(*args, _request_timeout=self.settings.timeout_seconds, **kwargs)
            except API_EXCEPTIONS as exc:
                self.budget.answered()
                answer = HubSpotAnswer(int(exc.status or 0), parse_body(exc.body), dict(exc.headers or {}))
                return self._refused(answer, allow, idempotent)
            except (urllib3.exceptions.HTTPError, requests.ConnectionError, requests.Timeout) as exc:
                self.budget.answered()
                if idempotent or _never_sent(exc):
                    raise RetriableError(f"no answer from HubSpot ({type(exc).__name__})") from None
                raise OutcomeUnknown(f"HubSpot's answer to {what} was lost ({type(exc).__name__})") from None
            self.budget.answered()
            if status >= 400:
                answer = HubSpotAnswer(status, data if isinstance(data, dict) else {}, headers)
                return self._refused(answer, allow, idempotent)
            self._observe(dict(headers or {}))
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

    def _refused(self, answer: HubSpotAnswer, allow: Collection[int], idempotent: bool) -> tuple[Any, int]:
        self._observe(answer.headers)
        if answer.status in allow:
            return None, answer.status
        error = classify(answer, self.settings.token_env)
        if not idempotent and type(error) is RetriableError:  # a 5xx: HubSpot may have applied it
            raise OutcomeUnknown(str(error), retry_after=error.retry_after) from None
        if isinstance(error, RateLimited):
            error.retry_after = error.retry_after or self.rate_limit_wait
            self.budget.pause(error.retry_after)
            self.rate_limited += 1
        raise error from None

    def _observe(self, headers: Mapping[str, str]) -> None:
        self.budget.observe(
            _header_int(headers, "X-HubSpot-RateLimit-Remaining"),
            _header_int(headers, "X-HubSpot-RateLimit-Interval-Milliseconds"),
            _header_int(headers, "X-HubSpot-RateLimit-Daily-Remaining"),
        )
