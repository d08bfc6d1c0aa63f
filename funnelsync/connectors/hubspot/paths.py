"""Where each HubSpot API lives in the configured API version.

HubSpot's REST APIs are date-versioned since 2026-03 (`/crm/objects/2026-09/contacts/...`), a new
version each March and September. The numbered paths (`/crm/v3/...`, `/automation/v4/...`) are
"legacy": v4 loses support on 30 March 2027 and v1-v3 in September 2027. The shapes of the requests
and answers funnelsync uses are the same in every version (checked against HubSpot's published API
descriptions); only the paths differ, so this is the one place that knows them.

The v2 workflow enrollment has no date-versioned equivalent: it is the same path in every version.
"""

from __future__ import annotations

from dataclasses import dataclass

from funnelsync.connectors.hubspot_settings import LEGACY


@dataclass(frozen=True)
class ApiPaths:
    version: str

    @property
    def legacy(self) -> bool:
        return self.version == LEGACY

    def _dated(self, api: str, legacy: str) -> str:
        return legacy if self.legacy else f"{api}/{self.version}"

    @property
    def contacts(self) -> str:
        return self._dated("/crm/objects", "/crm/v3/objects") + "/contacts"

    @property
    def properties(self) -> str:
        return self._dated("/crm/properties", "/crm/v3/properties") + "/contacts"

    @property
    def lists(self) -> str:
        return self._dated("/crm/lists", "/crm/v3/lists")

    @property
    def sequences(self) -> str:
        return self._dated("/automation/sequences", "/automation/v4/sequences")

    @property
    def events(self) -> str:
        """Custom behavioural events: definitions and occurrences. From 2026-09 under `/events/custom`."""
        if self.version == "2026-03":
            return "/events/2026-03"
        return self._dated("/events/custom", "/events/v3")

    workflows = "/automation/v2/workflows"  # no date-versioned equivalent
