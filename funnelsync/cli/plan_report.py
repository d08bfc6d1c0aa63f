"""What `plan` shows: a summary first, then each contact's changes, with values as HubSpot
shows them; as text for a person, or every change as JSON or CSV for a program (`--format`).

JSON is one document, `{"format": "funnelsync-plan/1", "summary", "contacts", "rejected"}`,
one contact to a line so that it can be read as it comes. CSV has a row per changed property
per contact, one per segment entered or left, and one per rejected contact. Both keep their
names from one release to the next; a new key or column may be added, none renamed.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import click

from funnelsync.config import Config
from funnelsync.mappings.display import display
from funnelsync.mappings.schema import PropertySpec, property_specs
from funnelsync.mappings.values import CLEARED
from funnelsync.state.models import OperationKind
from funnelsync.state.records import Confirmed, PlannedOperation, PlannedWrite, SegmentChange, StageMove
from funnelsync.sync.engine import RunSummary
from funnelsync.sync.estimate import PlannedSync, RequestEstimate, estimate_requests, least_seconds
from funnelsync.sync.lost_state import funnelsync_properties
from funnelsync.sync.outcomes import segment_change_operations, segment_targets, stage_entry_operations, stage_targets
from funnelsync.sync.sinks import PreviewSink

FORMATS = ("text", "json", "csv")
JSON_FORMAT = "funnelsync-plan/1"
CSV_COLUMNS = ("email", "contact", "change", "name", "label", "old", "new", "old_value", "new_value",
               "stage_from", "stage_to", "reason")
CONTACTS_SHOWN = 50
REJECTS_SHOWN = 50
TEXT_CHARS = 40  # of a text value on a line of the text output
NO_VALUE = "(none)"
SEE_ALL = "--format json or --format csv"
LIST_KINDS = (OperationKind.LIST_ADD, OperationKind.LIST_REMOVE)
_TARGET_WORDS = {OperationKind.ENROLL_WORKFLOW: "workflow", OperationKind.ENROLL_SEQUENCE: "sequence",
                 OperationKind.ENROLL_EVENT: "custom event"}


@dataclass(frozen=True)
class PropertyChange:
    name: str
    label: str
    old_value: str  # HubSpot's wire strings, "" for no value
    new_value: str
    old: str  # as HubSpot shows them
    new: str


@dataclass
class ContactPlan:
    email: str
    new: bool  # not in the state: HubSpot creates it, or updates the contact that has its email
    properties: list[PropertyChange] = field(default_factory=list)
    stage_from: str | None = None  # stage values, when the stage moves
    stage_to: str | None = None
    entered: list[str] = field(default_factory=list)  # segment names
    left: list[str] = field(default_factory=list)
    operations: list[PlannedOperation] = field(default_factory=list)


class PlanView:
    """A dry run's summary arranged for showing: the counts, the enrollments the changes make,
    the HubSpot requests the sync would send, and each contact's changes, built only as they
    are shown (a first sync of a large portal changes millions of values)."""

    def __init__(self, summary: RunSummary, config: Config) -> None:
        self.summary = summary
        self.config = config
        self.preview = summary.preview or PreviewSink()
        self.specs = {spec.name: spec for spec in property_specs(config)}
        self.stage_labels = {stage.value: stage.label for stage in config.funnel.stages} if config.funnel else {}
        self.segment_labels = {segment.name: segment.label for segment in config.segments}
        self._order = {name: position for position, name in enumerate(self.specs)}
        self._orders: dict[tuple[str, ...], list[str]] = {}
        self._displays = {name: (spec.label, display(spec)) for name, spec in self.specs.items()}
        if config.funnel:
            self._order[config.funnel.property] = -1  # the stage first: what a contact's line is about
        self._stage_targets = stage_targets(config)
        self._segment_targets = segment_targets(config)
        self._now = datetime.now(UTC)  # only in the keys of the operations previewed
        self._writes = self.preview.writes
        self._segments: dict[str, list[SegmentChange]] = {}
        for change in self.preview.segment_changes:
            self._segments.setdefault(change.email, []).append(change)
        self.to_create = sum(1 for write in self._writes if write.email not in self.preview.held)
        self.to_update = len(self._writes) - self.to_create
        self.contact_count = len(self._writes) + len(self._segments.keys() - {w.email for w in self._writes})
        self.stage_moves = self._count_stage_moves()
        self.segment_moves = self._count_segment_moves()
        self.operations: Counter[tuple[OperationKind, str]] = Counter()
        self._reasons: dict[tuple[OperationKind, str], dict[str, None]] = {}
        self._count_operations()
        self.estimate = estimate_requests(self._planned_sync(), batch_size=config.hubspot.batch_size)

    # -- counts ------------------------------------------------------------------------------------

    def _count_stage_moves(self) -> dict[tuple[str | None, str], int]:
        """(from, to) -> contacts, in funnel order."""
        moves = Counter((w.previous_stage, w.stage_move.to_stage) for w in self._writes if w.stage_move is not None)
        order = {value: position for position, value in enumerate(self.stage_labels)}
        return dict(sorted(moves.items(), key=lambda item: tuple(order.get(stage or "", -1) for stage in item[0])))

    def _count_segment_moves(self) -> dict[str, tuple[int, int]]:
        """segment -> (entering, leaving), in the config's order."""
        moves = Counter((change.segment, change.entered) for change in self.preview.segment_changes)
        return {name: (moves[(name, True)], moves[(name, False)]) for name in self.segment_labels
                if moves[(name, True)] or moves[(name, False)]}

    def _count_operations(self) -> None:
        """What the moves enroll, from one contact of each kind of move: the same stage or
        segment move makes the same operations for every contact."""
        moves: list[tuple[list[PlannedOperation], int]] = []
        for (old, new), count in self.stage_moves.items():
            sample = PlannedWrite("", {}, "", previous_stage=old, stage_move=StageMove(new, self._now))
            moves.append((self._stage_operations(sample), count))
        for name, (entering, leaving) in self.segment_moves.items():
            for entered, count in ((True, entering), (False, leaving)):
                moves.append((self._segment_operations([SegmentChange("", name, entered)]), count))
        for operations, count in moves:
            for operation in operations:
                key = (operation.kind, operation.target)
                self.operations[key] += count
                self._reasons.setdefault(key, {})[self._reason(str(operation.payload.get("for", "")))] = None

    def _stage_operations(self, write: PlannedWrite) -> list[PlannedOperation]:
        return stage_entry_operations([Confirmed(write, None)], self._stage_targets)

    def _segment_operations(self, changes: list[SegmentChange]) -> list[PlannedOperation]:
        return segment_change_operations(changes, self._segment_targets, self._now)

    def _reason(self, reason: str) -> str:
        what, _, name = reason.partition(" ")
        labels = self.stage_labels if what == "stage" else self.segment_labels
        return f"{what} {labels.get(name, name)}"

    def reasons(self, kind: OperationKind, target: str) -> str:
        """What makes these operations, by label: `stage Integrated in sandbox, segment ...`."""
        return ", ".join(self._reasons.get((kind, target), {}))

    def list_changes(self) -> dict[str, tuple[int, int]]:
        """list -> (adds, removes)."""
        names = dict.fromkeys(target for (kind, target) in self.operations if kind in LIST_KINDS)
        return {name: (self.operations[(OperationKind.LIST_ADD, name)],
                       self.operations[(OperationKind.LIST_REMOVE, name)]) for name in names}

    def enrollments(self) -> dict[tuple[OperationKind, str], int]:
        return {key: count for key, count in self.operations.items() if key[0] not in LIST_KINDS}

    def stage_label(self, value: str | None) -> str:
        return NO_VALUE if value is None else self.stage_labels.get(value, value)

    @property
    def least_seconds(self) -> float:
        return least_seconds(self.estimate.total, self.config.hubspot.requests_per_10s)

    def _planned_sync(self) -> PlannedSync:
        created = set(self.summary.schema.created)
        return PlannedSync(
            contacts_to_write=len(self._writes),
            properties_to_create=len(created),
            properties_gaining_options=len(self.summary.schema.options_added),
            operations=self.operations,
            # the state's emptiness as the plan saw it: no contact it planned was known there
            state_is_empty=not self.preview.held and not self.summary.unchanged,
            properties_to_search=sum(1 for name in funnelsync_properties(self.config) if name not in created),
            portal_is_new=bool(self.specs) and created >= self.specs.keys(),
        )

    # -- each contact --------------------------------------------------------------------------------

    def contacts(self) -> Iterator[ContactPlan]:
        """Every contact with a change: those written in the order planned, then those whose
        segments alone change."""
        for write in self._writes:
            yield self._contact(write, self._segments.get(write.email, []))
        written = {write.email for write in self._writes}
        for email, changes in self._segments.items():
            if email not in written:
                yield self._contact(None, changes, email)

    def _contact(self, write: PlannedWrite | None, changes: list[SegmentChange], email: str = "") -> ContactPlan:
        if write is None:
            contact = ContactPlan(email, new=False)
        else:
            held = self.preview.held.get(write.email)
            contact = ContactPlan(write.email, new=held is None, properties=self._changes(write, held or {}))
            if write.stage_move is not None:
                contact.stage_from, contact.stage_to = write.previous_stage, write.stage_move.to_stage
            contact.operations += self._stage_operations(write)
        contact.entered = [change.segment for change in changes if change.entered]
        contact.left = [change.segment for change in changes if not change.entered]
        contact.operations += self._segment_operations(changes)
        return contact

    def _changes(self, write: PlannedWrite, held: dict[str, str]) -> list[PropertyChange]:
        changes = []
        names = tuple(write.properties)  # most writes of a plan change the same properties
        if names not in self._orders:
            self._orders[names] = sorted(names, key=lambda name: (self._order.get(name, len(self._order)), name))
        for name in self._orders[names]:
            if name not in self._displays:
                self._displays[name] = (name, display(PropertySpec(name, name, "string", "text")))
            label, show = self._displays[name]
            old, new = held.get(name, CLEARED), write.properties[name]
            changes.append(PropertyChange(name, label, old, new, show(old), show(new)))
        return changes


# -- text ------------------------------------------------------------------------------------------


def _n(count: int) -> str:
    return f"{count:,}"


def duration(seconds: float) -> str:
    """`2 min 17 s`, `1 h 5 min`, `40 s`."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _table(rows: list[tuple[str, int, str]], indent: str = "  ") -> list[str]:
    """Rows of (what, how many, a note), the counts aligned."""
    if not rows:
        return []
    label_width = max(len(label) for label, _, _ in rows)
    count_width = max(len(_n(count)) for _, count, _ in rows)
    return [f"{indent}{label:<{label_width}}  {_n(count):>{count_width}}{'  ' + note if note else ''}".rstrip()
            for label, count, note in rows]


def _short(value: str) -> str:
    if not value:
        return NO_VALUE
    return value if len(value) <= TEXT_CHARS else value[: TEXT_CHARS - 1] + "…"


def _fit(parts: list[str], head: str, width: int) -> str:
    """`head` and as many of `parts` as fit in `width`, then how many were left out."""
    line = head
    for count, part in enumerate(parts):
        piece = (": " if count == 0 else "; ") + part
        after = len(parts) - count - 1  # parts after this one, said as `(+n more)` if cut
        if count and len(line) + len(piece) + (len(f"; (+{after} more)") if after else 0) > width:
            return f"{line}; (+{len(parts) - count} more)"
        line += piece
    return line


def contact_line(contact: ContactPlan, view: PlanView, width: int) -> str:
    """`email: Label: old -> new; ...`, only what changes; a new contact's values without `old ->`."""
    parts = [f"{change.label}: {_short(change.new)}" if contact.new
             else f"{change.label}: {_short(change.old)} -> {_short(change.new)}"
             for change in contact.properties]
    parts += [f"enters segment {view.segment_labels.get(name, name)}" for name in contact.entered]
    parts += [f"leaves segment {view.segment_labels.get(name, name)}" for name in contact.left]
    return _fit(parts, f"  {contact.email}{' (new)' if contact.new else ''}", width)


def _summary_lines(view: PlanView) -> list[str]:
    summary = view.summary
    lines = [f"plan (nothing written): {_n(summary.rows_read)} source rows, {_n(summary.contacts)} contacts"]
    rows = [("contacts to create", view.to_create,
             "new to funnelsync: HubSpot creates each, or updates the contact with its email"),
            ("contacts to update", view.to_update, ""),
            ("unchanged", summary.unchanged, ""),
            ("rejected", summary.rejected, "")]
    rows += [(f"skipped ({reason})", count, "") for reason, count in sorted(summary.skipped.items())]
    lines += _table(rows)
    if moves := view.stage_moves:
        lines.append("stage moves")
        lines += _table([(f"{view.stage_label(old)} -> {view.stage_label(new)}", count, "")
                         for (old, new), count in moves.items()])
    if segments := view.segment_moves:
        lines.append("segments")
        rows = []
        for name, (entering, leaving) in segments.items():
            rows += [(f"entering {view.segment_labels[name]}", entering, "")] if entering else []
            rows += [(f"leaving {view.segment_labels[name]}", leaving, "")] if leaving else []
        lines += _table(rows)
    if lists := view.list_changes():
        lines.append("lists")
        rows = []
        for name, (adds, removes) in lists.items():
            rows += [(f"add to {name!r}", adds, view.reasons(OperationKind.LIST_ADD, name))] if adds else []
            rows += ([(f"remove from {name!r}", removes, view.reasons(OperationKind.LIST_REMOVE, name))]
                     if removes else [])
        lines += _table(rows)
    if enrollments := view.enrollments():
        lines.append("enrollments")
        lines += _table([(f"{_TARGET_WORDS.get(kind, kind)} {target}", count, view.reasons(kind, target))
                         for (kind, target), count in enrollments.items()])
    schema = summary.schema
    if schema.created:
        lines.append(f"properties to create ({len(schema.created)}): {', '.join(schema.created)}")
    for name, options in schema.options_added.items():
        lines.append(f"options to add to {name}: {', '.join(options)}")
    return lines


def requests_lines(view: PlanView) -> list[str]:
    estimate, hubspot = view.estimate, view.config.hubspot
    per_10s = hubspot.requests_per_10s
    least = view.least_seconds
    pace = f"at least {duration(least)}" if least else "no wait for the budget"
    lines = [f"HubSpot requests: about {_n(estimate.total)}; at {_n(per_10s)} per 10 s {pace}"]
    parts = [f"{part} {_n(count)}" + (f" ({hubspot.batch_size} a batch)" if part == "contact batches" else "")
             for part, count in estimate.parts.items() if count]
    lines.append(f"  {', '.join(parts)}")
    if estimate.total > hubspot.daily_request_budget:
        lines.append(f"  more than the daily request budget of {_n(hubspot.daily_request_budget)}: the sync "
                     "stops when it is spent, and the next run after the reset carries on")
    return lines


def plan_text(summary: RunSummary, config: Config, *, width: int = 160) -> str:
    view = PlanView(summary, config)
    lines = _summary_lines(view)
    lost = view.preview.lost_state
    if lost is not None:
        lines.insert(0, lost.in_plan())
    else:
        lines += requests_lines(view)
    if view.contact_count:
        if view.contact_count > CONTACTS_SHOWN:
            lines.append(f"changes (the first {CONTACTS_SHOWN} of {_n(view.contact_count)} contacts; "
                         f"every change: {SEE_ALL})")
        else:
            lines.append("changes")
        lines += [contact_line(contact, view, width) for contact in islice(view.contacts(), CONTACTS_SHOWN)]
    if summary.refused:
        lines.append(f"rejected ({_n(len(summary.refused))})")
        lines += [f"  {refusal.email} [{refusal.code}] {refusal.reason}" for refusal in summary.refused[:REJECTS_SHOWN]]
        if len(summary.refused) > REJECTS_SHOWN:
            lines.append(f"  ... and {_n(len(summary.refused) - REJECTS_SHOWN)} more: {SEE_ALL}")
    if summary.stopped_early:
        lines.append("stopped early on request: this plan is of the rows read until then")
    if summary.seconds:
        lines.append(f"took {summary.seconds:.1f} s")
    return "\n".join(lines)


def notes(summary: RunSummary) -> list[str]:
    """What the text says besides the changes: on stderr in the other formats."""
    found = []
    if summary.preview is not None and summary.preview.lost_state is not None:
        found.append(summary.preview.lost_state.in_plan())
    if summary.stopped_early:
        found.append("stopped early on request: this plan is of the rows read until then")
    return found


# -- JSON ------------------------------------------------------------------------------------------


def _value(text: str) -> str | None:
    return text if text != CLEARED else None


def _summary_json(view: PlanView) -> dict[str, Any]:
    summary = view.summary
    lost = view.preview.lost_state
    estimate: RequestEstimate = view.estimate
    return {
        "source_rows": summary.rows_read, "contacts": summary.contacts, "to_create": view.to_create,
        "to_update": view.to_update, "unchanged": summary.unchanged, "rejected": summary.rejected,
        "skipped": dict(sorted(summary.skipped.items())),
        "stage_moves": [{"from": old, "to": new, "from_label": view.stage_labels.get(old or ""),
                         "to_label": view.stage_labels.get(new), "contacts": count}
                        for (old, new), count in view.stage_moves.items()],
        "segments": [{"segment": name, "label": view.segment_labels[name], "entering": entering,
                      "leaving": leaving} for name, (entering, leaving) in view.segment_moves.items()],
        "lists": [{"list": name, "add": adds, "remove": removes}
                  for name, (adds, removes) in view.list_changes().items()],
        "enrollments": [{"kind": str(kind), "target": target, "contacts": count}
                        for (kind, target), count in view.enrollments().items()],
        "properties_to_create": list(summary.schema.created),
        "options_to_add": {name: list(options) for name, options in summary.schema.options_added.items()},
        "requests": None if lost is not None else {
            "total": estimate.total, "parts": estimate.parts,
            "requests_per_10s": view.config.hubspot.requests_per_10s, "at_least_seconds": view.least_seconds,
            "daily_request_budget": view.config.hubspot.daily_request_budget,
        },
        "lost_state": lost.in_plan() if lost is not None else None,
        "stopped_early": summary.stopped_early,
    }


def _contact_json(contact: ContactPlan, view: PlanView) -> dict[str, Any]:
    return {
        "email": contact.email, "new": contact.new,
        "stage": None if contact.stage_to is None else {
            "from": contact.stage_from, "to": contact.stage_to,
            "from_label": view.stage_labels.get(contact.stage_from or ""),
            "to_label": view.stage_labels.get(contact.stage_to)},
        "properties": [{"name": c.name, "label": c.label, "old": _value(c.old), "new": _value(c.new),
                        "old_value": _value(c.old_value), "new_value": _value(c.new_value)}
                       for c in contact.properties],
        "segments": {"entering": contact.entered, "leaving": contact.left},
        "enrollments": [{"kind": str(op.kind), "target": op.target, "for": op.payload.get("for")}
                        for op in contact.operations],
    }


def plan_json(summary: RunSummary, config: Config) -> Iterator[str]:
    """The document in pieces, one contact to a line."""
    view = PlanView(summary, config)
    yield (f'{{"format": {json.dumps(JSON_FORMAT)},\n"summary": '
           f"{json.dumps(_summary_json(view), ensure_ascii=False)},\n\"contacts\": [")
    for position, contact in enumerate(view.contacts()):
        yield ("\n" if position == 0 else ",\n") + json.dumps(_contact_json(contact, view), ensure_ascii=False)
    rejected = [{"email": r.email, "code": r.code, "reason": r.reason, "will_retry": r.will_retry}
                for r in summary.refused]
    yield f"],\n\"rejected\": {json.dumps(rejected, ensure_ascii=False)}}}\n"


# -- CSV -------------------------------------------------------------------------------------------


_MEMBER = {True: ("Yes", "true"), False: ("No", "false")}  # in a segment, shown as a yes/no property is


def _csv_rows(view: PlanView) -> Iterator[tuple[str, ...]]:
    for contact in view.contacts():
        status = "new" if contact.new else "known"
        stage = (contact.stage_from or "", contact.stage_to or "")
        for c in contact.properties:
            yield (contact.email, status, "property", c.name, c.label, c.old, c.new, c.old_value, c.new_value,
                   *stage, "")
        for name, member in [(name, True) for name in contact.entered] + [(name, False) for name in contact.left]:
            (old, old_value), (new, new_value) = _MEMBER[not member], _MEMBER[member]
            yield (contact.email, status, "segment", name, view.segment_labels.get(name, name), old, new,
                   old_value, new_value, *stage, "")
    for refusal in view.summary.refused:
        yield (refusal.email, "rejected", "rejected", refusal.code, "", "", "", "", "", "", "", refusal.reason)


def plan_csv(summary: RunSummary, config: Config) -> Iterator[str]:
    """A header, then the rows, a few hundred at a time."""
    view = PlanView(summary, config)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for count, row in enumerate(_csv_rows(view), start=1):
        writer.writerow(row)
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# -- out -------------------------------------------------------------------------------------------


def write_plan(summary: RunSummary, config: Config, output: str = "text") -> None:
    """The plan on stdout; in JSON or CSV, what is not a change goes to stderr."""
    if output == "text":
        width = max(shutil.get_terminal_size((160, 24)).columns, 60)
        click.echo(plan_text(summary, config, width=width))
        return
    for note in notes(summary):
        click.echo(f"funnelsync: {note}", err=True)
    pieces = plan_json(summary, config) if output == "json" else plan_csv(summary, config)
    for piece in pieces:
        sys.stdout.write(piece)
    sys.stdout.flush()
