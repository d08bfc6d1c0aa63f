"""Every error funnelsync raises, sorted by what the caller should do about it.

Each remote's connector maps that remote's answers onto these classes in one table; the sync
engine and the CLI decide by class only, never by message text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class FunnelsyncError(Exception):
    """Base class. `exit_status` is what `funnelsync sync` exits with when this ends a run."""

    exit_status = 3


@dataclass(frozen=True)
class ConfigProblem:
    key: str  # the TOML key, e.g. "properties[2].type"
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(FunnelsyncError):
    """The config or the command line is wrong: the user must edit something."""

    exit_status = 2

    def __init__(self, problems: list[ConfigProblem] | str, *, path: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [ConfigProblem("config", problems)]
        self.problems = problems
        self.path = path
        where = f" in {path}" if path else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the configuration{where} has {len(problems)} problem(s):\n{lines}")


class CredentialsError(FunnelsyncError):
    """A remote refused the token (401) or the token lacks a scope (403)."""

    exit_status = 3


class FatalError(FunnelsyncError):
    """The run cannot go on: retrying now will not help (unreachable source, bad answer...)."""

    exit_status = 3


class DailyLimitReached(FatalError):
    """The portal's daily request budget is spent; the next run after the reset resumes."""


class StateLocked(FunnelsyncError):
    """Another sync holds the state."""

    exit_status = 4


class StateError(FatalError):
    """The state database cannot be used (foreign or corrupt file, failed migration)."""


class EnrollmentTargetError(FunnelsyncError):
    """A workflow, list or sequence that does not exist or may not be used (404, 403): every
    enrollment into it fails until the config or the portal is fixed."""


class RetriableError(FunnelsyncError):
    """A transient failure (429 burst, 5xx, timeout, reset): retry after a wait."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(RetriableError):
    """HubSpot's (or Moesif's) short-window limit answered 429."""


class OutcomeUnknown(RetriableError):
    """A request that is not idempotent was sent, and its answer was lost (a timeout, a reset
    after sending, a 5xx after a possible apply): HubSpot may have applied it. It is never sent
    again blindly: the caller first settles it against what HubSpot holds."""


class StopRequested(FunnelsyncError):
    """SIGTERM/SIGINT asked the run to stop; what is left is carried on by the next run."""


class BatchRejected(FunnelsyncError):
    """A whole batch was refused (HubSpot 400) because of some of its rows.

    `body` is the remote's parsed answer, from which its connector finds the rows it names.
    """

    def __init__(self, message: str, *, body: Mapping[str, Any] | None = None, code: str = "") -> None:
        super().__init__(message)
        self.body = body or {}
        self.code = code


class StateLost(FatalError):
    """The state is new or empty but HubSpot already holds funnelsync's data: a sync would take
    every contact for new, enroll it again and rewrite its stage entry dates."""


class RebuildRefused(FunnelsyncError):
    """`state rebuild` was asked to fill a state that already holds contacts."""

    exit_status = 2
