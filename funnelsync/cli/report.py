"""What the commands print for people: run summaries, plans, status, rejects."""

from __future__ import annotations

from collections.abc import Iterable

from funnelsync.cli.plan_report import plan_text as plan_text  # where tests and callers have found it
from funnelsync.state.models import Operation, OperationStatus, Reject, Run
from funnelsync.sync.engine import RunSummary
from funnelsync.sync.rebuild import RebuildReport

PLAN_LINES_SHOWN = 200


def summary_text(summary: RunSummary, *, title: str = "sync") -> str:
    lines = [f"{title}: {summary.rows_read} source rows, {summary.contacts} contacts"]
    for reason, count in sorted(summary.skipped.items()):
        lines.append(f"  skipped ({reason}): {count}")
    verb = "would write" if summary.dry_run else "written"
    done = summary.to_write if summary.dry_run else summary.written
    lines.append(f"  contacts {verb}: {done}  unchanged: {summary.unchanged}  rejected: {summary.rejected}")
    if not summary.dry_run:
        lines.append(f"  properties written: {summary.properties_written}  HubSpot calls: {summary.api_calls}")
    if summary.stage_moves:
        moves = ", ".join(f"{stage} {count}" for stage, count in sorted(summary.stage_moves.items()))
        lines.append(f"  stage entries: {moves}")
    if summary.segment_moves:
        moves = ", ".join(f"{move} {count}" for move, count in sorted(summary.segment_moves.items()))
        lines.append(f"  segments: {moves}")
    enrollments = summary.enrollments
    if enrollments.done or enrollments.failed or enrollments.already_enrolled:
        made = ", ".join(f"{kind.replace('_', ' ')} {count}" for kind, count in sorted(enrollments.done.items()))
        line = f"  enrollments made: {made or 'none'}; failed (retried next run): {enrollments.failed}"
        if enrollments.already_enrolled:
            line += f"; found already made: {enrollments.already_enrolled}"
        lines.append(line)
        for target, reason in enrollments.problems.items():
            lines.append(f"    {target}: {reason}")
    schema = summary.schema
    if schema.created:
        lines.append(f"  properties {'to create' if summary.dry_run else 'created'}: {', '.join(schema.created)}")
    for name, options in schema.options_added.items():
        lines.append(f"  options {'to add to' if summary.dry_run else 'added to'} {name}: {', '.join(options)}")
    if summary.stopped_early:
        lines.append("  stopped early on request: the next run carries on")
    if summary.seconds:
        lines.append(f"  took {summary.seconds:.1f} s")
    return "\n".join(lines)


def runs_text(runs: Iterable[Run]) -> str:
    lines = ["recent runs:"]
    for run in runs:
        ended = run.finished_at.isoformat(timespec="seconds") if run.finished_at else "(not finished)"
        lines.append(
            f"  #{run.id} {run.started_at.isoformat(timespec='seconds')} -> {ended} {run.outcome}: "
            f"read {run.rows_read}, written {run.contacts_written}, rejected {run.contacts_rejected}, "
            f"calls {run.api_calls}" + (f" ({run.message[:200]})" if run.message else "")
        )
    if len(lines) == 1:
        lines.append("  none yet")
    return "\n".join(lines)


def rejects_text(rejects: list[Reject], enrollments: list[Operation]) -> str:
    lines = [f"{len(rejects)} rejected record(s):" if rejects else "no rejected records"]
    for reject in rejects:
        retry = "retried next run" if reject.will_retry else "not retried"
        lines.append(
            f"  {reject.email} [{reject.code}] {reject.reason} "
            f"(attempts {reject.attempts}, last {reject.last_rejected_at.isoformat(timespec='seconds')}, {retry})"
        )
    if enrollments:
        lines.append(f"{len(enrollments)} failed enrollment(s), retried next run:")
    for operation in enrollments:
        unknown = (" (outcome unknown: checked in HubSpot before any resend)"
                   if operation.status == OperationStatus.STARTED else "")
        lines.append(f"  {operation.email} {operation.kind.replace('_', ' ')} {operation.target}: "
                     f"{operation.last_error} (attempts {operation.attempts}){unknown}")
    return "\n".join(lines)


def rebuild_text(report: RebuildReport) -> str:
    verb = "would record" if report.dry_run else "recorded"
    title = "state rebuild (nothing written)" if report.dry_run else f"state rebuilt at {report.where}"
    stages = ", ".join(f"{stage} {count}" for stage, count in sorted(report.stages.items())) or "none"
    lines = [f"{title}: {report.source_contacts} source contacts, {report.in_hubspot} found in HubSpot",
             f"  {verb} {len(report.contacts)} contacts; stages: {stages}; "
             f"{report.stage_entries} stage entries with their dates from HubSpot"]
    if report.segment_members:
        members = ", ".join(f"{name} {count}" for name, count in sorted(report.segment_members.items()))
        lines.append(f"  segment members: {members}")
    if report.enrollment_lookups:
        lines.append(f"  contacts whose enrollments were looked up in HubSpot: {report.enrollment_lookups}")
    for contact in report.contacts[:PLAN_LINES_SHOWN]:
        entries = ", ".join(f"{stage} {at.isoformat(timespec='seconds')}" for stage, at in contact.entries.items())
        line = f"  {contact.email} (record {contact.record_id}): stage {contact.stage or '(none)'}"
        line += f"; entered {entries}" if entries else ""
        line += f"; segments {', '.join(sorted(contact.segments))}" if contact.segments else ""
        lines.append(line)
    if len(report.contacts) > PLAN_LINES_SHOWN:
        lines.append(f"  ... and {len(report.contacts) - PLAN_LINES_SHOWN} more contacts")
    if not report.dry_run:
        lines.append("  the next sync sends only what differs from HubSpot and enrolls only contacts whose "
                     "stage or segments changed")
    lines.append(f"  took {report.seconds:.1f} s")
    return "\n".join(lines)
