"""Logs: every line JSON off a terminal, the libraries' lines included, secrets redacted."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from funnelsync.daemon.logs import configure_logging
from funnelsync.sandbox import SandboxServer
from tests.conftest import TOKEN, TOKEN_ENV, Analytics, config_data
from tests.test_cli import write_toml


@pytest.fixture
def json_logs() -> Iterator[None]:
    """The test configures JSON logs itself, once capsys holds stderr; put them back after."""
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers = []


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_libraries_lines_are_json_with_their_logger_names(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_logs=True)  # after capsys took stderr over
    logging.getLogger("urllib3.connectionpool").warning("Retrying (%s) after connection broken", "Retry(total=2)")
    structlog.get_logger("funnelsync.sync").info("sync finished", outcome="ok")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> 0001")  # below WARNING: quiet
    [retrying, finished] = lines(capsys.readouterr().err)
    assert retrying["logger"] == "urllib3.connectionpool" and retrying["level"] == "warning"
    assert retrying["event"] == "Retrying (Retry(total=2)) after connection broken"
    assert (finished["logger"], finished["event"], finished["outcome"]) == ("funnelsync.sync", "sync finished", "ok")


def test_secrets_are_redacted_from_every_line(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json_logs=True)
    structlog.get_logger("funnelsync.hubspot").warning(
        "refused", token="pat-na1-0123456789", token_env="HUBSPOT_ACCESS_TOKEN",
        header="Authorization: Bearer pat-na1-0123456789abcdef", state="postgresql+psycopg://fs:hunter2@db/state")
    logging.getLogger("urllib3").warning("sent Bearer pat-na1-0123456789abcdef to %s", "api.hubapi.com")
    text = capsys.readouterr().err
    assert "0123456789" not in text and "hunter2" not in text
    [refused, sent] = lines(text)
    assert refused["token"] == "[redacted]" and refused["token_env"] == "HUBSPOT_ACCESS_TOKEN"
    assert refused["state"] == "postgresql+psycopg://fs:[redacted]@db/state"
    assert sent["event"] == "sent Bearer [redacted] to api.hubapi.com"


def test_a_sync_logs_json_on_every_line_of_its_stderr(
    analytics: Analytics, sandbox: SandboxServer, tmp_path: Path
) -> None:
    analytics.add_many(30, calls=5)
    sandbox.inject_fault(kind="status", status=503, count=2)  # retried: logged by funnelsync.retry
    config = write_toml(tmp_path / "config.toml", config_data(analytics, sandbox.url, tmp_path / "state.db"))
    result = subprocess.run([sys.executable, "-m", "funnelsync", "-c", str(config), "sync"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, TOKEN_ENV: TOKEN})
    assert result.returncode == 0, result.stderr
    logged = lines(result.stderr)
    assert logged and all("logger" in line and "timestamp" in line for line in logged)
    assert any(line["event"] == "retrying" for line in logged)
    assert TOKEN not in result.stderr
