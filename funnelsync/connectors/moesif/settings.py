"""`[source]` with `kind = "moesif"`: the settings of the Moesif source (`source.py`).

It imports nothing of its package, so `config.py` can import it before the connector."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from funnelsync.settings import _api_base_url, _env_name, _Strict


class MoesifSource(_Strict):
    kind: Literal["moesif"] = Field(description="Moesif's Management API: one row per Moesif user with an email.")
    base_url: str = Field(default="https://api.moesif.com/v1", description=(
        "The Management API's base URL: https://, or plain http:// to a loopback address only. A "
        "self-hosted proxy: https://host:9500/api/v1."))
    token_env: Annotated[str, Field(min_length=1, description=(
        "The environment variable that holds the Management API key (scopes read:users and read:events)."
    ))] = "MOESIF_MANAGEMENT_TOKEN"
    window: str = Field(default="-24h", description=(
        "The usage window, as Moesif reads relative times (-<number><s|m|h|d|w|M|y>): the counts are of API "
        "calls in it."))
    lookback: str = Field(default="-90d", description=(
        "How far back first_event_at and last_event_at look, as a relative time like window."))
    fields: dict[str, str] = Field(default_factory=lambda: {"email": "email"}, description=(
        "Output column = path in the Moesif user profile. Must map email. A column must not repeat another "
        "or a computed one (used_event_count, error_count, first_event_at, last_event_at)."),
        examples=[{"email": "email", "role": "metadata.role", "signed_up_at": "metadata.signed_up_at"}])
    routes: dict[str, str] = Field(default_factory=dict, description=(
        "Output column = the number of API calls to this route in the window."),
        examples=[{"calls_payments": "/payments"}])
    page_size: int = Field(default=100, ge=1, le=1000, description=(
        "Users per page; a sync costs two requests a page plus one."))
    queries_per_minute: int = Field(default=450, ge=1, le=500, description=(
        "The pace of requests to Moesif, which allows about 500 a minute."))

    key: Literal["email"] = Field(default="email", description=(
        "Always email: Moesif users are matched to contacts by their email."))

    _check_env = field_validator("token_env")(_env_name)

    #: the columns the source computes from the events, besides [source.fields] and [source.routes]
    USAGE_COLUMNS: ClassVar[tuple[str, ...]] = (
        "used_event_count",
        "error_count",
        "first_event_at",
        "last_event_at",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _api_base_url(value, "https://api.moesif.com/v1")

    @field_validator("window", "lookback")
    @classmethod
    def _relative_time(cls, value: str) -> str:
        if not re.match(r"^-\d+[smhdwMy]$", value):
            raise ValueError(f"{value!r} is not a relative time such as -24h, -7d or -1M")
        return value

    # The output columns are one namespace: `email`, the [source.fields] columns, the
    # [source.routes] columns and the usage columns. Each clash is reported at the key that names
    # a column a second time (`source.routes.used_event_count`), all of them at once.

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [cls._clash(name, None) for name in value if name in cls.USAGE_COLUMNS]
        email = value.get("email")
        if not isinstance(email, str) or not email.strip():
            message = 'must map `email` (e.g. email = "email"): users are matched to contacts by it'
            problems.append(cls._problem((), message))
        if problems:
            raise ValidationError.from_exception_data("fields", problems)
        return value

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        fields = info.data.get("fields") or {}  # absent when [source.fields] is itself wrong
        problems = [
            cls._clash(name, "source.fields" if name in fields else None)
            for name in value
            if name in cls.USAGE_COLUMNS or name == "email" or name in fields
        ]
        if problems:
            raise ValidationError.from_exception_data("routes", problems)
        return value

    @classmethod
    def _clash(cls, name: str, table: str | None) -> InitErrorDetails:
        if name in cls.USAGE_COLUMNS:
            taken = f"the usage column {name!r} that the Moesif source computes"
        elif name == "email":
            taken = "the `email` column, the contact's key"
        else:
            taken = f"{table}.{name}"
        return cls._problem((name,), f"output column {name!r} clashes with {taken}")

    @staticmethod
    def _problem(loc: tuple[str, ...], message: str) -> InitErrorDetails:
        """A problem at `loc` below the field being validated (pydantic adds the field's path)."""
        return InitErrorDetails(
            type=PydanticCustomError("value_error", message), loc=loc, input=None
        )

