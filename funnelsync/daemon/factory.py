"""Building the parts a command needs from the config: source, CRM, state."""

from __future__ import annotations

from funnelsync.config import Config, MoesifSource, SqlSource, read_token
from funnelsync.connectors.hubspot import HubSpotCrm
from funnelsync.connectors.source import Source
from funnelsync.state import StateStore


def open_source(config: Config) -> Source:
    settings = config.source
    if isinstance(settings, SqlSource):
        from funnelsync.connectors.sql import SqlUsageSource

        return SqlUsageSource(settings)
    if isinstance(settings, MoesifSource):
        from funnelsync.connectors.moesif import MoesifUsageSource

        return MoesifUsageSource(settings, read_token(settings.token_env, "source.token_env"))
    raise AssertionError(settings)


def open_crm(config: Config) -> HubSpotCrm:
    return HubSpotCrm(config.hubspot, read_token(config.hubspot.token_env, "hubspot.token_env"))


def open_state(config: Config) -> StateStore:
    return StateStore(config.state.url)
