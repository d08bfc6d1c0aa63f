"""CRM objects for contacts: batch upsert, batch read, list and get, in every API version.

The shapes are v3's in every version but two, both from 2026-09: a batch with failed rows answers
200 with `errors` and `numErrors` in the body (its API description has no 207), and an upsert
is checked against the portal's own validation rules.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .calls import Answer, ApiCall
from .errors import HubSpotError, error_detail, not_found, validation_error
from .schema import CONTACTS
from .store import Contact, SandboxStore, now
from .validation_rules import BrokenRule, refusal
from .values import ValueProblem, is_valid_email, iso_millis, stored_value, wire_string
from .versions import V2026_09, enforces

UPSERT_INPUT = "BatchInputSimplePublicObjectBatchInputUpsert"
UPSERT_ANSWER = "BatchResponseSimplePublicUpsertObject"
READ_INPUT = "BatchReadInputSimplePublicObjectId"
READ_ANSWER = "BatchResponseSimplePublicObject"
PAGE_ANSWER = "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging"
ONE_ANSWER = "SimplePublicObjectWithAssociations"

MAX_BATCH_INPUTS = 100
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 10
DEFAULT_PROPERTIES = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate",
                      "lastname")
ALWAYS_RETURNED = ("createdate", "hs_object_id", "lastmodifieddate")
NOT_FOUND_IN_BATCH = ("Could not get some CONTACT objects, they may be deleted or not exist. "
                      "Check that ids are valid.")


@dataclass
class UpsertRow:
    sent_id: str
    email: str
    sent: dict[str, str]
    trace_id: str | None
    values: dict[str, str] = field(default_factory=dict)
    problems: list[ValueProblem] = field(default_factory=list)


def batch_upsert(call: ApiCall, store: SandboxStore) -> Answer:
    started = now()
    request = CONTACTS.read(UPSERT_INPUT, _with_wire_strings(call.json()))
    _check_batch_size(request["inputs"])
    rows = [_upsert_row(item) for item in request["inputs"]]
    _check_duplicates(rows)
    _check_values(rows, store)
    _check_rules(rows, store, call.version)
    results, errors = [], []
    for row in rows:
        if row.email in call.rejected_emails:
            errors.append(_rejected_row(row))
            continue
        contact, created = store.write_contact(row.email, row.values)
        results.append(_upsert_result(contact, row, created))
    return _batch_answer(UPSERT_ANSWER, store.shuffled(results), errors, started, call.version)


def batch_read(call: ApiCall, store: SandboxStore) -> Answer:
    started = now()
    request = CONTACTS.read(READ_INPUT, call.json())
    _check_batch_size(request["inputs"])
    id_property = request.get("idProperty") or "hs_object_id"
    wanted = request.get("properties") or list(DEFAULT_PROPERTIES)
    results, missing = [], []
    for item in request["inputs"]:
        contact = _find(store, item["id"], id_property)
        if contact is None:
            missing.append(item["id"])
        else:
            results.append(_public_object(contact, wanted))
    errors = [_missing_ids_error(missing)] if missing else []
    return _batch_answer(READ_ANSWER, store.shuffled(results), errors, started, call.version)


def list_contacts(call: ApiCall, store: SandboxStore) -> Answer:
    limit = call.page_size(DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    after = call.cursor()
    wanted = call.query_list("properties") or list(DEFAULT_PROPERTIES)
    page = [contact for contact in store.all_contacts() if int(contact.id) >= after][: limit + 1]
    body: dict[str, Any] = {"results": [_public_object(c, wanted) for c in page[:limit]]}
    if len(page) > limit:
        next_after = page[limit].id
        link = f"{call.path}?limit={limit}&after={next_after}"
        body["paging"] = {"next": {"after": next_after, "link": link}}
    return Answer(200, CONTACTS.answer(PAGE_ANSWER, body))


def get_contact(call: ApiCall, store: SandboxStore) -> Answer:
    contact_id = call.params["contact_id"]
    contact = _find(store, contact_id, call.query_one("idProperty") or "hs_object_id")
    if contact is None:
        raise not_found("Object not found.  objectId are usually numeric.",
                        context={"id": [contact_id]})
    wanted = call.query_list("properties") or list(DEFAULT_PROPERTIES)
    return Answer(200, CONTACTS.answer(ONE_ANSWER, _public_object(contact, wanted)))


def _with_wire_strings(body: Any) -> Any:
    """Property values as the strings HubSpot reads; the model would make `True` into "True"."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        return body
    inputs = []
    for item in body["inputs"]:
        if isinstance(item, dict) and isinstance(item.get("properties"), dict):
            try:
                strings = {name: wire_string(value) for name, value in item["properties"].items()}
            except TypeError as exc:
                raise validation_error(f"Invalid input JSON: {exc}") from exc
            item = {**item, "properties": strings}
        inputs.append(item)
    return {**body, "inputs": inputs}


def _check_batch_size(inputs: list[Any]) -> None:
    if len(inputs) > MAX_BATCH_INPUTS:
        raise validation_error(
            f"Batch input has {len(inputs)} inputs; the limit is {MAX_BATCH_INPUTS}.",
            [error_detail(f"inputs must have at most {MAX_BATCH_INPUTS} items", "TOO_MANY_INPUTS",
                          inputs=[str(len(inputs))])])


def _upsert_row(item: dict[str, Any]) -> UpsertRow:
    id_property = item.get("idProperty")
    if id_property != "email":
        raise validation_error(
            f"The sandbox upserts contacts by idProperty \"email\" only, not {id_property!r}.",
            [error_detail("idProperty must be email", "INVALID_ID_PROPERTY",
                          idProperty=[str(id_property)])])
    sent = {name: "" if value is None else value for name, value in item["properties"].items()}
    return UpsertRow(item["id"], item["id"].strip().lower(), sent, item.get("objectWriteTraceId"))


def _check_duplicates(rows: list[UpsertRow]) -> None:
    counts = Counter(row.email for row in rows)
    duplicates = sorted(email for email, count in counts.items() if count > 1)
    if duplicates:
        raise validation_error("Duplicate IDs found in batch input",
                               [error_detail(f"Duplicate IDs found in batch input: {duplicates}",
                                             "DUPLICATE_ID", ids=duplicates)])


def _check_values(rows: list[UpsertRow], store: SandboxStore) -> None:
    """Every bad value of every row; one of them makes HubSpot refuse the whole batch."""
    definitions = store.properties()
    for row in rows:
        _check_one(row, definitions["email"], row.sent_id)
        for name, value in row.sent.items():
            prop = definitions.get(name)
            if prop is None:
                row.problems.append(ValueProblem("PROPERTY_DOESNT_EXIST",
                                                 f'Property "{name}" does not exist', name, value))
            else:
                _check_one(row, prop, value)
    problems = [problem for row in rows for problem in row.problems]
    if problems:
        raise _invalid_values(problems)


def _check_rules(rows: list[UpsertRow], store: SandboxStore, version: str) -> None:
    """The portal's validation rules that HubSpot checks under this API version, over what each
    contact would hold after the write; one broken rule refuses the whole batch."""
    rules = [rule for rule in store.validation_rules() if enforces(version, rule.since)]
    broken = []
    for row in rows:
        existing = store.contact_by_email(row.email)
        held = {**(existing.properties if existing is not None else {}), **row.values}
        broken += [BrokenRule(rule, message) for rule in rules
                   if (message := rule.broken_by(row.values, held)) is not None]
    if broken:
        raise refusal(broken)


def _check_one(row: UpsertRow, prop: dict[str, Any], value: str) -> None:
    try:
        row.values[prop["name"]] = stored_value(prop, value)
    except ValueProblem as problem:
        row.problems.append(problem)


def _invalid_values(problems: list[ValueProblem]) -> HubSpotError:
    results = [{"isValid": False, "message": p.message, "error": p.code, "name": p.property_name,
                "localizedErrorMessage": p.message, "propertyValue": p.value} for p in problems]
    return validation_error(
        f"Property values were not valid: {json.dumps(results)}",
        [error_detail(p.message, p.code, propertyName=[p.property_name]) for p in problems],
    )


def _rejected_row(row: UpsertRow) -> dict[str, Any]:
    message = f"Contact {row.email} was rejected (sandbox fault reject_rows)"
    return {"status": "error", "category": "VALIDATION_ERROR", "message": message,
            "context": {"ids": [row.email]}, "errors": [error_detail(message, "REJECTED_ROW")],
            "links": {}}


def _upsert_result(contact: Contact, row: UpsertRow, created: bool) -> dict[str, Any]:
    names = [*row.sent, "email", *ALWAYS_RETURNED]
    result = {**_public_object(contact, names), "new": created}
    if row.trace_id is not None:
        result["objectWriteTraceId"] = row.trace_id
    return result


def _public_object(contact: Contact, wanted: list[str]) -> dict[str, Any]:
    names = dict.fromkeys([*wanted, *ALWAYS_RETURNED])
    return {"id": contact.id,
            "properties": {name: contact.properties.get(name) for name in names},
            "createdAt": iso_millis(contact.created_at),
            "updatedAt": iso_millis(contact.updated_at),
            "archived": False}


def _find(store: SandboxStore, key: str, id_property: str) -> Contact | None:
    if id_property == "email":
        return store.contact_by_email(key) if is_valid_email(key.strip()) else None
    if id_property == "hs_object_id":
        return store.contact_by_id(key.strip())
    raise validation_error(
        f"The sandbox finds contacts by email or hs_object_id, not {id_property}.")


def _missing_ids_error(ids: list[str]) -> dict[str, Any]:
    return {"status": "error", "category": "OBJECT_NOT_FOUND", "message": NOT_FOUND_IN_BATCH,
            "context": {"ids": ids}, "errors": [], "links": {}}


def _batch_answer(model: str, results: list[dict[str, Any]], errors: list[dict[str, Any]],
                  started: datetime, version: str) -> Answer:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results,
                            "startedAt": iso_millis(started), "completedAt": iso_millis(now())}
    if not errors:
        return Answer(200, CONTACTS.answer(model, body))
    body.update(numErrors=len(errors), errors=errors)
    status = 200 if enforces(version, V2026_09) else 207
    return Answer(status, CONTACTS.answer(f"{model}WithErrors", body))
