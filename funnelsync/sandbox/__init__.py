"""A local HubSpot-compatible API server: the demo runs against it, the tests drive the real
`hubspot-api-client` against it over real HTTP.

It serves the endpoints funnelsync uses with HubSpot's paths, bodies, status codes and limits:
contact property groups and properties, contact batch upsert/read and search, static lists and their
memberships, legacy (v2) workflow enrollment, v4 workflow id mappings and sales sequences. It
checks what it is sent and what it answers with the `hubspot` client's own models, keeps what
it was sent (`store`, `GET /`, `GET /_sandbox/state`) and can be made to fail on purpose
(`inject_fault`, `POST /_sandbox/faults`).

It never imports `funnelsync.connectors.hubspot`: it is what that connector is checked against.

    with SandboxServer(token="sandbox-token", requests_per_10s=100) as sandbox:
        client = hubspot.Client.create(access_token="sandbox-token", host=sandbox.url)
"""

from .limits import Fault
from .server import SandboxServer
from .store import SandboxStore

__all__ = ["Fault", "SandboxServer", "SandboxStore"]
