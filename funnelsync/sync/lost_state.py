"""A lost state: funnelsync's data in HubSpot, none of it in the state.

A sync over an empty state takes every contact for new: it would enroll each one again and
write every `*_entered_at` with its own run's time. So before anything is written, an empty
state is checked against the portal with one search; a portal that already holds funnelsync's
data stops the sync until `funnelsync state rebuild` has read that data back. A portal without
any (a true first sync) goes on as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

from funnelsync.config import Config
from funnelsync.connectors.crm import ReadingBack
from funnelsync.errors import StateLost
from funnelsync.state.store import StateStore

REBUILD_COMMAND = "funnelsync state rebuild"


@dataclass(frozen=True)
class LostState:
    where: str  # the state's location
    contacts: int  # at least this many contacts in HubSpot hold funnelsync's data
    properties: tuple[str, ...]

    @property
    def _held(self) -> str:
        return f"HubSpot holds {self.contacts}+ contacts with {' or '.join(self.properties)}"

    def reason(self) -> str:
        return (f"the state at {self.where} is empty but {self._held}: a sync now would enroll them all "
                f"again and rewrite their stage entry dates. Nothing was written; run `{REBUILD_COMMAND}` "
                "to read the state back from HubSpot (`--dry-run` shows what it would record)")

    def in_plan(self) -> str:
        return f"the state is empty but {self._held}: a sync would stop; run `{REBUILD_COMMAND}`"


def funnelsync_properties(config: Config) -> list[str]:
    """The properties whose values say funnelsync has written to a portal: the stage when
    there is a funnel (a property only funnelsync sets), else every property it writes."""
    if config.funnel is not None:
        return [config.funnel.property]
    return [prop.name for prop in config.properties] + [s.property for s in config.segments if s.property]


def find_lost_state(config: Config, state: StateStore, crm: ReadingBack) -> LostState | None:
    if not state.holds_nothing():
        return None
    return portal_holding_data(config, crm, state.where())


def portal_holding_data(config: Config, crm: ReadingBack, where: str) -> LostState | None:
    """What the portal holds of funnelsync's data, for a state at `where` that holds nothing."""
    names = funnelsync_properties(config)
    held = crm.contacts_holding(names) if names else 0
    return LostState(where, held, tuple(names)) if held else None


def refuse_lost_state(config: Config, state: StateStore, crm: ReadingBack) -> None:
    """Raise StateLost when the state is empty and the portal holds funnelsync's data."""
    lost = find_lost_state(config, state, crm)
    if lost is not None:
        raise StateLost(lost.reason())
