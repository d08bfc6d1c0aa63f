"""`[hubspot]`: the settings of the HubSpot connector (`hubspot/`).

They sit beside the package, not in it: importing `hubspot/` runs its `__init__`, which imports
the client, the CRM interface and through it `mappings/`, which imports `config.py`, so
`config.py` could not import settings inside the package without a cycle."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from funnelsync.settings import _api_base_url, _env_name, _internal_name, _Strict

# HubSpot's own API, and its highest published burst limit (a private app with the API limit
# increase; 100 on Free/Starter, 190 on Professional/Enterprise). A proxy or a local server may allow more.
HUBSPOT_API_DOMAIN = "hubapi.com"
HUBSPOT_HIGHEST_BURST_PER_10S = 250


class HubSpotSettings(_Strict):
    base_url: str = "https://api.hubapi.com"
    token_env: str = "HUBSPOT_ACCESS_TOKEN"
    requests_per_10s: int = Field(default=90, ge=1)  # see Config.warnings for HubSpot's own limit
    daily_request_budget: int = Field(default=200_000, ge=1)
    property_group: str = "funnelsync"
    property_group_label: str = "funnelsync"
    batch_size: int = Field(default=100, ge=1, le=100)
    timeout_seconds: float = Field(default=30.0, gt=0)

    _check_env = field_validator("token_env")(_env_name)
    _check_group = field_validator("property_group")(_internal_name)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _api_base_url(value, "https://api.hubapi.com")

    @property
    def is_hubspots(self) -> bool:
        """Whether base_url is HubSpot's own API (not the sandbox, a proxy or a mock)."""
        host = urlsplit(self.base_url).hostname or ""
        return host == HUBSPOT_API_DOMAIN or host.endswith(f".{HUBSPOT_API_DOMAIN}")

