"""The HubSpot CRM connector: one object per role, sharing one transport (its API version's
paths, rate budget, retries and call count). HubSpot's generated client (`hubspot-api-client`
12) speaks only the numbered paths, so requests go over `requests` on the paths of `paths.py`,
with the bodies of HubSpot's published API descriptions; the sandbox checks them against the
generated client's models."""

from __future__ import annotations

from typing import Any

from funnelsync.connectors.hubspot.automation import Automation
from funnelsync.connectors.hubspot.client import HubSpotApi
from funnelsync.connectors.hubspot.contacts import ContactWriter
from funnelsync.connectors.hubspot.reading import ContactReader
from funnelsync.connectors.hubspot.schema import PropertyProvisioner
from funnelsync.connectors.hubspot_settings import HubSpotSettings


class HubSpotCrm:
    """The roles of `funnelsync.connectors.crm.Crm`, for one portal."""

    def __init__(self, settings: HubSpotSettings, token: str, **options: Any) -> None:
        """`options` go to `HubSpotApi` (budget, retry_attempts, rate_limit_wait, sleep)."""
        self.api = HubSpotApi(settings, token, **options)
        self.properties = PropertyProvisioner(self.api)
        self.contacts = ContactWriter(self.api)
        self.enrollment = Automation(self.api)
        self.reading = ContactReader(self.api)

    def requests_wanted_in_flight(self) -> int:
        return self.api.requests_wanted_in_flight()


__all__ = ["HubSpotCrm"]
