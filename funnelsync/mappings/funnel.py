"""The integration funnel: which stage a contact is in, and when it may move.

A contact is in the last stage whose `above` bound its metric exceeds. Stages move forward
only, unless `demote_after_days` is set: then a contact moves back only after that many
consecutive days below its stage's bound, so a contact at the threshold does not flap.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from funnelsync.config import Funnel


def stage_for(metric: Decimal | None, funnel: Funnel) -> str:
    value = metric if metric is not None else Decimal(0)
    current = funnel.stages[0].value
    for stage in funnel.stages[1:]:
        if stage.above is not None and value > Decimal(str(stage.above)):
            current = stage.value
    return current


def stage_rank(stage: str, funnel: Funnel) -> int:
    for position, candidate in enumerate(funnel.stages):
        if candidate.value == stage:
            return position
    return -1  # a stage the config no longer has: any configured stage is a move forward


@dataclass(frozen=True)
class StageDecision:
    stage: str
    below_since: datetime | None  # when the metric first fell below the held stage's bound


def decide_stage(
    funnel: Funnel,
    measured: str,
    held: str | None,
    below_since: datetime | None,
    now: datetime,
) -> StageDecision:
    """The stage to write, given the stage the metric says and the stage the contact holds."""
    if measured == held or held is None or stage_rank(held, funnel) < 0:
        return StageDecision(measured, None)
    if stage_rank(measured, funnel) >= stage_rank(held, funnel):
        return StageDecision(measured, None)
    if funnel.demote_after_days is None:
        return StageDecision(held, None)
    since = below_since or now
    if now - since >= timedelta(days=funnel.demote_after_days):
        return StageDecision(measured, None)
    return StageDecision(held, since)


HELLO_WORLD_PROPERTY = "time_to_first_hello_world_days"
WORKING_APP_PROPERTY = "time_to_first_working_app_days"
_DAY_SECONDS = 86_400
_TENTH = Decimal("0.1")


def entry_property(funnel: Funnel, stage: str) -> str:
    """The datetime property that holds when a contact first entered a stage."""
    return _entry_property(funnel.property, stage)


@functools.lru_cache(maxsize=1024)
def _entry_property(stage_property: str, stage: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", stage.lower()).strip("_") or "stage"
    return f"{stage_property}_{slug}_entered_at"[:100]


def entry_properties(funnel: Funnel) -> dict[str, str]:
    return {stage.value: entry_property(funnel, stage.value) for stage in funnel.stages}


@dataclass(frozen=True)
class FunnelTiming:
    """Days from signup to the first API call (hello world) and to production (working app)."""

    hello_world_days: Decimal | None
    working_app_days: Decimal | None


def _days(start: datetime, end: datetime) -> Decimal:
    days = Decimal(max((end - start).total_seconds(), 0) / _DAY_SECONDS)
    return days.quantize(_TENTH)


def funnel_timing(funnel: Funnel, entries: dict[str, datetime], signup: datetime | None) -> FunnelTiming:
    if signup is None or len(funnel.stages) < 2:
        return FunnelTiming(None, None)
    integrated = [entries[s.value] for s in funnel.stages[1:] if s.value in entries]
    production = entries.get(funnel.stages[-1].value)
    return FunnelTiming(
        _days(signup, min(integrated)) if integrated else None,
        _days(signup, production) if production else None,
    )
