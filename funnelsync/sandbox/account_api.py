"""Account information: the portal's Hub ID, time zone and kind, as `/account-info/.../details` gives them."""

from __future__ import annotations

from .calls import Answer, ApiCall
from .store import SandboxStore

# the sandbox's day rolls over at midnight UTC (see limits.py), so its portal keeps UTC
TIME_ZONE = "Etc/UTC"


def details(call: ApiCall, store: SandboxStore) -> Answer:
    return Answer(200, {
        "portalId": store.portal_id,
        "accountType": "STANDARD",
        "timeZone": TIME_ZONE,
        "utcOffset": "+00:00",
        "utcOffsetMilliseconds": 0,
        "companyCurrency": "USD",
        "additionalCurrencies": [],
        "dataHostingLocation": "na1",
        "uiDomain": "app.hubspot.com",
    })
