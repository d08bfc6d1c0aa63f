"""`[hubspot]`: the settings of the HubSpot connector (`hubspot/`).

They sit beside the package, not in it: importing `hubspot/` runs its `__init__`, which imports
the client, the CRM interface and through it `mappings/`, which imports `config.py`, so
`config.py` could not import settings inside the package without a cycle."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from funnelsync.settings import _api_base_url, _env_name, _internal_name, _Strict

# HubSpot's own API, and its highest published burst limit (a private app with the API limit
# increase; 100 on Free/Starter, 190 on Professional/Enterprise). A proxy or a local server may allow more.
HUBSPOT_API_DOMAIN = "hubapi.com"
HUBSPOT_HIGHEST_BURST_PER_10S = 250

# HubSpot's date versions funnelsync speaks, newest first, and "legacy" for the numbered paths.
ApiVersion = Literal["2026-09", "2026-03", "legacy"]
LEGACY = "legacy"
NEWEST_API_VERSION: ApiVersion = "2026-09"
# When HubSpot stops serving the v2 workflow API (with every v1-v3 path), as it announced it.
V2_WORKFLOWS_END = "September 2027"


class HubSpotSettings(_Strict):
    base_url: str = Field(default="https://api.hubapi.com", description=(
        "HubSpot's API: https://, or plain http:// to a loopback address only (the sandbox, "
        "http://127.0.0.1:8765), since the token travels with every request."))
    api_version: ApiVersion = Field(default=NEWEST_API_VERSION, description=(
        "HubSpot's date-versioned API (a version each March and September), or legacy for the numbered "
        "paths (/crm/v3/..., /automation/v4/...), which HubSpot ends in 2027."))
    token_env: str = Field(default="HUBSPOT_ACCESS_TOKEN", description=(
        "The environment variable that holds the Service Key, private-app token or OAuth access token."))
    requests_per_10s: int = Field(default=90, ge=1, description=(  # see Config.warnings for HubSpot's own limit
        "This daemon's share of the portal's 10-second burst limit (100 on Free/Starter, 190 on "
        "Professional/Enterprise), leaving room for other integrations; above 250 on api.hubapi.com, a warning."))
    daily_request_budget: int = Field(default=200_000, ge=1, description=(
        "Requests a UTC day; a run that spends it stops with the outcome daily-limit."))
    property_group: str = Field(default="funnelsync", description=(
        "The internal name of the contact property group funnelsync's properties go in; created if missing."))
    property_group_label: str = Field(default="funnelsync", description=(
        "The label HubSpot shows for that group."), examples=["API usage (funnelsync)"])
    batch_size: int = Field(default=100, ge=1, le=100, description=(
        "Contacts a batch upsert; HubSpot takes at most 100."))
    concurrency: int = Field(default=0, ge=0, le=64, description=(
        "Requests in flight at once, within requests_per_10s: 0 = as many as the limit and HubSpot's "
        "measured answer time need (about requests_per_10s / 10 s x answer time, plus one); 1 = one at a time."))
    timeout_seconds: float = Field(default=30.0, gt=0, description=(
        "How long a request to HubSpot may take before it is given up (and, if it may have been applied, "
        "checked before it is sent again)."))

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

