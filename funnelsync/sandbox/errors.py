"""HubSpot's error answers, built in one place so every endpoint fails the way HubSpot does.

Every body carries `status: "error"`, `message`, `correlationId` and `category`; some add
`subCategory`, `errors[]` ({message, code, context}), `context` or `links`.
"""

from __future__ import annotations

import uuid
from typing import Any

SCOPES_LINK = "https://developers.hubspot.com/scopes"
OAUTH_LINK = "https://developers.hubspot.com/docs/methods/auth/oauth-overview"


def correlation_id() -> str:
    return str(uuid.uuid4())


class HubSpotError(Exception):
    """An answer HubSpot gives instead of doing the call; raised by handlers, sent by the server."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, list[str]] | None = None,
        sub_category: str | None = None,
        links: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.errors = errors
        self.context = context
        self.sub_category = sub_category
        self.links = links
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id(),
        }
        body.update(self.extra)
        if self.sub_category is not None:
            body["subCategory"] = self.sub_category
        if self.context is not None:
            body["context"] = self.context
        if self.errors is not None:
            body["errors"] = self.errors
        if self.links is not None:
            body["links"] = self.links
        body["category"] = self.category
        return body


def error_detail(message: str, code: str | None = None, **context: list[str]) -> dict[str, Any]:
    """One entry of `errors[]`, as in HubSpot's ErrorDetail."""
    detail: dict[str, Any] = {"message": message}
    if code is not None:
        detail["code"] = code
    if context:
        detail["context"] = context
    return detail


def validation_error(message: str, errors: list[dict[str, Any]] | None = None,
                     sub_category: str | None = None) -> HubSpotError:
    return HubSpotError(400, "VALIDATION_ERROR", message, errors=errors, sub_category=sub_category)


def not_found(message: str, context: dict[str, list[str]] | None = None) -> HubSpotError:
    return HubSpotError(404, "OBJECT_NOT_FOUND", message, context=context)


def conflict(message: str) -> HubSpotError:
    return HubSpotError(409, "CONFLICT", message)


def invalid_authentication() -> HubSpotError:
    return HubSpotError(
        401,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
        f"you can find more details at {OAUTH_LINK}",
    )


def missing_scopes(required: tuple[str, ...]) -> HubSpotError:
    return HubSpotError(
        403,
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call. "
        f"Read more about required scopes here: {SCOPES_LINK}.",
        errors=[error_detail("One or more of the following scopes are required.",
                             requiredGranularScopes=list(required))],
        links={"scopes": SCOPES_LINK},
    )


RATE_LIMIT_MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    "DAILY": "You have reached your daily limit.",
}


def rate_limited(policy: str) -> HubSpotError:
    # HubSpot's 429 names the policy; `category` is added so every sandbox error body has one.
    return HubSpotError(
        429,
        "RATE_LIMITS",
        RATE_LIMIT_MESSAGES[policy],
        extra={"errorType": "RATE_LIMIT", "policyName": policy},
    )


def unknown_route(method: str, path: str) -> HubSpotError:
    return HubSpotError(404, "OBJECT_NOT_FOUND",
                        f"Unable to route {method} {path}: resource not found")


def method_not_allowed(method: str, path: str) -> HubSpotError:
    return HubSpotError(405, "METHOD_NOT_ALLOWED",
                        f"HTTP method {method} is not supported by {path}")


def server_error(status: int) -> HubSpotError:
    """What an injected 4xx/5xx fault answers: the body HubSpot gives for that status."""
    if status == 429:
        return rate_limited("TEN_SECONDLY_ROLLING")
    if status == 401:
        return invalid_authentication()
    if status >= 500:
        category = "INTERNAL_ERROR" if status == 500 else "SERVICE_UNAVAILABLE"
        return HubSpotError(status, category, "internal error")
    return HubSpotError(status, "VALIDATION_ERROR", f"request failed with status {status}")
