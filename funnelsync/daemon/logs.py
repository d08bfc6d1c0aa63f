"""Logging: JSON lines when not on a terminal, readable lines on one; to stderr.

structlog goes through the standard library's logging, so that every line is in one format,
funnelsync's own and those of the libraries under it (urllib3 retrying, APScheduler, Alembic,
the sandbox's server), each with its logger name. Secrets are redacted from every line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# the libraries' own chatter below WARNING only with --debug
QUIET_LIBRARIES = ("urllib3", "apscheduler", "alembic", "filelock", "asyncio")
_SECRET_KEYS = re.compile(r"token|authorization|password|secret|api[_-]?key", re.IGNORECASE)
_SECRET_TEXT = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}|(://[^:/@\s]+:)[^@\s]+(@)")
REDACTED = "[redacted]"


def redact_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A value under a key that names a secret, and a bearer token or URL password in any text."""
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and key != "token_env":
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = _SECRET_TEXT.sub(_redacted_text, value)
    return event


def _redacted_text(match: re.Match[str]) -> str:
    if match.group(1):
        return f"{match.group(1)}{REDACTED}"
    return f"{match.group(2)}{REDACTED}{match.group(3)}"


def configure_logging(*, debug: bool = False, json_logs: bool | None = None) -> None:
    as_json = not sys.stderr.isatty() if json_logs is None else json_logs
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if debug else logging.INFO),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.PositionalArgumentsFormatter()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            structlog.processors.format_exc_info if as_json else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
