"""`/healthz`, `/readyz` and `/metrics` (Prometheus text format) for the daemon."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from funnelsync.errors import ConfigError
from funnelsync.state.models import RunOutcome
from funnelsync.sync.engine import RunSummary


class RunMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.role = "starting"
        self.running = False
        self.runs: dict[RunOutcome, int] = {}
        self.contacts_written = 0
        self.contacts_rejected = 0
        self.api_calls = 0
        self.last_success = 0.0
        self.last_error = ""

    def run_started(self) -> None:
        with self._lock:
            self.running = True

    def run_finished(self, summary: RunSummary) -> None:
        with self._lock:
            self.running = False
            self.role = "active"
            self.runs[summary.outcome] = self.runs.get(summary.outcome, 0) + 1
            self.contacts_written += summary.written
            self.contacts_rejected += summary.rejected
            self.api_calls += summary.api_calls
            self.last_success = time.time()
            self.last_error = ""

    def run_failed(self, reason: str) -> None:
        with self._lock:
            self.running = False
            self.runs[RunOutcome.FAILED] = self.runs.get(RunOutcome.FAILED, 0) + 1
            self.last_error = reason

    def standby(self, reason: str) -> None:
        with self._lock:
            self.running = False
            self.role = "standby"
            self.last_error = ""

    def run_skipped(self, reason: str) -> None:
        with self._lock:
            self.running = False

    def ready(self) -> tuple[bool, dict[str, object]]:
        with self._lock:
            body = {"role": self.role, "running": self.running, "last_error": self.last_error or None}
            return (self.role in ("active", "standby") and not self.last_error), body

    def prometheus(self) -> str:
        with self._lock:
            lines = [
                "# HELP funnelsync_runs_total Sync runs by outcome.",
                "# TYPE funnelsync_runs_total counter",
            ]
            lines += [f'funnelsync_runs_total{{outcome="{k}"}} {v}' for k, v in sorted(self.runs.items())]
            lines += [
                "# HELP funnelsync_contacts_written_total Contacts HubSpot confirmed.",
                "# TYPE funnelsync_contacts_written_total counter",
                f"funnelsync_contacts_written_total {self.contacts_written}",
                "# HELP funnelsync_contacts_rejected_total Contacts HubSpot or the mapping refused.",
                "# TYPE funnelsync_contacts_rejected_total counter",
                f"funnelsync_contacts_rejected_total {self.contacts_rejected}",
                "# HELP funnelsync_hubspot_requests_total Requests sent to HubSpot.",
                "# TYPE funnelsync_hubspot_requests_total counter",
                f"funnelsync_hubspot_requests_total {self.api_calls}",
                "# HELP funnelsync_last_success_timestamp_seconds When the last sync finished.",
                "# TYPE funnelsync_last_success_timestamp_seconds gauge",
                f"funnelsync_last_success_timestamp_seconds {self.last_success}",
                "# HELP funnelsync_sync_running Whether a sync is in flight.",
                "# TYPE funnelsync_sync_running gauge",
                f"funnelsync_sync_running {int(self.running)}",
            ]
            return "\n".join(lines) + "\n"


class HealthServer:
    def __init__(self, host: str, port: int, metrics: RunMetrics) -> None:
        self.metrics = metrics
        handler = _handler(metrics)
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"daemon.http: cannot listen on {host}:{port} ({exc.strerror})") from None
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(metrics: RunMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, "application/json", json.dumps({"status": "ok"}))
            elif self.path == "/readyz":
                ok, body = metrics.ready()
                self._send(200 if ok else 503, "application/json", json.dumps(body))
            elif self.path == "/metrics":
                self._send(200, "text/plain; version=0.0.4", metrics.prometheus())
            else:
                self._send(404, "application/json", json.dumps({"error": "not found"}))

        def _send(self, status: int, content_type: str, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
