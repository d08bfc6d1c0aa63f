"""Source values become what HubSpot accepts, or a reason the contact is set aside."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from funnelsync.config import Funnel, PropertyMapping
from funnelsync.mappings.contacts import normalize_email
from funnelsync.mappings.funnel import decide_stage, stage_for
from funnelsync.mappings.values import ValueProblem, to_hubspot


def prop(kind: str, options: list[str] | None = None) -> PropertyMapping:
    return PropertyMapping(column="c", name="p", label="P", type=kind, options=options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "wire"), [(0, "0"), (12, "12"), (1.5, "1.5"), ("  42 ", "42"),
                                             (Decimal("3.10"), "3.1"), (2.0, "2"), (None, "")])
def test_numbers(value: object, wire: str) -> None:
    assert to_hubspot(value, prop("number")) == wire


@pytest.mark.parametrize("value", ["12 calls", True, float("nan"), "inf"])
def test_non_numbers_are_refused_before_sending(value: object) -> None:
    with pytest.raises(ValueProblem):
        to_hubspot(value, prop("number"))


def test_dates_are_midnight_utc_in_epoch_milliseconds() -> None:
    midnight = int(datetime(2026, 3, 4, tzinfo=UTC).timestamp() * 1000)
    assert to_hubspot(date(2026, 3, 4), prop("date")) == str(midnight)
    assert to_hubspot("2026-03-04", prop("date")) == str(midnight)
    # late in the evening somewhere west of UTC is already the next day in UTC
    evening = datetime(2026, 3, 3, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert to_hubspot(evening, prop("date")) == str(midnight)


def test_datetimes_are_epoch_milliseconds_and_naive_means_utc() -> None:
    assert to_hubspot("2026-03-04T10:00:00", prop("datetime")) == str(
        int(datetime(2026, 3, 4, 10, tzinfo=UTC).timestamp() * 1000)
    )
    assert to_hubspot("2026-03-04T10:00:00Z", prop("datetime")) == to_hubspot(
        datetime(2026, 3, 4, 12, tzinfo=timezone(timedelta(hours=2))), prop("datetime")
    )
    with pytest.raises(ValueProblem):
        to_hubspot("last tuesday", prop("datetime"))


def test_booleans() -> None:
    assert to_hubspot(True, prop("bool")) == "true"
    assert to_hubspot("No", prop("bool")) == "false"
    assert to_hubspot(1, prop("bool")) == "true"
    with pytest.raises(ValueProblem):
        to_hubspot("maybe", prop("bool"))


def test_enumerations_must_be_an_option() -> None:
    roles = prop("enumeration", ["Engineering", "Sales"])
    assert to_hubspot("Engineering", roles) == "Engineering"
    assert to_hubspot("engineering ", roles) == "Engineering"
    with pytest.raises(ValueProblem, match="not one of the options"):
        to_hubspot("Astronaut", roles)


@pytest.mark.parametrize(("raw", "email"), [
    ("  Ada@Example.COM ", "ada@example.com"),
    ("not-an-email", None), ("", None), (None, None), (42, None), ("a@b", None), ("a..b@x.com", None),
])
def test_emails_are_trimmed_and_lower_cased(raw: object, email: str | None) -> None:
    assert normalize_email(raw) == email


FUNNEL = Funnel(metric="m", stages=[
    {"value": "top", "label": "T"}, {"value": "middle", "label": "M", "above": 0},
    {"value": "bottom", "label": "B", "above": 1000},
])


@pytest.mark.parametrize(("calls", "stage"), [(None, "top"), (0, "top"), (1, "middle"),
                                               (1000, "middle"), (1001, "bottom")])
def test_seed_funnel_bounds(calls: int | None, stage: str) -> None:
    assert stage_for(None if calls is None else Decimal(calls), FUNNEL) == stage


NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_stages_only_move_forward_without_demote_after_days() -> None:
    assert decide_stage(FUNNEL, "middle", "bottom", None, NOW).stage == "bottom"
    assert decide_stage(FUNNEL, "bottom", "middle", None, NOW).stage == "bottom"
    assert decide_stage(FUNNEL, "top", None, None, NOW).stage == "top"


def test_demotion_waits_for_the_configured_days_below_the_bound() -> None:
    funnel = FUNNEL.model_copy(update={"demote_after_days": 7})
    first = decide_stage(funnel, "middle", "bottom", None, NOW)
    assert first.stage == "bottom" and first.below_since == NOW
    later = decide_stage(funnel, "middle", "bottom", first.below_since, NOW + timedelta(days=6))
    assert later.stage == "bottom"
    due = decide_stage(funnel, "middle", "bottom", first.below_since, NOW + timedelta(days=7))
    assert due.stage == "middle" and due.below_since is None
    back_above = decide_stage(funnel, "bottom", "bottom", first.below_since, NOW + timedelta(days=3))
    assert back_above.below_since is None
