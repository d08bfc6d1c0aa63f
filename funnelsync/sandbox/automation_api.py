"""Automation: legacy v2 workflow enrollment, v4 workflow id mappings, and sequence enrollment
(v4 and every date version, the same shapes).

The generated client has no models for these, so their bodies are checked here by hand.
"""

from __future__ import annotations

from typing import Any

from .calls import Answer, ApiCall
from .errors import error_detail, not_found, validation_error
from .store import SandboxStore, Sequence, Workflow, now
from .values import is_valid_email, iso_millis

MAPPING_INPUT_TYPES = {"WORKFLOW_ID": "workflowId", "FLOW_ID": "flowId"}
SEQUENCE_ENROLLMENT_FIELDS = ("contactId", "sequenceId", "senderEmail")
ENROLLMENT_ANSWER_FIELDS = ("id", "toEmail", "enrolledAt", "updatedAt")


# legacy (v2) contact workflows

def enroll_in_workflow(call: ApiCall, store: SandboxStore) -> Answer:
    workflow = _workflow(call.params["workflow_id"], store)
    email = call.params["email"]
    contact = store.contact_by_email(email)
    if contact is None:
        raise not_found(f"Contact with email {email} does not exist.", context={"email": [email]})
    store.enroll_in_workflow(workflow.id, contact.email)
    return Answer(204)


def workflows_of_contact(call: ApiCall, store: SandboxStore) -> Answer:
    contact = store.contact_by_id(call.params["vid"])
    workflows = store.workflows_of(contact.email) if contact is not None else []
    return Answer(200, [_public_workflow(workflow, store.portal_id) for workflow in workflows])


def get_workflow(call: ApiCall, store: SandboxStore) -> Answer:
    return Answer(200, _public_workflow(_workflow(call.params["workflow_id"], store), store.portal_id))


def _workflow(workflow_id: str, store: SandboxStore) -> Workflow:
    workflow = store.workflow(int(workflow_id)) if workflow_id.isdigit() else None
    if workflow is None:
        raise not_found(f"Workflow {workflow_id} does not exist.",
                        context={"workflowId": [workflow_id]})
    return workflow


def _public_workflow(workflow: Workflow, portal_id: int) -> dict[str, Any]:
    inserted = int(workflow.inserted_at.timestamp() * 1000)
    return {"id": workflow.id, "name": workflow.name, "type": "DRIP_DELAY", "enabled": True,
            "portalId": portal_id, "insertedAt": inserted, "updatedAt": inserted,
            "migrationStatus": {"workflowId": workflow.id, "flowId": workflow.flow_id,
                                "migrationStatus": "EXECUTION_MIGRATED"}}


# v4 workflow id mappings

def read_workflow_id_mappings(call: ApiCall, store: SandboxStore) -> Answer:
    started = now()
    results, missing = [], []
    for kind, given in _mapping_inputs(call.json()):
        workflow = (store.workflow(int(given)) if kind == "WORKFLOW_ID"
                    else store.workflow_by_flow_id(int(given)))
        if workflow is None:
            missing.append(given)
        else:
            results.append({"flowId": workflow.flow_id, "workflowId": workflow.id})
    body: dict[str, Any] = {"status": "COMPLETE", "results": results,
                            "startedAt": iso_millis(started), "completedAt": iso_millis(now())}
    if not missing:
        return Answer(200, body)
    body["numErrors"] = len(missing)
    body["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                       "message": f"No workflow found for ids {', '.join(missing)}",
                       "context": {"ids": missing}, "errors": [], "links": {}}]
    return Answer(207, body)


def _mapping_inputs(body: Any) -> list[tuple[str, str]]:
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list):
        raise _unset(["inputs"])
    parsed = []
    for item in inputs:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in MAPPING_INPUT_TYPES:
            raise validation_error(
                f"Each input needs a type, one of {', '.join(MAPPING_INPUT_TYPES)}",
                [error_detail("invalid input type", "INVALID_TYPE", type=[str(kind)])])
        given = str(item.get(MAPPING_INPUT_TYPES[kind], "")).strip()
        if not given.isdigit():
            raise _unset([MAPPING_INPUT_TYPES[kind]])
        parsed.append((kind, given))
    return parsed


# sequences (v4 and the date versions)

def enroll_in_sequence(call: ApiCall, store: SandboxStore) -> Answer:
    user_id = _user_id(call)
    fields = _sequence_enrollment_fields(call.json())
    sequence = _sequence(fields["sequenceId"], user_id, store)
    contact = store.contact_by_id(fields["contactId"])
    if contact is None:
        raise not_found(f"Contact {fields['contactId']} does not exist.",
                        context={"contactId": [fields["contactId"]]})
    if not is_valid_email(fields["senderEmail"]):
        raise validation_error(f"Email address {fields['senderEmail']} is invalid",
                               [error_detail(f"Email address {fields['senderEmail']} is invalid",
                                             "INVALID_EMAIL", senderEmail=[fields["senderEmail"]])])
    current = store.sequence_enrollment_of(contact.id)
    if current is not None:
        message = (f"Contact {contact.id} is already enrolled in sequence {current['sequenceId']}; "
                   "contacts can only be enrolled in one sequence at a time.")
        raise validation_error(
            message, [error_detail(message, "ALREADY_ENROLLED", contactId=[contact.id])],
            sub_category="ALREADY_ENROLLED")
    enrollment = store.enroll_in_sequence(sequence, contact, fields["senderEmail"], user_id)
    return Answer(200, {key: enrollment[key] for key in ENROLLMENT_ANSWER_FIELDS})


def sequence_enrollment_of_contact(call: ApiCall, store: SandboxStore) -> Answer:
    contact_id = call.params["contact_id"]
    enrollment = store.sequence_enrollment_of(contact_id)
    if enrollment is None:
        raise not_found(f"Contact {contact_id} is not enrolled in a sequence.",
                        context={"contactId": [contact_id]})
    return Answer(200, {
        **{key: enrollment[key] for key in ENROLLMENT_ANSWER_FIELDS},
        "sequenceId": enrollment["sequenceId"],
        "sequenceName": enrollment["sequenceName"],
        "enrolledBy": enrollment["userId"],
        "enrolledByEmail": enrollment["senderEmail"],
    })


def get_sequence(call: ApiCall, store: SandboxStore) -> Answer:
    sequence = _sequence(call.params["sequence_id"], _user_id(call), store)
    created = iso_millis(sequence.created_at)
    return Answer(200, {"id": sequence.id, "name": sequence.name, "userId": sequence.user_id,
                        "createdAt": created, "updatedAt": created, "steps": [], "dependencies": []})


def _user_id(call: ApiCall) -> str:
    user_id = (call.query_one("userId") or "").strip()
    if not user_id:
        raise validation_error("Some required fields were not set: [userId]",
                               [error_detail("userId is required", "REQUIRED_FIELD", userId=[""])])
    return user_id


def _sequence_enrollment_fields(body: Any) -> dict[str, str]:
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON: expected an object")
    fields = {name: body.get(name) for name in SEQUENCE_ENROLLMENT_FIELDS}
    unset = [name for name, value in fields.items() if not _is_id_like(value)]
    if unset:
        raise _unset(unset)
    return {name: str(value).strip() for name, value in fields.items()}


def _is_id_like(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and bool(str(value).strip())


def _unset(names: list[str]) -> Exception:
    return validation_error(f"Some required fields were not set: [{', '.join(names)}]")


def _sequence(sequence_id: str, user_id: str, store: SandboxStore) -> Sequence:
    sequence = store.sequence(sequence_id)
    # each sandbox sequence belongs to one user, so a wrong userId is caught here too
    if sequence is None or sequence.user_id != user_id:
        raise not_found(f"Sequence {sequence_id} does not exist for user {user_id}.",
                        context={"sequenceId": [sequence_id]})
    return sequence
