"""State: what funnelsync last wrote for each contact, its stage history, rejected records, runs.

The diff against this state decides what a run sends; a contact's values are recorded only
after HubSpot confirmed them, so nothing counts as written that was not.
"""

from funnelsync.state.store import StateStore

__all__ = ["StateStore"]
