"""The sandbox's own endpoints: `/` and `/_sandbox/*`, to look at it and steer it over HTTP.

They need no token, are not rate-limited and are not logged as API requests.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import page
from .calls import Answer
from .latency import Latency
from .limits import UPSERT_IN_ANY_VERSION
from .versions import V2026_09

if TYPE_CHECKING:
    from .server import SandboxServer

HTML = "text/html; charset=utf-8"


def is_control_path(path: str) -> bool:
    return path == "/" or path.startswith("/_sandbox/")


def answer(sandbox: SandboxServer, method: str, path: str, body: bytes) -> Answer:
    handler = CONTROL_ROUTES.get((method, path))
    if handler is None:
        return _problem(404, f"the sandbox has no {method} {path}")
    try:
        return handler(sandbox, body)
    except (ValueError, TypeError, KeyError) as exc:
        return _problem(400, f"{path}: {exc}")


def state(sandbox: SandboxServer) -> dict[str, Any]:
    """Everything the sandbox keeps, as JSON-able data (sets as sorted lists)."""
    store = sandbox.store
    return {
        "contacts": store.contacts_by_email(),
        "properties": store.properties(),
        "groups": store.groups(),
        "lists": {name: {**lst, "members": sorted(lst["members"], key=_record_order)}
                  for name, lst in store.lists().items()},
        "workflows": [{"id": w.id, "name": w.name, "flowId": w.flow_id}
                      for w in store.all_workflows()],
        "sequences": [{"id": s.id, "userId": s.user_id, "name": s.name}
                      for s in store.all_sequences()],
        "workflow_enrollments": [{"workflowId": workflow_id, "email": email, "time": at}
                                 for workflow_id, email, at in store.workflow_enrollments()],
        "sequence_enrollments": store.sequence_enrollments(),
        "portal_id": store.portal_id,
        "event_definitions": [{"name": d.name, "label": d.label,
                               "fullyQualifiedName": store.fully_qualified_name(d.name),
                               "properties": [p["name"] for p in d.properties]}
                              for d in store.all_event_definitions()],
        "event_occurrences": store.event_occurrences(),
        "dropped_event_occurrences": store.dropped_event_occurrences(),
        "validation_rules": [rule.as_dict() for rule in store.validation_rules()],
        "request_log": store.request_log(),
        # requests by API version; "none" counts paths with neither a date nor a number
        "versions_used": {version or "none": count for version, count in store.versions_used().items()},
        "faults": sandbox.faults.pending(),
        "latency": sandbox.latency.as_dict(),
    }


def _home(sandbox: SandboxServer, body: bytes) -> Answer:
    return Answer(200, page.render(state(sandbox)), {"Content-Type": HTML})


def _state(sandbox: SandboxServer, body: bytes) -> Answer:
    return Answer(200, state(sandbox))


def _contacts(sandbox: SandboxServer, body: bytes) -> Answer:
    contacts = sorted(sandbox.store.contacts_by_email().items(),
                      key=lambda item: int(item[1]["id"]))
    return Answer(200, [{"id": contact["id"], "email": email, "properties": contact["properties"]}
                        for email, contact in contacts])


def _faults(sandbox: SandboxServer, body: bytes) -> Answer:
    fields = _object(body)
    fault = sandbox.inject_fault(
        method=str(fields.get("method", "POST")),
        path_prefix=str(fields.get("path_prefix", UPSERT_IN_ANY_VERSION)),
        kind=str(fields.get("kind", "status")),
        status=int(fields.get("status", 503)),
        count=int(fields.get("count", 1)),
        delay=float(fields.get("delay", 0.0)),
        emails=fields.get("emails"),
        every=int(fields.get("every", 1)),
    )
    return Answer(201, fault.as_dict())


def _workflows(sandbox: SandboxServer, body: bytes) -> Answer:
    fields = _object(body)
    workflow = sandbox.add_workflow(int(fields["id"]), str(fields["name"]))
    return Answer(201, {"id": workflow.id, "name": workflow.name, "flowId": workflow.flow_id})


def _sequences(sandbox: SandboxServer, body: bytes) -> Answer:
    fields = _object(body)
    sequence = sandbox.add_sequence(str(fields["id"]), str(fields["userId"]), str(fields["name"]))
    return Answer(201, {"id": sequence.id, "userId": sequence.user_id, "name": sequence.name})


def _event_definitions(sandbox: SandboxServer, body: bytes) -> Answer:
    fields = _object(body)
    definition = sandbox.add_event_definition(str(fields["name"]), str(fields["label"]))
    return Answer(201, {"name": definition.name, "label": definition.label,
                        "fullyQualifiedName": sandbox.store.fully_qualified_name(definition.name)})


def _validation_rules(sandbox: SandboxServer, body: bytes) -> Answer:
    fields = _object(body)
    required_when = fields.get("required_when")
    if required_when is not None and not isinstance(required_when, dict):
        raise ValueError("required_when is an object of property names and values")
    rule = sandbox.add_validation_rule(
        str(fields["property"]), pattern=_optional(fields, "pattern"), required_when=required_when,
        message=_optional(fields, "message"), error=_optional(fields, "error"),
        since=str(fields.get("since", V2026_09)))
    return Answer(201, rule.as_dict())


def _optional(fields: dict[str, Any], name: str) -> str | None:
    return None if fields.get(name) is None else str(fields[name])


def _latency(sandbox: SandboxServer, body: bytes) -> Answer:
    return Answer(200, sandbox.latency.as_dict())


def _set_latency(sandbox: SandboxServer, body: bytes) -> Answer:
    """`{"latency": "300ms±100ms" | ["hubspot", "upsert=1s", ...], "seed": 7}`, as `--latency`;
    requests that arrive from now on get it."""
    fields = _object(body)
    specs = fields.get("latency", [])
    if not isinstance(specs, str | list) or not all(isinstance(spec, str) for spec in specs):
        raise ValueError("latency is a string such as \"300ms±100ms\", or a list of them")
    seed = fields.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError("seed is an integer")
    sandbox.latency = Latency.parse(specs, seed=seed)
    return Answer(200, sandbox.latency.as_dict())


def _reset(sandbox: SandboxServer, body: bytes) -> Answer:
    sandbox.reset()
    return Answer(200, {"reset": True})


def _object(body: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(body.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the body is not JSON ({exc})") from exc
    if not isinstance(fields, dict):
        raise ValueError("the body must be a JSON object")
    return fields


def _problem(status: int, message: str) -> Answer:
    return Answer(status, {"status": "error", "message": message})


def _record_order(record_id: str) -> tuple[int, str]:
    return (int(record_id), "") if record_id.isdigit() else (0, record_id)


CONTROL_ROUTES = {
    ("GET", "/"): _home,
    ("GET", "/_sandbox/state"): _state,
    ("GET", "/_sandbox/contacts"): _contacts,
    ("POST", "/_sandbox/faults"): _faults,
    ("POST", "/_sandbox/workflows"): _workflows,
    ("POST", "/_sandbox/sequences"): _sequences,
    ("POST", "/_sandbox/event-definitions"): _event_definitions,
    ("POST", "/_sandbox/validation-rules"): _validation_rules,
    ("GET", "/_sandbox/latency"): _latency,
    ("POST", "/_sandbox/latency"): _set_latency,
    ("POST", "/_sandbox/reset"): _reset,
}
