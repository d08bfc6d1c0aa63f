"""HubSpot's answers -> funnelsync's error classes, in one table.

Decisions use the status code and HubSpot's structured fields (`policyName`, `category`,
`errors[].code`), never the message text; the text is only shown to the user.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from funnelsync.connectors.retry import retry_after_seconds
from funnelsync.errors import (
    BatchRejected,
    CredentialsError,
    DailyLimitReached,
    FatalError,
    FunnelsyncError,
    RateLimited,
    RetriableError,
)

RETRIABLE_STATUSES = frozenset({500, 502, 503, 504, 520, 521, 522, 523, 524})


@dataclass(frozen=True)
class HubSpotAnswer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]

    @property
    def message(self) -> str:
        return str(self.body.get("message") or "").strip() or f"HTTP {self.status}"

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers.get("Retry-After") or self.headers.get("retry-after"))

    def required_scopes(self) -> list[str]:
        scopes: list[str] = []
        for error in self.body.get("errors") or []:
            context = error.get("context") or {}
            for key in ("requiredGranularScopes", "requiredScopes", "scopes"):
                scopes += [s for s in context.get(key) or [] if s not in scopes]
        return scopes


def parse_body(raw: bytes | str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"message": (raw.decode(errors="replace") if isinstance(raw, bytes) else raw)[:300]}
    return body if isinstance(body, dict) else {"errors": body}


def _unauthorized(answer: HubSpotAnswer, token_env: str) -> FunnelsyncError:
    return CredentialsError(
        f"HubSpot refused the access token in ${token_env} (401: {answer.message}). "
        "Check that the variable holds a current Service Key (or a private app's or OAuth access "
        "token) for this portal."
    )


def _forbidden(answer: HubSpotAnswer, token_env: str) -> FunnelsyncError:
    scopes = answer.required_scopes()
    needed = f" it needs the scope(s) {', '.join(scopes)}" if scopes else " a scope is missing"
    return CredentialsError(
        f"HubSpot says the token in ${token_env} may not do this (403):{needed}. "
        "Add the scope(s) to the Service Key in HubSpot (Development > Keys > Service keys; for a "
        "legacy private app, Settings > Integrations > Private apps), "
        f"then update ${token_env} if the token changed. HubSpot said: {answer.message}"
    )


def _rate_limited(answer: HubSpotAnswer, token_env: str) -> FunnelsyncError:
    if answer.body.get("policyName") == "DAILY":
        return DailyLimitReached(
            "HubSpot's daily API limit for this portal is spent (429 DAILY); the run stops "
            "cleanly and the next run after the daily reset carries on"
        )
    return RateLimited(
        f"HubSpot rate limit ({answer.body.get('policyName') or 'unknown policy'})",
        retry_after=answer.retry_after,
    )


def _server_error(answer: HubSpotAnswer, token_env: str) -> FunnelsyncError:
    return RetriableError(f"HubSpot answered {answer.status}: {answer.message}", retry_after=answer.retry_after)


def _validation(answer: HubSpotAnswer, token_env: str) -> FunnelsyncError:
    codes = [str(e.get("code")) for e in answer.body.get("errors") or [] if e.get("code")]
    return BatchRejected(answer.message, body=answer.body,
                         code=codes[0] if codes else str(answer.body.get("category") or ""))


def _other(answer: HubSpotAnswer, token_env: str) -> FunnelsyncError:
    return FatalError(f"HubSpot answered {answer.status}: {answer.message}")


# status -> what it means. 400 is a refusal of the request's content: for a batch that means
# some rows; the caller narrows it down.
ERROR_TABLE = {
    400: _validation,
    401: _unauthorized,
    403: _forbidden,
    429: _rate_limited,
}


def classify(answer: HubSpotAnswer, token_env: str) -> FunnelsyncError:
    if answer.status in ERROR_TABLE:
        return ERROR_TABLE[answer.status](answer, token_env)
    if answer.status in RETRIABLE_STATUSES or answer.status >= 500:
        return _server_error(answer, token_env)
    return _other(answer, token_env)
