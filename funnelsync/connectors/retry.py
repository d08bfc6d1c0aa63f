"""One retry policy for every remote: retry `RetriableError` only, by class, never by text.

An `OutcomeUnknown` is never retried here: the request may have been applied, and only its
caller can settle that against the remote before sending it again.

Waits are jittered exponential, but never shorter than the remote's `Retry-After`. Being rate
limited is not a failure: 429s are waited out for up to `rate_limit_patience` seconds and do
not use up the attempts, which count failures (5xx, timeouts, resets). Each remote's wait is
read from its answer by the one `Retry-After` reader here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import structlog
import tenacity
from tenacity import RetryCallState, Retrying, retry_if_exception
from tenacity.wait import wait_random_exponential

from funnelsync.errors import OutcomeUnknown, RateLimited, RetriableError

T = TypeVar("T")
log = structlog.get_logger("funnelsync.retry")


def retry_after_seconds(header: str | None, *, now: datetime | None = None) -> float | None:
    """The wait a `Retry-After` header asks for: seconds, or an HTTP date; never negative. None
    when there is none, or it cannot be read (then the caller's own backoff applies)."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # a date "-0000" reads as local time, but HTTP dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None  # "inf" or "nan" would wait forever


class _WaitHonouringRetryAfter:
    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_random_exponential(multiplier=initial, max=maximum)

    def __call__(self, state: RetryCallState) -> float:
        backoff = float(self._backoff(state))
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        return max(backoff, retry_after) if retry_after else backoff


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "retrying",
        attempt=state.attempt_number,
        wait_seconds=round(state.upcoming_sleep, 2),
        error=type(error).__name__,
        reason=str(error),
    )


class _StopAfterFailures:
    def __init__(self, attempts: int, rate_limit_patience: float) -> None:
        self.attempts = attempts
        self.patience = rate_limit_patience
        self.failures = 0

    def __call__(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimited):
            return (state.seconds_since_start or 0.0) >= self.patience
        self.failures += 1
        return self.failures >= self.attempts


def _worth_retrying(error: BaseException) -> bool:
    return isinstance(error, RetriableError) and not isinstance(error, OutcomeUnknown)


def call_with_retries(
    fn: Callable[..., T],
    *args: Any,
    attempts: int = 6,
    initial_wait: float = 0.5,
    max_wait: float = 30.0,
    rate_limit_patience: float = 600.0,
    sleep: Callable[[float], None] | None = None,
    **kwargs: Any,
) -> T:
    retrying = Retrying(
        retry=retry_if_exception(_worth_retrying),
        stop=_StopAfterFailures(attempts, rate_limit_patience),
        wait=_WaitHonouringRetryAfter(initial_wait, max_wait),
        before_sleep=_log_retry,
        reraise=True,
        sleep=sleep or tenacity.nap.sleep,
    )
    return retrying(fn, *args, **kwargs)
