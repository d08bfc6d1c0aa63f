"""CRM search v3 for contacts: filter groups (ORed) of filters (ANDed), `limit`, `total`,
paging by `after`, with HubSpot's limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .calls import Answer, ApiCall
from .contacts_api import DEFAULT_PROPERTIES, _public_object
from .errors import error_detail, validation_error
from .schema import CONTACTS
from .store import Contact, SandboxStore

SEARCH_INPUT = "PublicObjectSearchRequest"
SEARCH_ANSWER = "CollectionResponseWithTotalSimplePublicObjectForwardPaging"
DEFAULT_LIMIT = 10
MAX_LIMIT = 200
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
MAX_RESULTS = 10_000  # a search pages through at most this many, however many match

ContactTest = Callable[[Contact], bool]


def search(call: ApiCall, store: SandboxStore) -> Answer:
    request = CONTACTS.read(SEARCH_INPUT, call.json())
    _refuse_what_the_sandbox_does_not_do(request)
    groups = _filter_groups(request.get("filterGroups") or [], store)
    limit = _limit(request.get("limit"))
    start = _after(request.get("after"))
    if start + limit > MAX_RESULTS:
        raise validation_error(f"The search pages through at most {MAX_RESULTS} results; "
                               f"after {start} with limit {limit} goes beyond.")
    found = [contact for contact in store.all_contacts() if _matches(contact, groups)]
    wanted = request.get("properties") or list(DEFAULT_PROPERTIES)
    body: dict[str, Any] = {"total": len(found),
                            "results": [_public_object(c, wanted) for c in found[start : start + limit]]}
    if start + limit < min(len(found), MAX_RESULTS):
        body["paging"] = {"next": {"after": str(start + limit)}}
    return Answer(200, CONTACTS.answer(SEARCH_ANSWER, body))


def _refuse_what_the_sandbox_does_not_do(request: dict[str, Any]) -> None:
    if request.get("query"):
        raise validation_error("The sandbox does not do free-text search (`query`); use filterGroups.")
    if request.get("sorts"):
        raise validation_error("The sandbox does not sort searches; results come by record id.")


def _filter_groups(groups: list[dict[str, Any]], store: SandboxStore) -> list[list[ContactTest]]:
    filters = sum(len(group["filters"]) for group in groups)
    if len(groups) > MAX_FILTER_GROUPS or filters > MAX_FILTERS or any(
            len(group["filters"]) > MAX_FILTERS_PER_GROUP for group in groups):
        message = (f"A search takes at most {MAX_FILTER_GROUPS} filterGroups of at most "
                   f"{MAX_FILTERS_PER_GROUP} filters, {MAX_FILTERS} filters in all.")
        raise validation_error(message, [error_detail(message, "TOO_MANY_FILTERS")])
    known = store.properties()
    return [[_contact_test(spec, known) for spec in group["filters"]] for group in groups]


def _contact_test(spec: dict[str, Any], known: dict[str, Any]) -> ContactTest:
    name, operator = spec["propertyName"], spec["operator"]
    if name not in known:
        message = f"Property {name!r} does not exist"
        raise validation_error(message, [error_detail(message, "PROPERTY_DOESNT_EXIST", propertyName=[name])])
    value = str(spec.get("value") or "").casefold()
    values = {str(v).casefold() for v in spec.get("values") or []}
    tests: dict[str, Callable[[str], bool]] = {
        "HAS_PROPERTY": lambda held: held != "",
        "NOT_HAS_PROPERTY": lambda held: held == "",
        "EQ": lambda held: held.casefold() == value,
        "NEQ": lambda held: held.casefold() != value,
        "IN": lambda held: held.casefold() in values,
        "NOT_IN": lambda held: held.casefold() not in values,
    }
    if operator not in tests:
        raise validation_error(f"The sandbox does not do the {operator} filter; it does {', '.join(tests)}.")
    test = tests[operator]
    return lambda contact: test(contact.properties.get(name) or "")


def _matches(contact: Contact, groups: list[list[ContactTest]]) -> bool:
    return not groups or any(all(test(contact) for test in group) for group in groups)


def _limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 0 < limit <= MAX_LIMIT:
        message = f"limit must be between 1 and {MAX_LIMIT}, not {limit}"
        raise validation_error(message, [error_detail(message, "INVALID_LIMIT", limit=[str(limit)])])
    return limit


def _after(after: str | None) -> int:
    """The sandbox's cursors are positions in the results, as strings."""
    if after in (None, ""):
        return 0
    if not str(after).isdigit():
        raise validation_error(f"after must be a cursor from a previous page, not {after}")
    return int(str(after))
