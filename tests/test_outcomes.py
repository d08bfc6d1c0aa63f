"""What a confirmed write or a segment change journals, decided without a database or HubSpot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from funnelsync.config import Enroll, Sequence
from funnelsync.state.records import Confirmed, PlannedWrite, SegmentChange, StageMove
from funnelsync.sync.outcomes import entry_operations, segment_change_operations, stage_entry_operations

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
TARGETS = {
    "top": Enroll(sequence=Sequence(id="5550001", sender_email="devrel@example.com", user_id=7701)),
    "middle": Enroll(workflow_id=1234567),
    "bottom": Enroll(list="API funnel: production"),
}


def moved(email: str, to: str, previous: str | None = None, at: datetime = NOW) -> Confirmed:
    return Confirmed(PlannedWrite(email, {"stage": to}, "fp", previous_stage=previous,
                                  stage_move=StageMove(to, at)), "101")


def test_a_write_without_a_stage_move_journals_nothing() -> None:
    unchanged = Confirmed(PlannedWrite("ada@example.com", {"used_event_count": "4"}, "fp"), "101")
    assert stage_entry_operations([unchanged], TARGETS) == []


def test_entering_a_stage_enrolls_in_its_target_keyed_by_the_contact_target_and_entry() -> None:
    [operation] = stage_entry_operations([moved("ada@example.com", "middle", previous="top")], TARGETS)
    assert (operation.kind, operation.target, operation.email) == ("enroll_workflow", "1234567", "ada@example.com")
    assert operation.key == f"enroll_workflow:1234567:ada@example.com:stage-entry:middle:{NOW.isoformat()}"
    assert operation.payload == {"for": "stage middle"}


def test_a_sequence_carries_its_sender_and_user() -> None:
    [operation] = stage_entry_operations([moved("ada@example.com", "top")], TARGETS)
    assert (operation.kind, operation.target) == ("enroll_sequence", "5550001")
    assert operation.payload == {"for": "stage top", "sender_email": "devrel@example.com", "user_id": "7701"}


def test_leaving_a_stage_with_a_list_takes_the_contact_off_it() -> None:
    operations = stage_entry_operations([moved("ada@example.com", "middle", previous="bottom")], TARGETS)
    assert [(op.kind, op.target) for op in operations] == [("enroll_workflow", "1234567"),
                                                          ("list_remove", "API funnel: production")]


def test_moving_between_two_stages_of_one_list_keeps_the_contact_on_it() -> None:
    same_list = Enroll(list="Integrated")
    operations = list(entry_operations("ada@example.com", "e", NOW, "stage x", same_list, same_list))
    assert [(op.kind, op.target) for op in operations] == [("list_add", "Integrated")]


def test_a_second_entry_into_a_stage_is_a_new_enrollment() -> None:
    first = stage_entry_operations([moved("ada@example.com", "middle", at=NOW)], TARGETS)
    again = stage_entry_operations([moved("ada@example.com", "middle", at=NOW + timedelta(days=9))], TARGETS)
    assert first[0].key != again[0].key


def test_segment_entries_enroll_and_exits_leave_the_segments_list() -> None:
    targets = {"quota": Enroll(list="Over quota"), "quiet": None}
    operations = segment_change_operations([SegmentChange("ada@example.com", "quota", True),
                                            SegmentChange("bob@example.com", "quota", False),
                                            SegmentChange("cy@example.com", "quiet", True)], targets, NOW)
    at = NOW.isoformat()
    assert [op.key for op in operations] == [f"list_add:Over quota:ada@example.com:segment:quota:{at}",
                                             f"list_remove:Over quota:bob@example.com:segment-exit:quota:{at}"]


def test_an_event_carries_when_the_entry_happened_and_is_keyed_like_every_enrollment() -> None:
    targets = {"bottom": Enroll(event="entered_production")}
    at = NOW - timedelta(hours=3)
    [operation] = stage_entry_operations([moved("ada@example.com", "bottom", at=at)], targets)
    assert (operation.kind, operation.target) == ("enroll_event", "entered_production")
    assert operation.key == f"enroll_event:entered_production:ada@example.com:stage-entry:bottom:{at.isoformat()}"
    assert operation.payload == {"for": "stage bottom", "occurred_at": at.isoformat()}
