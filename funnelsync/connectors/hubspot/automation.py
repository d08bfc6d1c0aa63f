"""Lists, workflows and sequences: how a contact is put where its stage or segment says.

Lists go through the generated client. Legacy v2 workflow enrollment and sequence enrollment
are not in the generated client: they go over `requests`, through the same rate budget,
retries and error table as every other call.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any
from urllib.parse import quote

import requests
from hubspot.crm.lists import ListCreateRequest

from funnelsync.connectors.crm import Enrollment
from funnelsync.connectors.hubspot.client import HubSpotApi
from funnelsync.connectors.hubspot.errors import parse_body
from funnelsync.errors import CredentialsError, EnrollmentTargetError

CONTACT_OBJECT = "0-1"
MEMBERSHIP_CHUNK = 250


class Automation(Enrollment):
    def __init__(self, api: HubSpotApi, token: str) -> None:
        self.api = api
        self.lists = api.client.crm.lists
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

    # -- lists ----------------------------------------------------------------------------------

    def find_or_create_list(self, name: str, *, create: bool = True) -> str | None:
        data, status = self.api.call(f"finding list {name!r}", self.lists.lists_api.get_by_name_with_http_info,
                                     name, CONTACT_OBJECT, allow=(404,))
        if status != 404:
            return str(data.list.list_id)
        if not create:
            return None
        body = ListCreateRequest(name=name, object_type_id=CONTACT_OBJECT, processing_type="MANUAL")
        data, _ = self.api.call(f"creating list {name!r}", self.lists.lists_api.create_with_http_info, body)
        return str(data.list.list_id)

    def change_list(self, list_id: str, record_ids: Sequence[str], *, add: bool) -> None:
        memberships = self.lists.memberships_api
        send = memberships.add_with_http_info if add else memberships.remove_with_http_info
        for start in range(0, len(record_ids), MEMBERSHIP_CHUNK):
            chunk = list(record_ids[start : start + MEMBERSHIP_CHUNK])
            self.api.call(f"{'adding to' if add else 'removing from'} list {list_id}", send, list_id, chunk)

    # -- workflows (legacy v2) and sequences, over requests ---------------------------------------

    def check_workflow(self, workflow_id: int) -> None:
        self._target(f"workflow {workflow_id}", "GET", f"/automation/v2/workflows/{workflow_id}")

    def enroll_in_workflow(self, workflow_id: int, email: str) -> None:
        path = f"/automation/v2/workflows/{workflow_id}/enrollments/contacts/{quote(email, safe='@')}"
        self._target(f"workflow {workflow_id}", "POST", path, idempotent=False)

    def workflows_of(self, record_id: str) -> set[int]:
        body, _ = self.request("reading a contact's workflows", "GET",
                               f"/automation/v2/workflows/enrollments/contacts/{record_id}")
        items = body if isinstance(body, list) else [body] if isinstance(body, dict) and body else []
        return {int(item["id"]) for item in items if isinstance(item, dict) and str(item.get("id", "")).isdigit()}

    def check_sequence(self, sequence_id: str, user_id: str) -> None:
        self._target(f"sequence {sequence_id}", "GET", f"/automation/v4/sequences/{sequence_id}",
                     params={"userId": user_id})

    def enroll_in_sequence(self, sequence_id: str, record_id: str, sender_email: str, user_id: str) -> None:
        self._target(f"sequence {sequence_id}", "POST", "/automation/v4/sequences/enrollments",
                     params={"userId": user_id}, idempotent=False,
                     json={"contactId": record_id, "sequenceId": sequence_id, "senderEmail": sender_email})

    def sequence_of(self, record_id: str) -> str | None:
        body, _ = self.request("reading a contact's sequence", "GET",
                               f"/automation/v4/sequences/enrollments/contact/{record_id}", allow=(404,))
        return str(body["sequenceId"]) if isinstance(body, dict) and body.get("sequenceId") else None

    def _target(self, target: str, method: str, path: str, **kwargs: Any) -> Any:
        """A call whose 404 or 403 means the target itself cannot be used."""
        try:
            body, status = self.request(f"{method} {target}", method, path, allow=(404,), **kwargs)
        except CredentialsError as exc:
            raise EnrollmentTargetError(f"{target}: {exc}") from None
        if status == 404:
            raise EnrollmentTargetError(f"{target} does not exist in this portal (HubSpot answered 404)")
        return body

    def request(self, what: str, method: str, path: str, *, allow: Collection[int] = (),
                params: dict[str, str] | None = None, json: Any = None,
                idempotent: bool = True) -> tuple[Any, int]:
        def send(*, _request_timeout: float) -> tuple[Any, int, dict[str, str]]:
            response = self.session.request(method, self.api.settings.base_url + path, params=params,
                                            json=json, timeout=_request_timeout)
            return _body(response), response.status_code, dict(response.headers)

        return self.api.call(what, send, allow=allow, idempotent=idempotent)


def _body(response: requests.Response) -> Any:
    if response.status_code >= 400 or not response.content:
        return parse_body(response.content)
    try:
        return response.json()
    except ValueError:
        return {}
