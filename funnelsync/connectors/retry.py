"""One retry policy for every remote: retry `RetriableError` only, by class, never by text.

Waits are jittered exponential, but never shorter than the remote's `Retry-After`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from funnelsync.errors import RetriableError

T = TypeVar("T")
log = structlog.get_logger("funnelsync.retry")


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


def call_with_retries(
    fn: Callable[..., T],
    *args: Any,
    attempts: int = 6,
    initial_wait: float = 0.5,
    max_wait: float = 30.0,
    sleep: Callable[[float], None] | None = None,
    **kwargs: Any,
) -> T:
    retrying = Retrying(
        retry=retry_if_exception_type(RetriableError),
        stop=stop_after_attempt(attempts),
        wait=_WaitHonouringRetryAfter(initial_wait, max_wait),
        before_sleep=_log_retry,
        reraise=True,
        **({"sleep": sleep} if sleep else {}),
    )
    return retrying(fn, *args, **kwargs)
