"""Building the parts a command needs from the config: source, CRM, state."""

from __future__ import annotations

import threading

from funnelsync.config import Config, read_token
from funnelsync.connectors.budget import RequestBudget
from funnelsync.connectors.hubspot import HubSpotCrm
from funnelsync.connectors.moesif import MoesifUsageSource
from funnelsync.connectors.moesif.settings import MoesifSource
from funnelsync.connectors.source import Source
from funnelsync.connectors.sql import SqlUsageSource
from funnelsync.connectors.sql_settings import SqlSource
from funnelsync.state import StateStore


def open_source(config: Config) -> Source:
    settings = config.source
    if isinstance(settings, SqlSource):
        return SqlUsageSource(settings)
    if isinstance(settings, MoesifSource):
        return MoesifUsageSource(settings, read_token(settings.token_env, "source.token_env"))
    raise AssertionError(settings)


def open_crm(config: Config, *, used_today: int = 0, stop: threading.Event | None = None) -> HubSpotCrm:
    """`used_today`: requests earlier runs sent today, so the daily budget spans runs; `stop`
    ends the retries and waits of a run asked to stop."""
    settings = config.hubspot
    budget = RequestBudget(settings.requests_per_10s, 10.0, daily_limit=settings.daily_request_budget,
                           used_today=used_today, stop=stop)
    return HubSpotCrm(settings, read_token(settings.token_env, "hubspot.token_env"), budget=budget, stop=stop)


def open_state(config: Config) -> StateStore:
    return StateStore(config.state.url)
