"""`/metrics` as Prometheus scrapes it: counters that move while a run is in flight, each
daemon's counts its own, names after Prometheus' conventions, every metric in the README.

HubSpot's request, 429 and rate-budget metrics are fed by the connector (`funnelsync/connectors/`
calls `telemetry.hubspot_request`, `rate_limited`, `rate_budget`); here only that those calls
count for the daemon whose run makes them, and for no one outside a run."""

from __future__ import annotations

import threading
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from funnelsync import telemetry
from funnelsync.config import parse_config
from funnelsync.sandbox import SandboxServer
from tests.conftest import Analytics, config_data
from tests.test_cli import Daemon as DaemonProcess
from tests.test_cli import daemon_config, free_port, http_get, wait_for
from tests.test_probes import in_process, in_thread, served

README = Path(__file__).resolve().parent.parent / "README.md"


class Scrape:
    """One scrape of `/metrics`, parsed as Prometheus parses it."""

    def __init__(self, text: str) -> None:
        self.families = list(text_string_to_metric_families(text))

    @classmethod
    def of(cls, port: int) -> Scrape:
        status, text = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        return cls(text)

    def value(self, sample: str, **labels: str) -> float | None:
        for family in self.families:
            for found in family.samples:
                if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
                    return float(found.value)
        return None

    @classmethod
    def written_so_far(cls, port: int) -> float:
        """0 until the daemon serves its port."""
        status, text = http_get(f"http://127.0.0.1:{port}/metrics")
        return (cls(text).value("funnelsync_contacts_written_total") or 0) if status == 200 else 0

    def total(self, sample: str) -> float:
        return sum(float(s.value) for f in self.families for s in f.samples if s.name == sample)


def test_counters_move_while_the_run_is_in_flight(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(1000, calls=5)
    sandbox.inject_fault(kind="slow", delay=0.5, count=10**6)  # ten batch upserts of half a second
    port = free_port()
    daemon = DaemonProcess(daemon_config(analytics, sandbox, tmp_path, port), tmp_path / "daemon.log")
    try:
        wait_for(lambda: Scrape.written_so_far(port) >= 200, timeout=60)
        during = Scrape.of(port)
        written = during.value("funnelsync_contacts_written_total")
        backlog = during.value("funnelsync_journal_backlog", kind="write")
        assert written is not None and backlog is not None
        assert 200 <= written < 1000 and backlog > 0
        assert 900 <= written + backlog <= 1000  # a batch may be answered between the two
        assert during.value("funnelsync_run_in_progress") == 1
        assert during.total("funnelsync_runs_total") == 0  # no run has ended yet
        assert during.value("funnelsync_run_duration_seconds_count") == 0
        assert during.value("funnelsync_leader") == 1

        wait_for(lambda: Scrape.of(port).value("funnelsync_runs_total", outcome="ok") == 1, timeout=60)
        after = Scrape.of(port)
        assert after.value("funnelsync_contacts_written_total") == 1000
        assert after.value("funnelsync_journal_backlog", kind="write") == 0
        assert after.value("funnelsync_run_in_progress") == 0
        assert after.value("funnelsync_run_duration_seconds_count") == 1
        assert (after.value("funnelsync_run_duration_seconds_sum") or 0) > 0
        assert (after.value("funnelsync_last_success_timestamp_seconds") or 0) > 0
        assert after.value("funnelsync_runs_total", outcome="failed") == 0  # shown from the start
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_a_failed_run_is_counted_by_its_outcome_and_in_the_failures_in_a_row(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(3, calls=5)
    sandbox.inject_fault(path_prefix="/", kind="status", status=401, count=10**6)
    with served(in_process(analytics, sandbox, tmp_path), start=False) as (daemon, port):
        in_thread(daemon.sync_job)
        scrape = Scrape.of(port)
    assert scrape.value("funnelsync_runs_total", outcome="failed") == 1
    assert scrape.value("funnelsync_runs_total", outcome="ok") == 0
    assert scrape.value("funnelsync_failed_runs_in_a_row") == 1
    assert scrape.value("funnelsync_last_success_timestamp_seconds") == 0


def test_contacts_rejected_and_enrollments_are_counted_by_kind_and_outcome(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(3, calls=5)  # middle: each added to the stage's list
    analytics.add("astronaut@example.com", role="Astronaut", calls=5)  # not one of the role's options
    data = config_data(analytics, sandbox.url, tmp_path / "state.db")
    data["funnel"]["stages"][1]["enroll"] = {"list": "API funnel: sandbox"}
    data["daemon"] = {"schedule": "0 0 1 1 *"}
    with served(parse_config(data), start=False) as (daemon, port):
        in_thread(daemon.sync_job)
        scrape = Scrape.of(port)
    assert scrape.value("funnelsync_runs_total", outcome="rejects") == 1
    assert scrape.value("funnelsync_contacts_written_total") == 3
    assert scrape.value("funnelsync_contacts_rejected_total") == 1
    assert scrape.value("funnelsync_enrollments_total", kind="list_add", outcome="done") == 3
    assert scrape.value("funnelsync_journal_backlog", kind="list_add") == 0
    assert scrape.value("funnelsync_journal_backlog", kind="write") == 0
    assert len(sandbox.store.lists()["API funnel: sandbox"]["members"]) == 3


def test_two_daemons_in_one_process_keep_their_own_counts_out_of_the_global_registry(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(4, calls=5)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (served(in_process(analytics, sandbox, tmp_path / "a"), start=False) as (first, first_port),
          served(in_process(analytics, sandbox, tmp_path / "b"), start=False) as (_second, second_port)):
        in_thread(first.sync_job)
        assert Scrape.of(first_port).value("funnelsync_contacts_written_total") == 4
        assert Scrape.of(second_port).value("funnelsync_contacts_written_total") == 0
        assert Scrape.of(second_port).total("funnelsync_runs_total") == 0
    assert b"funnelsync_" not in generate_latest(REGISTRY)


def test_the_connectors_reports_count_for_the_run_that_makes_them_and_nowhere_else() -> None:
    mine, other = telemetry.Metrics(), telemetry.Metrics()
    telemetry.hubspot_request("contacts_upsert", 200)  # outside any daemon's run: nowhere

    def other_run() -> None:
        with telemetry.recording(other):
            telemetry.hubspot_request("contacts_upsert", 503)

    with telemetry.recording(mine):
        telemetry.hubspot_request("contacts_upsert", 200)
        telemetry.hubspot_request("contacts_upsert", 200)
        telemetry.hubspot_request("lists", "timeout")
        telemetry.rate_limited("TEN_SECONDLY_ROLLING")
        telemetry.rate_budget(0.4, 199_000)
        thread = threading.Thread(target=other_run)  # another daemon's run, on its own thread
        thread.start()
        thread.join()
    scrape = Scrape(generate_latest(mine.registry).decode())
    assert scrape.value("funnelsync_hubspot_requests_total", kind="contacts_upsert", status="200") == 2
    assert scrape.value("funnelsync_hubspot_requests_total", kind="lists", status="timeout") == 1
    assert scrape.value("funnelsync_hubspot_requests_total", status="503") is None
    assert scrape.value("funnelsync_hubspot_rate_limited_total", policy="TEN_SECONDLY_ROLLING") == 1
    assert scrape.value("funnelsync_hubspot_rate_budget_used_ratio") == 0.4
    assert scrape.value("funnelsync_hubspot_daily_requests_remaining") == 199_000
    theirs = Scrape(generate_latest(other.registry).decode())
    assert theirs.value("funnelsync_hubspot_requests_total", kind="contacts_upsert", status="503") == 1
    assert theirs.total("funnelsync_hubspot_requests_total") == 1


def test_every_metric_is_named_after_prometheus_conventions_and_described_in_the_readme(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    with served(in_process(analytics, sandbox, tmp_path), start=False) as (_daemon, port):
        families = Scrape.of(port).families
    readme = README.read_text()
    section = readme.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    names = set()
    for family in families:
        assert family.name.startswith("funnelsync_") and family.documentation, family.name
        exposed = family.name + "_total" if family.type == "counter" else family.name
        assert f"`{exposed}`" in section, f"{exposed} is not described in the README's Metrics section"
        if family.type != "counter":
            assert not family.name.endswith("_total"), family.name  # _total is for counters only
        names.add(exposed)
    timed = {name for name in names if "duration" in name or "timestamp" in name}
    assert timed and all(name.endswith("_seconds") for name in timed)  # base units
    described = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `funnelsync_")}
    assert described == names  # and nothing the README describes is missing
