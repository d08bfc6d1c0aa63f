"""A local HubSpot-compatible API server: the demo runs against it, the tests drive the real
`hubspot-api-client` against it over real HTTP.

It serves the endpoints funnelsync uses with HubSpot's paths, bodies, status codes and limits:
contact property groups and properties, contact batch upsert/read and search, static lists and their
memberships, legacy (v2) workflow enrollment, v4 workflow id mappings, sales sequences, account
details and custom behavioural events (definitions and occurrences), each under its numbered
("legacy") path and under the date versions 2026-03 and 2026-09 (`versions.py`). It checks what
it is sent and what it answers with the `hubspot` client's own models, keeps what it was sent
(`store`, `GET /`, `GET /_sandbox/state`; every request with its API version), enforces the
portal's validation rules on 2026-09 writes (`add_validation_rule`) and can be made to fail on
purpose (`inject_fault`, `POST /_sandbox/faults`) or to answer late, as HubSpot does
(`SandboxServer(latency=Latency(0.3))`, `POST /_sandbox/latency`; none by default).

It never imports `funnelsync.connectors.hubspot`: it is what that connector is checked against.

    with SandboxServer(token="sandbox-token", requests_per_10s=100) as sandbox:
        client = hubspot.Client.create(access_token="sandbox-token", host=sandbox.url)
"""

from .latency import Delay, Latency
from .limits import Fault
from .server import SandboxServer
from .store import SandboxStore
from .validation_rules import ValidationRule

__all__ = ["Delay", "Fault", "Latency", "SandboxServer", "SandboxStore", "ValidationRule"]
