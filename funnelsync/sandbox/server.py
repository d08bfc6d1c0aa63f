"""The sandbox HTTP server: HubSpot's authentication, scopes, rate limits and faults, then routing.

Standard library only: a `ThreadingHTTPServer`, one thread per request. A request is always
answered (a JSON error when it cannot be parsed or a handler fails), except by a `reset` fault.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import control
from .calls import NO_BODY, Answer, ApiCall
from .errors import (
    HubSpotError,
    correlation_id,
    invalid_authentication,
    method_not_allowed,
    missing_scopes,
    rate_limited,
    server_error,
    unknown_route,
)
from .latency import Latency, kind_of
from .limits import UPSERT_IN_ANY_VERSION, Admission, Fault, FaultBook, RateLimiter
from .routes import ALL_SCOPES, find_route
from .schema import checking_wire_format
from .store import DEFAULT_PORTAL_ID, EventDefinition, SandboxStore, Sequence, Workflow
from .validation_rules import ValidationRule
from .versions import LEGACY, V2026_09

log = logging.getLogger("funnelsync.sandbox")

JSON = "application/json;charset=utf-8"
MAX_BODY_BYTES = 10 * 1024 * 1024
SOCKET_TIMEOUT_SECONDS = 30.0
UPSERT_PATH = UPSERT_IN_ANY_VERSION


class SandboxServer:
    """A local HubSpot-compatible API server; see the package docstring for what it serves."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str = "sandbox-token",
                 requests_per_10s: int | None = None, daily_limit: int | None = None,
                 scopes: Iterable[str] | None = None, portal_id: int = DEFAULT_PORTAL_ID,
                 latency: Latency | None = None, wire_checks: bool = True) -> None:
        self.token = token
        # False only where the sandbox's own CPU would be measured instead of the client's (the
        # throughput benchmark): every body through the client's models is ~0.1 s of CPU an upsert
        self.wire_checks = wire_checks
        # how late API requests are answered (none by default); may be replaced while serving
        self.latency = latency or Latency()
        self.scopes = ALL_SCOPES if scopes is None else frozenset(scopes)
        self.store = SandboxStore(portal_id)
        self.limiter = RateLimiter(requests_per_10s, daily_limit)
        self.faults = FaultBook()
        self._httpd = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def portal_id(self) -> int:
        """The portal's Hub ID: in the account details and in every event's `pe{portalId}_{name}`."""
        return self.store.portal_id

    @portal_id.setter
    def portal_id(self, portal_id: int) -> None:
        self.store.portal_id = portal_id

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"

    def start(self) -> SandboxServer:
        """Serve in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name="funnelsync-sandbox", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in this thread until KeyboardInterrupt (the `funnelsync sandbox` command)."""
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            log.info("sandbox stopped")
        finally:
            self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def inject_fault(self, method: str = "POST", path_prefix: str = UPSERT_PATH,
                     kind: str = "status", status: int = 503, count: int = 1, delay: float = 0.0,
                     emails: Iterable[str] | None = None, every: int = 1) -> Fault:
        """Make the next `count` matching API requests (or every `every`-th of them) fail:
        before they are applied (status | reset | slow | reject_rows) or after (reset_after |
        late | status_after | cut_after)."""
        fault = Fault(method, path_prefix, kind, status, count, delay, frozenset(emails or ()), every)
        self.faults.add(fault)
        return fault

    def add_workflow(self, workflow_id: int, name: str) -> Workflow:
        """Seed a legacy contact workflow that contacts may be enrolled into."""
        return self.store.add_workflow(workflow_id, name)

    def add_sequence(self, sequence_id: str, user_id: str, name: str) -> Sequence:
        """Seed a sales sequence owned by `user_id`."""
        return self.store.add_sequence(sequence_id, user_id, name)

    def add_event_definition(self, name: str, label: str) -> EventDefinition:
        """Seed a custom contact event with no properties of its own."""
        with self.store.lock:
            if self.store.event_definition(name) is not None:
                raise ValueError(f"an event definition named {name!r} exists already")
            return self.store.add_event_definition(name, label)

    def add_validation_rule(self, property: str, *, pattern: str | None = None,
                            required_when: Mapping[str, str] | None = None, message: str | None = None,
                            error: str | None = None, since: str | None = None) -> ValidationRule:
        """Give the portal a validation rule on a contact property: its values must match `pattern`,
        or it must have a value when the contact holds `required_when` (always, when empty).
        HubSpot checks API writes against the portal's rules from the API version `since`: format
        rules in every version (since July 2023), required and conditional ones from 2026-09."""
        first = since or (LEGACY if pattern is not None else V2026_09)
        rule = ValidationRule(property, pattern, required_when, message, error, first)
        self.store.add_validation_rule(rule)
        return rule

    def reset(self) -> None:
        """Forget everything: contacts, created properties, lists, enrollments, events, validation
        rules, faults, counters (not the token, scopes, portal id or latency)."""
        self.store.reset()
        self.faults.clear()
        self.limiter.reset()

    def answer_api(self, method: str, path: str, query: dict[str, list[str]], body: bytes,
                   headers: Mapping[str, str] | Message[str, str]) -> Answer | None:
        """HubSpot's answer to one API request; None when a fault drops the connection."""
        token = _bearer_token(headers)
        if token != self.token:
            return _error_answer(invalid_authentication(), self.limiter.headers(token or ""))
        admission = self.limiter.admit(token)
        answer = self._admitted(method, path, query, body, admission)
        if answer is not None:
            answer.headers.update(admission.headers)
        return answer

    def _admitted(self, method: str, path: str, query: dict[str, list[str]], body: bytes,
                  admission: Admission) -> Answer | None:
        try:
            if admission.policy is not None:
                raise rate_limited(admission.policy)
            fault = self.faults.take(method, unquote(path))
            if fault is not None and fault.kind == "reset":
                return None
            rejected = _undergo(fault)
            answer = self._execute(ApiCall(method, path, query, {}, body, rejected))
            return _lose(answer, fault) if fault is not None and fault.after_applying else answer
        except HubSpotError as error:
            return _error_answer(error)

    def _execute(self, call: ApiCall) -> Answer:
        match = find_route(call.method, call.path)
        if match.route is None:
            refusal = method_not_allowed if match.path_known else unknown_route
            raise refusal(call.method, call.path)
        if not self.scopes.intersection(match.route.scopes):
            raise missing_scopes(match.route.scopes)
        call.params = match.params
        call.version = match.route.version
        # one call at a time touches the store, so a batch is checked and written atomically
        with self.store.lock, checking_wire_format(self.wire_checks):
            return match.route.handler(call, self.store)


def _undergo(fault: Fault | None) -> frozenset[str]:
    """Apply a fault that comes before the request is applied; returns the emails a
    `reject_rows` fault refuses."""
    if fault is None or fault.after_applying:
        return frozenset()
    if fault.kind == "status":
        raise server_error(fault.status)
    if fault.kind == "slow":
        time.sleep(fault.delay)
    return fault.emails if fault.kind == "reject_rows" else frozenset()


def _lose(answer: Answer, fault: Fault) -> Answer | None:
    """The request was applied; its answer is lost on the way back."""
    if fault.kind == "reset_after":
        return None
    if fault.kind == "status_after":
        return _error_answer(server_error(fault.status))
    if fault.kind == "cut_after":
        answer.cut = True
        return answer
    time.sleep(fault.delay)  # late: after the client gave up waiting
    return answer


def _bearer_token(headers: Mapping[str, str] | Message[str, str]) -> str | None:
    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _error_answer(error: HubSpotError, headers: dict[str, str] | None = None) -> Answer:
    return Answer(error.status, error.body(), dict(headers or {}))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that went away mid-answer is not the sandbox's problem
        log.debug("connection from %s dropped", client_address, exc_info=True)


class _BadBody(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "funnelsync-sandbox"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_SECONDS  # a stalled client frees its thread

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        try:
            self._answer_request()
        except Exception:
            self._send(_internal_error(self.command, self.path))

    def _answer_request(self) -> None:
        arrived = time.time()
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        try:
            body = self._read_body()
        except _BadBody as problem:
            refusal = HubSpotError(problem.status, "VALIDATION_ERROR", str(problem))
            self._send(_error_answer(refusal))
            return
        if control.is_control_path(path):
            self._send(control.answer(self.server.sandbox, self.command, path, body))
            return
        answer = self._api_answer(path, query, body)
        kind = kind_of(unquote(path))
        delay = self.server.sandbox.latency.draw(kind)
        if delay:
            time.sleep(delay)  # in this request's own thread: the others go on meanwhile
        if answer is None:
            self._drop_connection()
            return
        # logged before it is sent, so a client that got its answer finds it in the log
        self.server.sandbox.store.log_request(self.command, unquote(path), answer.status,
                                              arrived=arrived, delay=delay, kind=kind.value)
        self._send(answer)

    def _api_answer(self, path: str, query: dict[str, list[str]], body: bytes) -> Answer | None:
        try:
            return self.server.sandbox.answer_api(self.command, path, query, body, self.headers)
        except Exception:
            return _internal_error(self.command, path)

    def _read_body(self) -> bytes:
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            length = self.headers.get("Content-Length", "0").strip() or "0"
            if not length.isdigit():
                raise _BadBody(400, f"Content-Length {length!r} is not a number")
            return self._read_exactly(int(length))
        except (TimeoutError, ConnectionError) as exc:
            self.close_connection = True
            raise _BadBody(408, "the request body did not arrive in time") from exc

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError as exc:
                raise _BadBody(400, "malformed chunked body") from exc
            if size == 0:
                self.rfile.readline(1024)
                return b"".join(chunks)
            chunks.append(self._read_exactly(size))
            self.rfile.readline(1024)

    def _read_exactly(self, size: int) -> bytes:
        if size > MAX_BODY_BYTES:
            self.close_connection = True
            raise _BadBody(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
        data = self.rfile.read(size)
        if len(data) < size:
            raise _BadBody(400, "the request body is shorter than its Content-Length")
        return data

    def _send(self, answer: Answer) -> None:
        payload, content_type = _payload(answer)
        if answer.cut and not payload:
            self._drop_connection()
            return
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.headers.get("Content-Type", content_type))
            self.send_header("X-HubSpot-Correlation-Id", _correlation_of(answer))
            for name, value in answer.headers.items():
                if name != "Content-Type":
                    self.send_header(name, value)
            if payload or answer.status != HTTPStatus.NO_CONTENT:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if answer.cut:  # an answer with no body to cut is dropped whole, as by reset_after
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self._drop_connection()
            elif payload and self.command != "HEAD":
                self.wfile.write(payload)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _drop_connection(self) -> None:
        """Close without any answer, as a connection reset: linger 0 sends RST, not FIN."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Requests the standard library cannot parse get a HubSpot-style JSON answer too."""
        category = "VALIDATION_ERROR" if code < 500 else "INTERNAL_ERROR"
        text = message or explain or HTTPStatus(code).phrase
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            # an unparseable request line still gets a status line and headers
            self.request_version = "HTTP/1.0"
        self._send(_error_answer(HubSpotError(code, category, text)))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _internal_error(method: str | None, path: str) -> Answer:
    """A sandbox bug still gets an answer (and a traceback in the log)."""
    log.exception("sandbox failed on %s %s", method, path)
    return _error_answer(HubSpotError(500, "INTERNAL_ERROR", "internal error"))


def _payload(answer: Answer) -> tuple[bytes, str]:
    if answer.body is NO_BODY:
        return b"", JSON
    if isinstance(answer.body, str):
        return answer.body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(answer.body).encode("utf-8"), JSON


def _correlation_of(answer: Answer) -> str:
    body = answer.body
    if isinstance(body, dict) and isinstance(found := body.get("correlationId"), str):
        return found
    return correlation_id()
