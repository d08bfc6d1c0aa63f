"""How many HubSpot requests a planned sync makes, and the least time its rate budget allows.

Counted as a sync makes them: on an empty state, the lost-state check (the properties read, a
search per few of funnelsync's properties that exist); the properties read and the group
looked up; the group, properties and options set up; one upsert per `[hubspot].batch_size`
contacts; for each list changed and each custom event sent, a look-up (and, in a new portal,
its creation); list membership changes in chunks; one request per workflow or sequence
enrollment and per event occurrence. Not counted: retries, HubSpot refusing a whole batch
(narrowed down in more requests), and enrollments left over by earlier runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from funnelsync.connectors.hubspot.automation import MEMBERSHIP_CHUNK
from funnelsync.connectors.hubspot.reading import SEARCH_FILTER_GROUPS
from funnelsync.state.models import OperationKind

BUDGET_WINDOW_SECONDS = 10.0
LIST_KINDS = (OperationKind.LIST_ADD, OperationKind.LIST_REMOVE)
ONE_EACH = {OperationKind.ENROLL_WORKFLOW: "workflow enrollments",
            OperationKind.ENROLL_SEQUENCE: "sequence enrollments",
            OperationKind.ENROLL_EVENT: "custom events"}


@dataclass(frozen=True)
class PlannedSync:
    """What a plan says the sync will do, as far as HubSpot requests go."""

    contacts_to_write: int
    properties_to_create: int = 0
    properties_gaining_options: int = 0
    operations: Mapping[tuple[OperationKind, str], int] | None = None  # (kind, target) -> contacts
    state_is_empty: bool = False  # the sync first checks that HubSpot holds none of funnelsync's data
    properties_to_search: int = 0  # for that check: funnelsync's properties the portal has
    portal_is_new: bool = False  # none of funnelsync's properties there: nor its group or lists


@dataclass(frozen=True)
class RequestEstimate:
    parts: dict[str, int]  # what the requests are for -> how many, in the order the sync makes them

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def _ceil_div(count: int, size: int) -> int:
    return -(-count // size)


def estimate_requests(planned: PlannedSync, *, batch_size: int, membership_chunk: int = MEMBERSHIP_CHUNK,
                      search_groups: int = SEARCH_FILTER_GROUPS) -> RequestEstimate:
    operations = planned.operations or {}
    # each looked up by name once a run: a list, an event's definition
    named = {(kind in LIST_KINDS, target) for (kind, target), count in operations.items()
             if count and (kind in LIST_KINDS or kind == OperationKind.ENROLL_EVENT)}
    lost_state_check = 1 + _ceil_div(planned.properties_to_search, search_groups) if planned.state_is_empty else 0
    parts = {
        "reads": lost_state_check + 2 + len(named),  # the properties, the group, each list and event by name
        "property set-up": int(planned.portal_is_new) + planned.properties_to_create
        + planned.properties_gaining_options,
        "contact batches": _ceil_div(planned.contacts_to_write, batch_size),
        "lists and events set up": len(named) if planned.portal_is_new else 0,
        "list membership": sum(_ceil_div(count, membership_chunk)
                               for (kind, _), count in operations.items() if kind in LIST_KINDS),
    }
    for kind, part in ONE_EACH.items():
        parts[part] = sum(count for (of_kind, _), count in operations.items() if of_kind == kind)
    return RequestEstimate(parts)


def least_seconds(requests: int, per_window: int, window: float = BUDGET_WINDOW_SECONDS) -> float:
    """The least time `requests` take under a sliding window of `per_window` a `window`: the
    first window's worth goes at once, each further one a window later."""
    return window * ((requests - 1) // per_window) if requests > 0 else 0.0
