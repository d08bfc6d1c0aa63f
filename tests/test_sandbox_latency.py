"""The sandbox answers as late as it is told, per kind of request, without serialising requests.

Nothing here asserts on how long anything took: the sandbox's own request log says when each
request arrived, when it was answered and the delay it was given, and that is what is checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from funnelsync.cli.runner import run_sync
from funnelsync.config import Config
from funnelsync.sandbox import Delay, Latency, SandboxServer
from funnelsync.sandbox.latency import HUBSPOT_LIKE, RequestKind, kind_of, parse_delay
from tests.conftest import TOKEN, Analytics
from tests.test_cli import free_port, http_get, wait_for

PROPERTIES = "/crm/properties/2026-09/contacts"
UPSERT = "/crm/objects/2026-09/contacts/batch/upsert"


def api(sandbox: SandboxServer, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, sandbox.url + path, json=body, timeout=30,
                            headers={"Authorization": f"Bearer {TOKEN}"})


def upsert_body(email: str) -> dict[str, Any]:
    return {"inputs": [{"idProperty": "email", "id": email, "properties": {"email": email}}]}


def most_in_flight(log: list[dict[str, Any]]) -> int:
    """The most requests the sandbox held at one moment, from its own record of them."""
    moments = sorted([(entry["arrived"], 1) for entry in log] + [(entry["answered"], -1) for entry in log],
                     key=lambda moment: (moment[0], moment[1]))
    held = most = 0
    for _, step in moments:
        held += step
        most = max(most, held)
    return most


@pytest.fixture
def slow_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(token=TOKEN, latency=Latency(0.3)) as server:
        yield server


def test_eight_requests_in_flight_are_answered_together_not_one_after_another(
    slow_sandbox: SandboxServer,
) -> None:
    start = threading.Barrier(8)

    def read_properties(_: int) -> int:
        start.wait()
        return api(slow_sandbox, "GET", PROPERTIES).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(read_properties, range(8)))

    assert statuses == [200] * 8
    log = slow_sandbox.store.request_log()
    assert [entry["delay"] for entry in log] == [0.3] * 8
    assert all(entry["answered"] - entry["arrived"] >= 0.3 for entry in log)
    # served one after another, the eight would span at least the sum of their times
    held = sum(entry["answered"] - entry["arrived"] for entry in log)
    span = max(entry["answered"] for entry in log) - min(entry["arrived"] for entry in log)
    assert span < held
    assert most_in_flight(log) > 1


def test_each_kind_of_request_gets_its_own_delay() -> None:
    latency = Latency(0.05, kinds={"upsert": Delay(0.2), RequestKind.PROPERTIES: 0.1})
    with SandboxServer(token=TOKEN, latency=latency) as sandbox:
        api(sandbox, "GET", PROPERTIES)
        api(sandbox, "POST", UPSERT, upsert_body("ada@example.com"))
        api(sandbox, "GET", "/account-info/2026-09/details")
        api(sandbox, "PUT", "/crm/lists/2026-09/7/memberships/add", ["1"])
        log = sandbox.store.request_log()

    assert [(entry["kind"], entry["delay"]) for entry in log] == [
        ("properties", 0.1), ("upsert", 0.2), ("other", 0.05), ("lists", 0.05)]
    assert all(entry["answered"] - entry["arrived"] >= entry["delay"] for entry in log)
    assert [entry["status"] for entry in log] == [200, 200, 200, 404]  # a refusal is late too


def test_the_spread_is_drawn_the_same_way_again_with_the_same_seed() -> None:
    def delays(seed: int) -> list[float]:
        with SandboxServer(token=TOKEN, latency=Latency(0.03, 0.02, seed=seed)) as sandbox:
            for _ in range(6):
                api(sandbox, "GET", PROPERTIES)
            return [entry["delay"] for entry in sandbox.store.request_log()]

    first, again, other = delays(11), delays(11), delays(12)

    assert first == again
    assert first != other
    assert all(0.01 <= delay <= 0.05 for delay in first + other)
    assert len(set(first)) > 1


def test_the_rate_limit_counts_a_request_when_it_arrives_not_when_it_is_answered() -> None:
    with SandboxServer(token=TOKEN, requests_per_10s=3, latency=Latency(1.0)) as sandbox:
        start = threading.Barrier(4)

        def read_properties(_: int) -> int:
            start.wait()
            return api(sandbox, "GET", PROPERTIES).status_code

        with ThreadPoolExecutor(4) as pool:
            statuses = sorted(pool.map(read_properties, range(4)))
        log = sandbox.store.request_log()

    assert statuses == [200, 200, 200, 429]
    refused = next(entry for entry in log if entry["status"] == 429)
    # the fourth came in while the first three were still unanswered, and was refused all the same
    assert refused["arrived"] < min(entry["answered"] for entry in log if entry["status"] == 200)


def test_the_latency_can_be_changed_over_http_while_serving(sandbox: SandboxServer) -> None:
    api(sandbox, "GET", PROPERTIES)
    changed = requests.post(f"{sandbox.url}/_sandbox/latency", timeout=5,
                            json={"latency": ["150ms±50ms", "upsert=200ms"], "seed": 3})
    api(sandbox, "GET", PROPERTIES)
    api(sandbox, "POST", UPSERT, upsert_body("ada@example.com"))

    assert changed.status_code == 200
    assert changed.json()["kinds"]["upsert"] == "200ms"
    assert changed.json()["kinds"]["properties"] == "150ms±50ms"
    assert requests.get(f"{sandbox.url}/_sandbox/latency", timeout=5).json() == changed.json()
    assert requests.get(f"{sandbox.url}/_sandbox/state", timeout=5).json()["latency"] == changed.json()
    first, second, upsert = sandbox.store.request_log()
    assert first["delay"] == 0.0
    assert 0.1 <= second["delay"] <= 0.2
    assert upsert["delay"] == 0.2


def test_a_latency_the_sandbox_cannot_read_is_refused_with_the_reason(sandbox: SandboxServer) -> None:
    answer = requests.post(f"{sandbox.url}/_sandbox/latency", json={"latency": "soon"}, timeout=5)

    assert answer.status_code == 400
    assert "'soon' is not a duration" in answer.json()["message"]
    assert requests.get(f"{sandbox.url}/_sandbox/latency", timeout=5).json()["default"] == "0ms"


def test_the_sandbox_answers_at_once_unless_told_otherwise(sandbox: SandboxServer) -> None:
    api(sandbox, "GET", PROPERTIES)

    assert sandbox.store.request_log()[0]["delay"] == 0.0
    assert str(sandbox.latency) == "0ms"


@pytest.mark.parametrize(("path", "kind"), [
    ("/crm/v3/objects/contacts/batch/upsert", "upsert"),
    ("/crm/objects/2026-09/contacts/batch/upsert", "upsert"),
    ("/crm/objects/2026-03/contacts/batch/read", "read"),
    ("/crm/v3/objects/contacts/123", "read"),
    ("/crm/objects/2026-09/contacts/search", "search"),
    ("/crm/v3/properties/contacts/groups", "properties"),
    ("/crm/properties/2026-09/contacts/used_event_count", "properties"),
    ("/crm/lists/2026-09/object-type-id/0-1/name/Onboarding", "lists"),
    ("/crm/v3/lists/12/memberships/add", "lists"),
    ("/automation/v2/workflows/1234567/enrollments/contacts/ada@example.com", "workflows"),
    ("/automation/v4/workflow-id-mappings/batch/read", "workflows"),
    ("/automation/sequences/2026-09/enrollments", "sequences"),
    ("/events/custom/2026-09/send", "events"),
    ("/events/v3/event-definitions", "events"),
    ("/account-info/2026-09/details", "other"),
    ("/nothing/here", "other"),
])
def test_a_request_is_of_the_kind_its_path_says_in_every_api_version(path: str, kind: str) -> None:
    assert kind_of(path) == kind


@pytest.mark.parametrize(("text", "delay"), [
    ("300ms", Delay(0.3)), ("0.3s", Delay(0.3)), ("300ms±100ms", Delay(0.3, 0.1)),
    ("1s+-250ms", Delay(1.0, 0.25)), ("0", Delay()), (" 40 ms ± 10 ms ", Delay(0.04, 0.01)),
])
def test_a_delay_is_written_with_its_unit_and_an_optional_spread(text: str, delay: Delay) -> None:
    assert parse_delay(text) == delay


@pytest.mark.parametrize(("text", "problem"), [
    ("300", "'300' is not a duration"), ("-1s", "not a duration"),
    ("100ms±200ms", "the spread cannot be larger than the delay"), ("slow", "'slow' is not a duration"),
])
def test_a_delay_that_cannot_be_meant_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_delay(text)


def test_later_latency_specs_win_and_a_profile_sets_every_kind() -> None:
    latency = Latency.parse(["hubspot", "upsert=1s±400ms", "lists=0"])

    assert latency.of(RequestKind.UPSERT) == Delay(1.0, 0.4)
    assert latency.of(RequestKind.LISTS) == Delay()
    assert latency.of(RequestKind.READ) == HUBSPOT_LIKE[RequestKind.READ]
    assert Latency.parse(["hubspot", "200ms"]).of(RequestKind.UPSERT) == Delay(0.2)
    with pytest.raises(ValueError, match="no kind of request 'contacts'"):
        Latency.parse("contacts=1s")


def test_the_hubspot_like_profile_answers_in_hundreds_of_milliseconds_upserts_later() -> None:
    upsert = HUBSPOT_LIKE[RequestKind.UPSERT]
    others = [delay for kind, delay in HUBSPOT_LIKE.items() if kind != RequestKind.UPSERT]

    assert set(HUBSPOT_LIKE) == set(RequestKind)
    assert all(0.1 <= delay.seconds <= 0.5 for delay in others)
    assert upsert.seconds > max(delay.seconds for delay in others)


def test_a_sync_against_a_late_sandbox_writes_every_contact(
    config: Config, analytics: Analytics, sandbox: SandboxServer
) -> None:
    sandbox.latency = Latency(0.1, kinds={"upsert": 0.25})
    analytics.add_many(3, calls=5)

    summary = run_sync(config, dry_run=False)

    assert (summary.written, summary.exit_status) == (3, 0)
    log = sandbox.store.request_log()
    assert {entry["kind"] for entry in log if entry["path"].endswith("/batch/upsert")} == {"upsert"}
    assert all(entry["delay"] == (0.25 if entry["kind"] == "upsert" else 0.1) for entry in log)


def test_the_sandbox_command_serves_with_the_latency_it_is_given(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "funnelsync", "sandbox", "--port", str(port), "--latency", "hubspot",
               "--latency", "upsert=1s±0.5s", "--latency-seed", "5"]
    server = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/_sandbox/latency")[0] == 200)
        _, body = http_get(f"http://127.0.0.1:{port}/_sandbox/latency")
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    assert server.returncode == 0, err
    shown = json.loads(body)
    assert shown["seed"] == 5
    assert shown["kinds"]["upsert"] == "1000ms±500ms"
    assert shown["kinds"]["read"] == str(HUBSPOT_LIKE[RequestKind.READ])
    assert "answers delayed by" in err


def test_the_sandbox_command_refuses_a_latency_it_cannot_read(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "funnelsync", "sandbox", "--latency", "3 parsecs"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, env=dict(os.environ))

    assert done.returncode == 2
    assert "--latency" in done.stderr
    assert "'3 parsecs' is not a duration" in done.stderr
    assert "Traceback" not in done.stderr
