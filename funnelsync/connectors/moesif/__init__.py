"""The Moesif source: per-user API usage read through Moesif's Management API.

`source.py` is the `Source` (paging users, one aggregated events search per page of users),
`client.py` the HTTP client with its table from Moesif's answers to funnelsync's errors, and
`times.py` Moesif's relative and zone-less times.
"""

from funnelsync.connectors.moesif.client import MoesifClient
from funnelsync.connectors.moesif.source import MoesifUsageSource, output_columns
from funnelsync.connectors.moesif.times import RelativeTime, parse_moesif_time

__all__ = [
    "MoesifClient",
    "MoesifUsageSource",
    "RelativeTime",
    "output_columns",
    "parse_moesif_time",
]
