"""The wire format, checked with the `hubspot` client's own generated models.

Request bodies are deserialised into the model the client would have sent, answers are built
through the model the client will deserialise, both with `client_side_validation=True`: so a
required field missing or an enum value HubSpot does not know is caught here, not in production.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType
from typing import Any

import hubspot.crm.contacts
import hubspot.crm.lists
import hubspot.crm.properties
import hubspot.events.send

from .errors import HubSpotError, validation_error

_checking: ContextVar[bool] = ContextVar("checking_wire_format", default=True)


@contextmanager
def checking_wire_format(wanted: bool) -> Iterator[None]:
    """Whether the models check the bodies of the calls answered inside (unchecked, a body is
    taken and answered as it is)."""
    token = _checking.set(wanted)
    try:
        yield
    finally:
        _checking.reset(token)


class _RawBody:
    """What `ApiClient.deserialize` reads: an object with the body bytes in `.data`."""

    def __init__(self, data: Any) -> None:
        self.data = json.dumps(data)


class ModelBook:
    """The models of one `hubspot` API package, strictly configured."""

    def __init__(self, package: ModuleType) -> None:
        configuration = package.Configuration()
        configuration.client_side_validation = True
        self._client = package.ApiClient(configuration=configuration)
        self._wire = _wire_client(package)(configuration=configuration)

    def read(self, model_name: str, data: Any) -> dict[str, Any]:
        """The request body as the model sees it (unknown keys dropped); 400 if it rejects it."""
        if not _checking.get():
            if not isinstance(data, dict):
                raise validation_error("Invalid input JSON: the body is not an object")
            return data
        try:
            model = self._wire.deserialize(_RawBody(data), model_name)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise validation_error(f"Invalid input JSON: {exc}") from exc
        if model is None:
            raise validation_error("Invalid input JSON: the body is empty")
        checked: dict[str, Any] = self._wire.sanitize_for_serialization(model)
        return checked

    def answer(self, model_name: str, data: dict[str, Any]) -> dict[str, Any]:
        """`data` passed through the response model, as the JSON the client will read."""
        if not _checking.get():
            return data
        try:
            # the stock client must be able to read it, dates included, exactly as in production
            self._client.deserialize(_RawBody(data), model_name)
            model = self._wire.deserialize(_RawBody(data), model_name)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise HubSpotError(500, "INTERNAL_ERROR",
                               f"sandbox built an answer {model_name} rejects: {exc}") from exc
        answered: dict[str, Any] = self._wire.sanitize_for_serialization(model)
        return answered


def _wire_client(package: ModuleType) -> type:
    """The package's ApiClient keeping date-times as the strings HubSpot sends.

    The stock client turns them into `datetime` and would serialise them back with
    `isoformat()` (`+00:00`, microseconds), which is not HubSpot's `...T10:30:00.123Z`.
    """
    base = package.ApiClient
    mapping = {**base.NATIVE_TYPES_MAPPING, "date": str, "datetime": str}
    return type(f"Wire{base.__name__}", (base,), {"NATIVE_TYPES_MAPPING": mapping})


CONTACTS = ModelBook(hubspot.crm.contacts)
PROPERTIES = ModelBook(hubspot.crm.properties)
LISTS = ModelBook(hubspot.crm.lists)
EVENTS = ModelBook(hubspot.events.send)  # occurrences only: the client has no event definition models
