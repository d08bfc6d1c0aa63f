"""CRM lists: static (MANUAL) contact lists and their memberships, the same in every API version."""

from __future__ import annotations

from typing import Any

from .calls import Answer, ApiCall
from .errors import error_detail, not_found, validation_error
from .schema import LISTS
from .store import CONTACT_OBJECT_TYPE, SandboxStore, StaticList, now
from .values import iso_millis

STATIC_PROCESSING_TYPES = ("MANUAL", "SNAPSHOT")
SANDBOX_USER_ID = "1"
DEFAULT_MEMBERSHIP_PAGE = 100
MAX_MEMBERSHIP_PAGE = 250


def create_list(call: ApiCall, store: SandboxStore) -> Answer:
    request = LISTS.read("ListCreateRequest", call.json())
    name = request["name"].strip()
    if not name:
        raise validation_error("List name must not be empty.")
    if request["objectTypeId"] != CONTACT_OBJECT_TYPE:
        raise validation_error(f"The sandbox keeps contact lists only (objectTypeId "
                               f"{CONTACT_OBJECT_TYPE}), not {request['objectTypeId']}.")
    if request["processingType"] not in STATIC_PROCESSING_TYPES:
        raise validation_error(f"The sandbox keeps static lists only (processingType MANUAL or "
                               f"SNAPSHOT), not {request['processingType']}.")
    if store.list_by_name(name) is not None:
        message = f"A list named '{name}' already exists."
        raise validation_error(message, [error_detail(message, "DUPLICATE_LIST_NAME", name=[name])],
                               sub_category="ILS.DUPLICATE_LIST_NAMES")
    static_list = store.create_list(name, request["processingType"])
    return Answer(200, LISTS.answer("ListCreateResponse", {"list": _public_list(static_list)}))


def get_list_by_name(call: ApiCall, store: SandboxStore) -> Answer:
    name, object_type = call.params["list_name"], call.params["object_type_id"]
    static_list = store.list_by_name(name) if object_type == CONTACT_OBJECT_TYPE else None
    if static_list is None:
        raise not_found(f"List does not exist with name {name} for object type {object_type}.")
    return Answer(200, LISTS.answer("ListFetchResponse", {"list": _public_list(static_list)}))


def get_list(call: ApiCall, store: SandboxStore) -> Answer:
    static_list = _existing(call, store)
    return Answer(200, LISTS.answer("ListFetchResponse", {"list": _public_list(static_list)}))


def add_members(call: ApiCall, store: SandboxStore) -> Answer:
    static_list = _existing(call, store)
    known, missing = _record_ids(call, store)
    added = [record_id for record_id in known if record_id not in static_list.members]
    at = now()
    for record_id in added:
        static_list.members[record_id] = at
    _touch(static_list, changed=bool(added))
    return Answer(200, LISTS.answer("MembershipsUpdateResponse", {
        "recordsIdsAdded": added, "recordIdsRemoved": [], "recordIdsMissing": missing}))


def remove_members(call: ApiCall, store: SandboxStore) -> Answer:
    static_list = _existing(call, store)
    known, missing = _record_ids(call, store)
    removed = [record_id for record_id in known if record_id in static_list.members]
    for record_id in removed:
        del static_list.members[record_id]
    _touch(static_list, changed=bool(removed))
    return Answer(200, LISTS.answer("MembershipsUpdateResponse", {
        "recordsIdsAdded": [], "recordIdsRemoved": removed, "recordIdsMissing": missing}))


def add_and_remove_members(call: ApiCall, store: SandboxStore) -> Answer:
    static_list = _existing(call, store)
    request = LISTS.read("MembershipChangeRequest", call.json())
    to_add, missing_added = _known(request["recordIdsToAdd"], store)
    to_remove, missing_removed = _known(request["recordIdsToRemove"], store)
    both = sorted(set(to_add) & set(to_remove))
    if both:
        raise validation_error(f"The sandbox does not both add and remove a record in one call: {both}")
    added = [record_id for record_id in to_add if record_id not in static_list.members]
    removed = [record_id for record_id in to_remove if record_id in static_list.members]
    at = now()
    for record_id in added:
        static_list.members[record_id] = at
    for record_id in removed:
        del static_list.members[record_id]
    _touch(static_list, changed=bool(added or removed))
    missing = list(dict.fromkeys([*missing_added, *missing_removed]))
    return Answer(200, LISTS.answer("MembershipsUpdateResponse", {
        "recordsIdsAdded": added, "recordIdsRemoved": removed, "recordIdsMissing": missing}))


def list_members(call: ApiCall, store: SandboxStore) -> Answer:
    static_list = _existing(call, store)
    limit = call.page_size(DEFAULT_MEMBERSHIP_PAGE, MAX_MEMBERSHIP_PAGE)
    start = call.cursor()
    members = list(static_list.members.items())
    page = members[start:start + limit]
    body: dict[str, Any] = {
        "results": [{"recordId": record_id, "membershipTimestamp": iso_millis(at)}
                    for record_id, at in page],
        "total": len(members),
    }
    if start + limit < len(members):
        body["paging"] = {"next": {"after": str(start + limit)}}
    return Answer(200, LISTS.answer("ApiCollectionResponseJoinTimeAndRecordId", body))


def _existing(call: ApiCall, store: SandboxStore) -> StaticList:
    list_id = call.params["list_id"]
    static_list = store.list_by_id(list_id)
    if static_list is None:
        raise not_found(f"List {list_id} does not exist.", context={"listId": [list_id]})
    return static_list


def _record_ids(call: ApiCall, store: SandboxStore) -> tuple[list[str], list[str]]:
    """The record ids sent (a bare JSON array), split into existing contacts and missing ones."""
    body = call.json()
    if not isinstance(body, list) or not all(_is_record_id(item) for item in body):
        raise validation_error("Invalid input JSON: expected an array of record ids (strings)")
    return _known(body, store)


def _known(items: list[Any], store: SandboxStore) -> tuple[list[str], list[str]]:
    record_ids = list(dict.fromkeys(str(item).strip() for item in items))
    known = [record_id for record_id in record_ids if store.contact_by_id(record_id) is not None]
    found = set(known)
    return known, [record_id for record_id in record_ids if record_id not in found]


def _is_record_id(item: Any) -> bool:
    return isinstance(item, str | int) and not isinstance(item, bool)


def _touch(static_list: StaticList, *, changed: bool) -> None:
    if changed:
        static_list.updated_at = now()
        static_list.version += 1


def _public_list(static_list: StaticList) -> dict[str, Any]:
    return {
        "listId": static_list.list_id,
        "listVersion": static_list.version,
        "name": static_list.name,
        "objectTypeId": CONTACT_OBJECT_TYPE,
        "processingType": static_list.processing_type,
        "processingStatus": "COMPLETE",
        "size": len(static_list.members),
        "createdAt": iso_millis(static_list.created_at),
        "updatedAt": iso_millis(static_list.updated_at),
        "filtersUpdatedAt": iso_millis(static_list.created_at),
        "createdById": SANDBOX_USER_ID,
        "updatedById": SANDBOX_USER_ID,
    }

