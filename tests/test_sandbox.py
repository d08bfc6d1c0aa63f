"""The sandbox answers the real `hubspot-api-client` the way HubSpot does, over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import urllib3
from hubspot import Client
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    BatchResponseSimplePublicObjectWithErrors,
    BatchResponseSimplePublicUpsertObject,
    BatchResponseSimplePublicUpsertObjectWithErrors,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
)
from hubspot.crm.contacts.exceptions import (
    ApiException,
    ForbiddenException,
    ServiceException,
    UnauthorizedException,
)
from hubspot.crm.lists import ListCreateRequest, ListCreateResponse
from hubspot.crm.lists.exceptions import ApiException as ListsApiException
from hubspot.crm.properties import (
    OptionInput,
    PropertyCreate,
    PropertyGroupCreate,
    PropertyUpdate,
)
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException

from funnelsync.sandbox import SandboxServer as Sandbox

TOKEN = "sandbox-token"
UPSERT = "/crm/v3/objects/contacts/batch/upsert"
WORKFLOWS = "/automation/v2/workflows"
ENROLL_IN_SEQUENCE = "/automation/v4/sequences/enrollments"
FUNNEL_PROPERTIES = [
    ("used_event_count", "number", "number", []),
    ("api_integration_stage", "enumeration", "select", ["top", "middle", "bottom"]),
    ("is_paying", "bool", "booleancheckbox", []),
    ("signed_up_on", "date", "date", []),
    ("last_call_at", "datetime", "date", []),
    ("company_name", "string", "text", []),
]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(token=TOKEN) as server:
        yield server


@pytest.fixture
def client(sandbox: Sandbox) -> Client:
    return connect(sandbox)


@pytest.fixture
def funnel(client: Client) -> Client:
    """A portal with funnelsync's property group and one property of each type."""
    group = PropertyGroupCreate(name="funnelsync", label="Funnelsync")
    client.crm.properties.groups_api.create("contacts", group)
    for name, type_, field_type, values in FUNNEL_PROPERTIES:
        options = [
            OptionInput(label=value.title(), value=value, hidden=False, display_order=index)
            for index, value in enumerate(values)
        ]
        client.crm.properties.core_api.create(
            "contacts",
            PropertyCreate(
                name=name,
                label=name.replace("_", " ").title(),
                type=type_,
                field_type=field_type,
                group_name="funnelsync",
                options=options,
            ),
        )
    return client


def connect(sandbox: Sandbox, token: str = TOKEN) -> Client:
    return Client.create(access_token=token, host=sandbox.url, base_url=sandbox.url)


def upsert(
    client: Client, rows: list[tuple[str, dict[str, str]]], trace_ids: dict[str, str] | None = None
) -> Any:
    inputs = [
        SimplePublicObjectBatchInputUpsert(
            id=email,
            id_property="email",
            properties=properties,
            object_write_trace_id=(trace_ids or {}).get(email),
        )
        for email, properties in rows
    ]
    batch = BatchInputSimplePublicObjectBatchInputUpsert(inputs=inputs)
    return client.crm.contacts.batch_api.upsert(batch)


def api(sandbox: Sandbox, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A call the generated client cannot make (v2/v4 automation), as `requests` makes it."""
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    return requests.request(method, sandbox.url + path, headers=headers, timeout=5, **kwargs)


def body_of(error: Exception) -> dict[str, Any]:
    return json.loads(error.body)  # type: ignore[attr-defined]


def emails_in(sandbox: Sandbox) -> set[str]:
    return set(sandbox.store.contacts_by_email())


# authentication, scopes, limits


def test_a_wrong_token_is_refused_with_hubspots_401(sandbox: Sandbox) -> None:
    with pytest.raises(UnauthorizedException) as refused:
        connect(sandbox, token="not-the-token").crm.contacts.basic_api.get_page()
    body = body_of(refused.value)
    assert body["category"] == "INVALID_AUTHENTICATION"
    assert body["status"] == "error" and body["correlationId"]
    assert body["message"].startswith("Authentication credentials not found.")


def test_a_token_without_the_write_scope_gets_403_naming_the_scope() -> None:
    with Sandbox(token=TOKEN, scopes={"crm.objects.contacts.read"}) as server:
        reader = connect(server)
        reader.crm.contacts.basic_api.get_page()
        with pytest.raises(ForbiddenException) as refused:
            upsert(reader, [("dev@example.com", {})])
        body = body_of(refused.value)
        assert body["category"] == "MISSING_SCOPES"
        required = body["errors"][0]["context"]["requiredGranularScopes"]
        assert required == ["crm.objects.contacts.write"]
        assert emails_in(server) == set()


def test_every_api_answer_carries_the_rate_limit_headers() -> None:
    with Sandbox(token=TOKEN, requests_per_10s=5, daily_limit=50) as server:
        headers = api(server, "GET", "/crm/v3/objects/contacts").headers
        assert headers["X-HubSpot-RateLimit-Max"] == "5"
        assert headers["X-HubSpot-RateLimit-Remaining"] == "4"
        assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert headers["X-HubSpot-RateLimit-Daily"] == "50"
        assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "49"


def test_going_over_the_burst_limit_answers_hubspots_429_and_does_not_execute() -> None:
    with Sandbox(token=TOKEN, requests_per_10s=3) as server:
        client = connect(server)
        for index in range(3):
            upsert(client, [(f"dev{index}@example.com", {})])
        with pytest.raises(ApiException) as limited:
            upsert(client, [("over@example.com", {})])
        assert limited.value.status == 429
        body = body_of(limited.value)
        assert body["policyName"] == "TEN_SECONDLY_ROLLING"
        assert body["errorType"] == "RATE_LIMIT"
        assert body["message"] == "You have reached your ten_secondly_rolling limit."
        assert "over@example.com" not in emails_in(server)
        assert [entry["status"] for entry in server.store.request_log()] == [200, 200, 200, 429]


def test_going_over_the_daily_limit_answers_429_with_the_daily_policy() -> None:
    with Sandbox(token=TOKEN, daily_limit=2) as server:
        assert api(server, "GET", "/crm/v3/objects/contacts").status_code == 200
        assert api(server, "GET", "/crm/v3/objects/contacts").status_code == 200
        limited = api(server, "GET", "/crm/v3/objects/contacts")
        assert limited.status_code == 429
        assert limited.json()["policyName"] == "DAILY"
        assert limited.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"


# properties


def test_the_property_group_and_properties_are_created_once_then_409(
    funnel: Client, sandbox: Sandbox
) -> None:
    assert sandbox.store.groups()["funnelsync"]["label"] == "Funnelsync"
    stage = funnel.crm.properties.core_api.get_by_name("contacts", "api_integration_stage")
    assert [option.value for option in stage.options] == ["top", "middle", "bottom"]
    assert stage.description == "" and stage.group_name == "funnelsync"
    with pytest.raises(PropertiesApiException) as again:
        funnel.crm.properties.groups_api.create(
            "contacts", PropertyGroupCreate(name="funnelsync", label="Again")
        )
    assert again.value.status == 409
    with pytest.raises(PropertiesApiException) as twice:
        funnel.crm.properties.core_api.create(
            "contacts",
            PropertyCreate(
                name="used_event_count",
                label="Again",
                type="number",
                field_type="number",
                group_name="funnelsync",
            ),
        )
    assert twice.value.status == 409


def test_hubspots_built_in_contact_properties_are_listed(client: Client) -> None:
    names = {prop.name for prop in client.crm.properties.core_api.get_all("contacts").results}
    built_in = {"email", "firstname", "lastname", "hs_object_id", "createdate", "lastmodifieddate"}
    assert built_in <= names


@pytest.mark.parametrize(
    "definition",
    [
        {"group_name": "no_such_group", "type": "string", "field_type": "text"},
        {"group_name": "funnelsync", "type": "enumeration", "field_type": "select"},
        {"group_name": "funnelsync", "type": "number", "field_type": "text"},
    ],
    ids=["unknown group", "enumeration without options", "number shown as text"],
)
def test_a_property_that_cannot_exist_is_refused_with_400(
    funnel: Client, sandbox: Sandbox, definition: dict[str, str]
) -> None:
    with pytest.raises(PropertiesApiException) as refused:
        funnel.crm.properties.core_api.create(
            "contacts", PropertyCreate(name="broken", label="Broken", **definition)
        )
    assert refused.value.status == 400
    assert body_of(refused.value)["category"] == "VALIDATION_ERROR"
    assert "broken" not in sandbox.store.properties()


def test_a_property_label_and_options_can_be_changed(funnel: Client) -> None:
    options = [
        OptionInput(label="Top", value="top", hidden=False),
        OptionInput(label="Churned", value="churned", hidden=False),
    ]
    funnel.crm.properties.core_api.update(
        "contacts", "api_integration_stage", PropertyUpdate(label="API stage", options=options)
    )
    changed = funnel.crm.properties.core_api.get_by_name("contacts", "api_integration_stage")
    assert changed.label == "API stage"
    assert [option.value for option in changed.options] == ["top", "churned"]


# contacts


def test_upsert_creates_then_updates_the_same_contact(funnel: Client, sandbox: Sandbox) -> None:
    created = upsert(funnel, [("Dev@Example.com", {"used_event_count": "0"})])
    assert isinstance(created, BatchResponseSimplePublicUpsertObject)
    assert created.status == "COMPLETE"
    assert created.results[0].new is True
    updated = upsert(
        funnel,
        [("dev@example.com", {"used_event_count": "1500", "api_integration_stage": "bottom"})],
    )
    assert updated.results[0].new is False
    assert updated.results[0].id == created.results[0].id
    stored = sandbox.store.contacts_by_email()["dev@example.com"]["properties"]
    assert stored["used_event_count"] == "1500"
    assert stored["api_integration_stage"] == "bottom"


def test_upsert_results_echo_the_trace_id_and_carry_hubspots_properties(funnel: Client) -> None:
    answer = upsert(
        funnel,
        [("dev@example.com", {"used_event_count": "7"})],
        trace_ids={"dev@example.com": "row-17"},
    )
    result = answer.results[0]
    assert result.object_write_trace_id == "row-17"
    expected = {"email", "hs_object_id", "createdate", "lastmodifieddate", "used_event_count"}
    assert expected <= set(result.properties)
    assert result.properties["hs_object_id"] == result.id


def test_upsert_results_do_not_come_back_in_input_order(funnel: Client) -> None:
    emails = [f"dev{index}@example.com" for index in range(8)]
    answer = upsert(funnel, [(email, {}) for email in emails])
    assert sorted(result.properties["email"] for result in answer.results) == emails
    assert [result.properties["email"] for result in answer.results] != emails


def test_dates_are_stored_the_way_hubspot_returns_them(funnel: Client, sandbox: Sandbox) -> None:
    upsert(
        funnel,
        [
            (
                "dev@example.com",
                {
                    "signed_up_on": "1714521600000",  # 2024-05-01 00:00 UTC
                    "last_call_at": "1714563245123",
                    "is_paying": "true",
                },
            )
        ],
    )
    stored = sandbox.store.contacts_by_email()["dev@example.com"]["properties"]
    assert stored["signed_up_on"] == "2024-05-01"
    assert stored["last_call_at"] == "2024-05-01T11:34:05.123Z"
    assert stored["is_paying"] == "true"


def test_more_than_100_inputs_is_refused_whole(funnel: Client, sandbox: Sandbox) -> None:
    with pytest.raises(ApiException) as refused:
        upsert(funnel, [(f"dev{index}@example.com", {}) for index in range(101)])
    assert refused.value.status == 400
    assert body_of(refused.value)["category"] == "VALIDATION_ERROR"
    assert emails_in(sandbox) == set()


@pytest.mark.parametrize(
    ("bad_row", "code", "named"),
    [
        (
            ("dev@example.com", {"no_such_property": "x"}),
            "PROPERTY_DOESNT_EXIST",
            "no_such_property",
        ),
        (("not-an-email", {}), "INVALID_EMAIL", "not-an-email"),
        (("dev@example.com", {"api_integration_stage": "sideways"}), "INVALID_OPTION", "sideways"),
        (("dev@example.com", {"used_event_count": "lots"}), "INVALID_INTEGER", "lots"),
        (("dev@example.com", {"is_paying": "yes"}), "INVALID_OPTION", "yes"),
        (("dev@example.com", {"signed_up_on": "1714563245123"}), "INVALID_DATE", "not midnight"),
    ],
)
def test_one_bad_value_makes_hubspot_refuse_the_whole_batch(
    funnel: Client, sandbox: Sandbox, bad_row: tuple[str, dict[str, str]], code: str, named: str
) -> None:
    with pytest.raises(ApiException) as refused:
        upsert(funnel, [("good@example.com", {"used_event_count": "3"}), bad_row])
    body = body_of(refused.value)
    assert refused.value.status == 400
    assert body["category"] == "VALIDATION_ERROR"
    assert [error["code"] for error in body["errors"]] == [code]
    assert named in body["errors"][0]["message"]
    assert emails_in(sandbox) == set()


def test_the_same_email_twice_in_one_batch_is_refused(funnel: Client, sandbox: Sandbox) -> None:
    with pytest.raises(ApiException) as refused:
        upsert(funnel, [("dev@example.com", {}), ("DEV@example.com", {})])
    assert refused.value.status == 400
    assert body_of(refused.value)["message"] == "Duplicate IDs found in batch input"
    assert emails_in(sandbox) == set()


def test_rejected_rows_come_back_as_207_and_only_they_are_not_written(
    funnel: Client, sandbox: Sandbox
) -> None:
    sandbox.inject_fault(kind="reject_rows", emails=["Bad@example.com"])
    answer = upsert(funnel, [("good@example.com", {}), ("bad@example.com", {})])
    assert isinstance(answer, BatchResponseSimplePublicUpsertObjectWithErrors)
    assert answer.num_errors == 1
    assert answer.errors[0].context == {"ids": ["bad@example.com"]}
    assert [result.properties["email"] for result in answer.results] == ["good@example.com"]
    assert emails_in(sandbox) == {"good@example.com"}


def test_batch_read_by_email_reports_missing_contacts_as_207(funnel: Client) -> None:
    upsert(funnel, [("dev@example.com", {"used_event_count": "4"})])
    inputs = [SimplePublicObjectId(id=email) for email in ("dev@example.com", "gone@example.com")]
    answer = funnel.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            id_property="email",
            properties=["used_event_count"],
            properties_with_history=[],
            inputs=inputs,
        )
    )
    assert isinstance(answer, BatchResponseSimplePublicObjectWithErrors)
    assert answer.results[0].properties["used_event_count"] == "4"
    assert answer.errors[0].context == {"ids": ["gone@example.com"]}


def test_a_contact_is_found_by_email_and_contacts_come_in_pages(funnel: Client) -> None:
    upsert(funnel, [(f"dev{index}@example.com", {}) for index in range(3)])
    found = funnel.crm.contacts.basic_api.get_by_id("dev1@example.com", id_property="email")
    assert found.properties["email"] == "dev1@example.com"
    first = funnel.crm.contacts.basic_api.get_page(limit=2)
    second = funnel.crm.contacts.basic_api.get_page(limit=2, after=first.paging.next.after)
    assert len(first.results) == 2
    assert len(second.results) == 1 and second.paging is None


# lists


def test_a_static_list_is_created_found_by_name_and_kept_in_step(
    funnel: Client, sandbox: Sandbox
) -> None:
    contact_id = upsert(funnel, [("dev@example.com", {})]).results[0].id
    created = funnel.crm.lists.lists_api.create(
        ListCreateRequest(
            name="API funnel: production", object_type_id="0-1", processing_type="MANUAL"
        )
    )
    assert isinstance(created, ListCreateResponse)
    list_id = created.list.list_id
    found = funnel.crm.lists.lists_api.get_by_name("api FUNNEL: Production", "0-1")
    assert found.list.list_id == list_id

    added = funnel.crm.lists.memberships_api.add(list_id, [contact_id, "999999"])
    assert added.records_ids_added == [contact_id]
    assert added.record_ids_missing == ["999999"]
    assert sandbox.store.lists()["API funnel: production"]["members"] == {contact_id}
    assert funnel.crm.lists.memberships_api.add(list_id, [contact_id]).records_ids_added == []

    removed = funnel.crm.lists.memberships_api.remove(list_id, [contact_id])
    assert removed.record_ids_removed == [contact_id]
    assert sandbox.store.lists()["API funnel: production"]["members"] == set()


def test_a_list_name_is_unique_whatever_its_case(funnel: Client) -> None:
    funnel.crm.lists.lists_api.create(
        ListCreateRequest(name="Onboarding", object_type_id="0-1", processing_type="MANUAL")
    )
    with pytest.raises(ListsApiException) as duplicate:
        funnel.crm.lists.lists_api.create(
            ListCreateRequest(name="ONBOARDING", object_type_id="0-1", processing_type="MANUAL")
        )
    assert duplicate.value.status == 400


# workflows and sequences


def test_every_workflow_enrollment_is_recorded_even_a_repeat(
    funnel: Client, sandbox: Sandbox
) -> None:
    sandbox.add_workflow(1234567, "Integrated in sandbox")
    contact_id = upsert(funnel, [("dev@example.com", {})]).results[0].id
    enroll = f"{WORKFLOWS}/1234567/enrollments/contacts/dev%40example.com"
    for _ in range(2):
        enrolled = api(sandbox, "POST", enroll)
        assert enrolled.status_code == 204 and enrolled.content == b""
    enrollments = [(wid, email) for wid, email, _ in sandbox.store.workflow_enrollments()]
    assert enrollments == [(1234567, "dev@example.com")] * 2
    current = api(sandbox, "GET", f"{WORKFLOWS}/enrollments/contacts/{contact_id}").json()
    assert [workflow["id"] for workflow in current] == [1234567]


def test_enrolling_into_an_unknown_workflow_or_contact_is_404(sandbox: Sandbox) -> None:
    sandbox.add_workflow(1, "Known")
    unknown_workflow = api(sandbox, "POST", f"{WORKFLOWS}/2/enrollments/contacts/a%40b.com")
    unknown_contact = api(sandbox, "POST", f"{WORKFLOWS}/1/enrollments/contacts/a%40b.com")
    assert unknown_workflow.status_code == unknown_contact.status_code == 404
    assert sandbox.store.workflow_enrollments() == []


def test_a_workflow_id_can_be_checked_through_the_id_mappings(sandbox: Sandbox) -> None:
    sandbox.add_workflow(1234567, "Integrated in sandbox")
    answer = api(
        sandbox,
        "POST",
        "/automation/v4/workflow-id-mappings/batch/read",
        json={
            "inputs": [
                {"type": "WORKFLOW_ID", "workflowId": "1234567"},
                {"type": "WORKFLOW_ID", "workflowId": "7"},
            ]
        },
    )
    assert answer.status_code == 207
    assert answer.json()["results"][0]["workflowId"] == 1234567
    assert answer.json()["errors"][0]["context"] == {"ids": ["7"]}


def test_a_contact_is_enrolled_in_a_sequence_once(funnel: Client, sandbox: Sandbox) -> None:
    sandbox.add_sequence("555", "42", "Production onboarding")
    contact_id = upsert(funnel, [("dev@example.com", {})]).results[0].id
    enrollment = {"contactId": contact_id, "sequenceId": "555", "senderEmail": "rep@vendor.com"}
    assert api(sandbox, "POST", ENROLL_IN_SEQUENCE, json=enrollment).status_code == 400  # no userId
    enrolled = api(sandbox, "POST", f"{ENROLL_IN_SEQUENCE}?userId=42", json=enrollment)
    assert enrolled.status_code == 200
    assert set(enrolled.json()) == {"id", "toEmail", "enrolledAt", "updatedAt"}
    assert enrolled.json()["toEmail"] == "dev@example.com"
    again = api(sandbox, "POST", f"{ENROLL_IN_SEQUENCE}?userId=42", json=enrollment)
    assert again.status_code == 400
    current = api(sandbox, "GET", f"{ENROLL_IN_SEQUENCE}/contact/{contact_id}").json()
    assert current["sequenceId"] == "555"
    assert len(sandbox.store.sequence_enrollments()) == 1


# faults and robustness


def test_a_status_fault_answers_503_once_without_writing(funnel: Client, sandbox: Sandbox) -> None:
    sandbox.inject_fault(method="POST", path_prefix=UPSERT, kind="status", status=503)
    with pytest.raises(ServiceException) as failed:
        upsert(funnel, [("dev@example.com", {})])
    assert body_of(failed.value)["status"] == "error"
    assert emails_in(sandbox) == set()
    upsert(funnel, [("dev@example.com", {})])
    assert emails_in(sandbox) == {"dev@example.com"}


def test_a_reset_fault_drops_the_connection_without_writing(
    funnel: Client, sandbox: Sandbox
) -> None:
    sandbox.inject_fault(kind="reset")
    with pytest.raises(urllib3.exceptions.HTTPError):
        upsert(funnel, [("dev@example.com", {})])
    assert emails_in(sandbox) == set()
    assert sandbox.store.write_count(UPSERT) == 0


def test_a_slow_fault_delays_then_executes(funnel: Client, sandbox: Sandbox) -> None:
    sandbox.inject_fault(kind="slow", delay=0.3)
    started = time.monotonic()
    upsert(funnel, [("dev@example.com", {})])
    assert time.monotonic() - started >= 0.3
    assert sandbox.store.write_count(UPSERT) == 1


def test_faults_can_be_injected_over_http(funnel: Client, sandbox: Sandbox) -> None:
    fault = {"method": "POST", "path_prefix": UPSERT, "kind": "status", "status": 502}
    injected = requests.post(f"{sandbox.url}/_sandbox/faults", json=fault, timeout=5)
    assert injected.status_code == 201
    with pytest.raises(ServiceException):
        upsert(funnel, [("dev@example.com", {})])


def test_malformed_json_is_answered_400_and_the_server_keeps_serving(sandbox: Sandbox) -> None:
    anonymous = requests.post(sandbox.url + UPSERT, data=b'{"inputs": [', timeout=5)
    assert anonymous.status_code == 401  # authentication comes first
    broken = api(
        sandbox, "POST", UPSERT, data=b'{"inputs": [', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json()["category"] == "VALIDATION_ERROR"
    assert api(sandbox, "GET", "/crm/v3/no/such/endpoint").json()["category"] == "OBJECT_NOT_FOUND"
    assert api(sandbox, "GET", "/crm/v3/objects/contacts").status_code == 200


def test_concurrent_upserts_are_all_written(funnel: Client, sandbox: Sandbox) -> None:
    def write(index: int) -> None:
        upsert(funnel, [(f"dev{index}@example.com", {"used_event_count": str(index)})])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(24)))
    assert len(emails_in(sandbox)) == 24
    assert sandbox.store.write_count(UPSERT) == 24


# looking at it


def test_the_page_shows_contacts_escaped(funnel: Client, sandbox: Sandbox) -> None:
    upsert(funnel, [("dev@example.com", {"company_name": "<script>alert(1)</script>"})])
    page = requests.get(sandbox.url + "/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "dev@example.com" in page.text
    assert "&lt;script&gt;" in page.text and "<script>" not in page.text


def test_the_state_is_served_as_json_and_reset_forgets_everything(
    funnel: Client, sandbox: Sandbox
) -> None:
    upsert(funnel, [("dev@example.com", {})])
    state = requests.get(sandbox.url + "/_sandbox/state", timeout=5).json()
    assert "dev@example.com" in state["contacts"]
    assert state["request_log"][-1]["path"] == UPSERT
    assert requests.post(sandbox.url + "/_sandbox/reset", timeout=5).status_code == 200
    assert emails_in(sandbox) == set()
    assert "used_event_count" not in sandbox.store.properties()


# the wire-format check, and the benchmark's way around it


def test_a_body_the_clients_model_refuses_is_400_unless_wire_checks_are_off() -> None:
    """An upsert input without `properties` breaks the client's model, which requires it: HubSpot's
    400. With `wire_checks=False` (for benchmarks) nothing checks the body before the handler,
    which fails on it (500); a well-formed batch goes through either way."""
    missing_properties = {"inputs": [{"id": "dev@example.com", "idProperty": "email"}]}
    well_formed = {"inputs": [{"id": "dev@example.com", "idProperty": "email",
                               "properties": {"email": "dev@example.com"}}]}
    for checked in (True, False):
        with Sandbox(token=TOKEN, wire_checks=checked) as server:
            refused = api(server, "POST", UPSERT, json=missing_properties)
            written = api(server, "POST", UPSERT, json=well_formed)
            assert written.status_code == 200, written.text
            assert emails_in(server) == {"dev@example.com"}
        if checked:
            assert refused.status_code == 400
            assert "Invalid input JSON" in refused.json()["message"]
        else:
            assert refused.status_code == 500
