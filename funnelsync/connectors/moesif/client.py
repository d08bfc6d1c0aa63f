"""The Management API client: POSTs Elasticsearch DSL bodies, under the query budget, with retries.

One table (`_answer`) maps Moesif's answers onto funnelsync's error classes; the retry policy is
the shared one and decides by class only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from funnelsync.connectors.budget import RequestBudget
from funnelsync.connectors.retry import call_with_retries, retry_after_seconds
from funnelsync.errors import CredentialsError, FatalError, RateLimited, RetriableError

#: what the connector needs: users search and events search/count
SCOPES = ("read:users", "read:events")
TIMEOUT = (10.0, 60.0)  # connect, read: a 90-day aggregation over a page of users can be slow
ATTEMPTS = 6


class MoesifClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        token_env: str,
        *,
        session: requests.Session,
        budget: RequestBudget,
        sleep: Callable[[float], None] | None = None,
        attempts: int = ATTEMPTS,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._token_env = token_env
        self._session = session
        self._budget = budget
        self._sleep = sleep
        self._attempts = attempts
        self.requests_sent = 0

    def post(
        self, path: str, body: Mapping[str, Any], params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The JSON object Moesif answers; raises CredentialsError or FatalError."""
        try:
            return call_with_retries(
                self._post_once, path, body, params, attempts=self._attempts, sleep=self._sleep
            )
        except RetriableError as exc:
            raise FatalError(
                f"Moesif {path} still failing after {self._attempts} attempts: {exc}"
            ) from None

    def _post_once(
        self, path: str, body: Mapping[str, Any], params: Mapping[str, str] | None
    ) -> dict[str, Any]:
        self._budget.acquire()
        self.requests_sent += 1
        try:
            response = self._session.post(
                self._base_url + path,
                params=params,
                json=body,
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                timeout=TIMEOUT,
            )
        except requests.Timeout:
            raise RetriableError(f"Moesif did not answer {path} in time") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise RetriableError(f"the connection to Moesif broke ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise FatalError(f"cannot send {path} to Moesif: {self._scrub(str(exc))}") from None
        return self._answer(path, response)

    def _answer(self, path: str, response: requests.Response) -> dict[str, Any]:
        status = response.status_code
        if status in (401, 403):
            # Moesif answers 401 both for a wrong token and for one without the scope.
            raise CredentialsError(
                f"Moesif refused the management token in {self._token_env} (HTTP {status}): it is "
                f"wrong, expired, or lacks the scopes {' and '.join(SCOPES)}. Create a Management "
                f"API key with those scopes and put it in {self._token_env}."
            ) from None
        if status == 402:
            raise FatalError(
                "Moesif answered 402 Payment Required: the organisation has no active "
                "subscription that includes the Management API"
            )
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is None:  # Moesif's limit runs per calendar minute
                wait = 60.0 - time.time() % 60.0
            self._budget.pause(wait)
            raise RateLimited(f"Moesif's query rate limit answered 429 to {path}", retry_after=wait)
        if status >= 500:
            raise RetriableError(f"Moesif answered {status} to {path}")
        if not 200 <= status < 300:
            raise FatalError(f"Moesif refused {path} (HTTP {status}): {self._message(response)}")
        try:
            body = response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            raise FatalError(
                f"Moesif answered {path} with {status} but not with JSON ({kind}): "
                f"{self._scrub(response.text[:120])!r}"
            ) from None
        if not isinstance(body, dict):
            raise FatalError(f"Moesif answered {path} with JSON that is not an object")
        return body

    def _message(self, response: requests.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        message: Any = None
        if isinstance(body, dict):
            message = body.get("message") or body.get("error") or body.get("moesif_error")
        return self._scrub(str(message or response.text[:300] or response.reason))

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text
