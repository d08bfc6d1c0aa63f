"""The status page on the daemon's HTTP port (`/` and `/status`): the funnel now and over time,
the last runs, the rejected records, segment and list sizes, and what the next run will do.

For RevOps, read-only, rendered on the server: one HTML document with its CSS inline and the
chart an inline SVG, so there is no build step and no script. Every figure is aggregated by the
state database (a row a stage, a run or a segment, never one a contact) and the lists are capped,
so the page stays a few tens of KB however many contacts there are. Whatever came from outside
(emails, HubSpot's reasons, the config's labels) is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from funnelsync.config import Config, Enroll
from funnelsync.daemon.logs import redact_secrets
from funnelsync.state.models import Operation, OperationKind, OperationStatus, Reject, Run, RunOutcome
from funnelsync.state.records import CountedStage
from funnelsync.state.store import StateStore

RUNS_SHOWN = 10
REJECTS_SHOWN = 25
FAILED_ENROLLMENTS_SHOWN = 10
REASON_SHOWN = 300  # characters of a reason or a run's message: HubSpot's can run to pages
CHART_WEEKS = 4
CHART_POINTS = 120  # at most: each the last run of its slice of the weeks shown
CHART_MARKERS_UP_TO = 40  # points: with more, the lines alone
# Okabe and Ito's colours, told apart with any colour vision; a stage's by its place in the funnel
STAGE_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000")
OTHER_STAGE_COLOUR = "#777777"  # a stage the config no longer names
NO_STAGE = "(none)"  # what the state calls contacts without a stage

OUTCOMES = {  # outcome -> what a person reads, and its tone
    RunOutcome.RUNNING: ("Running", "info"),
    RunOutcome.OK: ("OK", "ok"),
    RunOutcome.REJECTS: ("Some records rejected", "warn"),
    RunOutcome.ENROLLMENTS_FAILED: ("Some enrollments failed", "warn"),
    RunOutcome.STOPPED: ("Stopped, carried on next run", "info"),
    RunOutcome.FAILED: ("Failed", "bad"),
    RunOutcome.DAILY_LIMIT: ("Daily request budget spent", "bad"),
    RunOutcome.INTERRUPTED: ("Interrupted (the process died)", "bad"),
}
KINDS = {
    OperationKind.ENROLL_WORKFLOW: "workflow enrollment",
    OperationKind.ENROLL_SEQUENCE: "sequence enrollment",
    OperationKind.LIST_ADD: "list add",
    OperationKind.LIST_REMOVE: "list removal",
    OperationKind.WRITE: "property write",
}


def render(config: Config, state: StateStore, *, now: datetime | None = None) -> str:
    """The whole page, as of `now` (UTC)."""
    now = now or datetime.now(UTC)
    stages = Stages(config, state.contacts_per_stage())
    runs = state.recent_runs(RUNS_SHOWN)
    unfinished = state.unfinished_by_target()
    reject_counts = state.reject_counts()
    sections = [
        funnel_now(stages),
        funnel_over_time(stages, state.stage_counts_since(now - timedelta(weeks=CHART_WEEKS))),
        last_runs(runs, state.stage_moves_by_run([run.id for run in runs if run.id is not None])),
        rejected_records(reject_counts, state.rejects(REJECTS_SHOWN)),
        failed_enrollments(state.failed_enrollment_count(), state.failed_enrollments(FAILED_ENROLLMENTS_SHOWN)),
        segments_and_lists(config, stages, state.segment_sizes(), unfinished),
        next_run(config, runs, unfinished, reject_counts, now),
    ]
    return page(config, stages, now, sections)


# -- what a person reads ---------------------------------------------------------------------------

def _e(value: object) -> str:
    return html.escape(str(value))


def number(value: int) -> str:
    return f"{value:,}"


def when(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (f'<time datetime="{moment.isoformat(timespec="seconds")}">'
            f"{moment.day} {moment:%b %Y %H:%M} UTC</time>")


def duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def shortened(text: str, limit: int = REASON_SHOWN) -> str:
    """A reason or message as shown: secrets redacted, cut at `limit` characters."""
    text = str(redact_secrets(None, "", {"text": text})["text"])
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def kind_name(kind: OperationKind) -> str:
    return KINDS.get(kind) or str(kind).replace("_", " ")


def plural(count: int, one: str) -> str:
    return f"{number(count)} {one if count == 1 else one + 's'}"


# -- the stages ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    value: str
    label: str
    colour: str
    contacts: int


class Stages:
    """The config's stages in funnel order with their labels and colours, then any stage the
    state still holds that the config no longer names, then contacts without a stage."""

    def __init__(self, config: Config, counts: Mapping[str, int]) -> None:
        named = config.funnel.stages if config.funnel else []
        self.property_label = config.funnel.label if config.funnel else ""
        self.all = [Stage(s.value, s.label, STAGE_COLOURS[i % len(STAGE_COLOURS)], counts.get(s.value, 0))
                    for i, s in enumerate(named)]
        known = {s.value for s in named} | {NO_STAGE}
        self.all += [Stage(value, f"{value} (no longer in the config)", OTHER_STAGE_COLOUR, count)
                     for value, count in sorted(counts.items()) if value not in known]
        self.without_stage = counts.get(NO_STAGE, 0)
        self.total = sum(counts.values())

    def by_value(self) -> dict[str, Stage]:
        return {stage.value: stage for stage in self.all}


# -- the sections ----------------------------------------------------------------------------------

def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}" aria-labelledby="{anchor}-h"><h2 id="{anchor}-h">{_e(title)}</h2>{body}</section>'


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], *,
          numeric: Iterable[int] = (), wide: Iterable[int] = (), text: Iterable[int] = (),
          stacked: bool = True) -> str:
    """`rows` hold HTML already escaped. A stacked table turns each row into a card on a narrow
    screen, every value labelled with its header, two to a line but for the `wide` columns (a
    line each) and the `text` ones (free text, under its label, broken anywhere)."""
    classes = dict.fromkeys(numeric, "n") | dict.fromkeys(wide, "w") | dict.fromkeys(text, "t")
    head = "".join(f"<th scope=\"col\"{_class(classes.get(i))}>{_e(h)}</th>" for i, h in enumerate(headers))
    labels = [f' data-label="{_e(h)}"' if stacked else "" for h in headers]
    body = []
    for row in rows:
        cells = "".join(f"<th scope=\"row\"{labels[0]}>{cell}</th>" if i == 0 else
                        f"<td{labels[i]}{_class(classes.get(i))}>{cell}</td>" for i, cell in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    kind = ' class="stacked"' if stacked else ""
    return (f"<table{kind}><caption>{_e(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _class(name: str | None) -> str:
    return f' class="{name}"' if name else ""


def funnel_now(stages: Stages) -> str:
    if not stages.all and not stages.without_stage:
        return section("funnel", "The funnel now", "<p>No contact written yet: the first run fills this in.</p>")
    rows = []
    for stage in stages.all:
        share = stage.contacts / stages.total if stages.total else 0.0
        bar = (f'<span class="bar" aria-hidden="true"><span style="width:{share * 100:.1f}%;'
               f'background:{stage.colour}"></span></span>')
        rows.append([f'<span><span class="swatch" style="background:{stage.colour}"></span>{_e(stage.label)}</span>',
                     number(stage.contacts), f"{share:.0%}", bar])
    if stages.without_stage:
        share = stages.without_stage / stages.total
        rows.append(["Without a stage", number(stages.without_stage), f"{share:.0%}", ""])
    caption = f"Contacts per {stages.property_label or 'stage'}, in funnel order ({plural(stages.total, 'contact')})"
    return section("funnel", "The funnel now",
                   table(caption, ["Stage", "Contacts", "Share", "Of all contacts"], rows, numeric=(1, 2), wide=(3,)))


@dataclass(frozen=True)
class Point:
    """Contacts per stage as one run left them."""

    at: datetime
    counts: dict[str, int]


def history(rows: Sequence[CountedStage]) -> list[Point]:
    """One point a run, oldest first, thinned to CHART_POINTS: the last run of each slice."""
    by_run: dict[int, Point] = {}
    for row in rows:
        point = by_run.setdefault(row.run_id, Point(row.at, {}))
        point.counts[row.stage] = row.contacts
    points = sorted(by_run.values(), key=lambda p: p.at)
    if len(points) <= CHART_POINTS:
        return points
    first, span = points[0].at, (points[-1].at - points[0].at).total_seconds() or 1.0
    sliced: dict[int, Point] = {}
    for point in points:
        sliced[min(CHART_POINTS - 1, int((point.at - first).total_seconds() / span * CHART_POINTS))] = point
    return list(sliced.values())


def funnel_over_time(stages: Stages, rows: Sequence[CountedStage]) -> str:
    points = history(rows)
    title = f"The funnel over the last {CHART_WEEKS} weeks"
    if not stages.all:
        return section("history", title, "<p>The config has no funnel: there are no stages to chart.</p>")
    if not points:
        return section("history", title, f"<p>No run has finished in the last {CHART_WEEKS} weeks: each run adds "
                                         "a point to this chart.</p>")
    shown = [s for s in stages.all if any(s.value in p.counts for p in points)] or stages.all
    legend = "".join(f'<li><span class="swatch" style="background:{s.colour}"></span>{_e(s.label)}</li>'
                     for s in shown)
    figure = (f'<figure>{chart(shown, points)}<figcaption><ul class="legend">{legend}</ul>'
              f"Contacts per stage as each run left them ({plural(len(points), 'run')} shown), "
              "times in UTC.</figcaption></figure>")
    return section("history", title, figure + by_day(shown, points))


def chart(stages: Sequence[Stage], points: Sequence[Point]) -> str:
    """An SVG line a stage, with a title and a description for those who cannot see it."""
    peak = max((p.counts.get(s.value, 0) for p in points for s in stages), default=0)
    ticks = axis_ticks(peak)
    width, height, right, top, bottom = 400, 200, 14, 12, 28
    left = 12 + 8 * len(number(ticks[-1]))  # room for the longest count, at 13 px
    plot_w, plot_h = width - left - right, height - top - bottom
    first, last = points[0].at, points[-1].at
    span = (last - first).total_seconds()

    def x(at: datetime) -> float:
        return left + (plot_w * (at - first).total_seconds() / span if span else plot_w / 2)

    def y(count: int) -> float:
        return top + plot_h * (1 - count / ticks[-1])

    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-t chart-d" class="chart">',
             f'<title id="chart-t">Contacts per stage over the last {CHART_WEEKS} weeks</title>',
             f'<desc id="chart-d">{_e(chart_description(stages, points))}</desc>',
             '<g class="grid">']
    for tick in ticks:
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{number(tick)}</text>')
    parts.append("</g>")
    for at, anchor in ((first, "start"), (last, "end")) if span else ((first, "middle"),):
        label = (f"{at:%H:%M:%S}" if span and span < 3600 else f"{at:%H:%M}" if span and span < 2 * 86400
                 else f"{at.day} {at:%b}")
        parts.append(f'<text class="axis" x="{x(at):.1f}" y="{height - 8}" text-anchor="{anchor}">{label}</text>')
    for stage in stages:
        coords = [(x(p.at), y(p.counts.get(stage.value, 0))) for p in points]
        line = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{stage.colour}" stroke-width="2.5" '
                     'stroke-linejoin="round"/>')
        if len(points) <= CHART_MARKERS_UP_TO:
            parts += [f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{stage.colour}"/>' for cx, cy in coords]
    parts.append("</svg>")
    return "".join(parts)


def axis_ticks(peak: int) -> list[int]:
    """0 up to a round top at or above `peak`, in at most 5 steps of 1, 2 or 5 times a power of ten."""
    step = 1
    while -(-peak // step) > 5:
        step = step * 5 // 2 if str(step).startswith("2") else step * 2
    return list(range(0, max(step, -(-peak // step) * step) + 1, step))


def chart_description(stages: Sequence[Stage], points: Sequence[Point]) -> str:
    first, last = points[0], points[-1]
    changes = "; ".join(f"{s.label}: {number(first.counts.get(s.value, 0))} to {number(last.counts.get(s.value, 0))}"
                        for s in stages)
    return (f"From {first.at.day} {first.at:%b %Y %H:%M} to {last.at.day} {last.at:%b %Y %H:%M} UTC, "
            f"over {plural(len(points), 'run')}: {changes}. The numbers by day are in the table below.")


def by_day(stages: Sequence[Stage], points: Sequence[Point]) -> str:
    """The chart's numbers: each day's last run."""
    days: dict[date, Point] = {}
    for point in points:
        days[point.at.astimezone(UTC).date()] = point
    rows = [[f'<time datetime="{day.isoformat()}">{day.day} {day:%b %Y}</time>',
             *(number(p.counts.get(s.value, 0)) for s in stages)] for day, p in sorted(days.items())]
    return ("<details><summary>The numbers, by day</summary>"
            + table("Contacts per stage at each day's last run (UTC)", ["Day", *(s.label for s in stages)],
                    rows, numeric=range(1, len(stages) + 1))
            + "</details>")


def last_runs(runs: Sequence[Run], moves: Mapping[int, int]) -> str:
    title = "The last runs"
    if not runs:
        return section("runs", title, "<p>No run yet.</p>")
    rows = []
    for run in runs:
        label, tone = OUTCOMES.get(run.outcome, (str(run.outcome), "info"))
        outcome = f'<span class="badge {tone}">{_e(label)}</span>'
        if run.message:
            outcome += f'<span class="note">{_e(shortened(run.message))}</span>'
        took = duration((run.finished_at - run.started_at).total_seconds()) if run.finished_at else "not finished"
        enrollments = "not counted" if run.enrollments_made is None else number(run.enrollments_made)
        rows.append([f"#{run.id}", when(run.started_at), outcome, took, number(run.rows_read),
                     number(run.contacts_written), number(run.contacts_rejected),
                     number(moves.get(run.id or 0, 0)), enrollments, number(run.api_calls)])
    headers = ["Run", "Started", "Outcome", "Took", "Rows read", "Written", "Rejected", "Stage moves",
               "Enrollments", "HubSpot calls"]
    caption = (f"The {plural(len(runs), 'latest run')}, newest first. Written: contacts HubSpot confirmed; "
               "enrollments: workflow and sequence enrollments and list changes made.")
    return section("runs", title, table(caption, headers, rows, numeric=range(3, 10), wide=(1,), text=(2,)))


def rejected_records(counts: Mapping[tuple[str, bool], int], latest: Sequence[Reject]) -> str:
    title = "Rejected records"
    total = sum(counts.values())
    if not total:
        return section("rejects", title, "<p>No rejected records.</p>")
    retried = sum(count for (_, will_retry), count in counts.items() if will_retry)
    by_code: dict[str, int] = {}
    for (code, _), count in counts.items():
        by_code[code] = by_code.get(code, 0) + count
    summary = (f"<p>{plural(total, 'record')} the CRM or the mapping refused; {number(retried)} will be "
               "tried again next run.</p>")
    codes = table("Rejected records by reason code", ["Code", "Records"],
                  [[_e(code), number(count)] for code, count in sorted(by_code.items(), key=lambda c: -c[1])],
                  numeric=(1,), stacked=False)
    rows = [[_e(r.email), _e(shortened(r.reason)), _e(r.code), number(r.attempts), when(r.last_rejected_at),
             "yes" if r.will_retry else "no"] for r in latest]
    shown = (f"The latest {number(len(latest))} of {number(total)}"
             + ("" if len(latest) == total else "; `funnelsync rejects` lists them all"))
    listing = table(shown, ["Contact", "Reason", "Code", "Attempts", "Last refused", "Tried again"], rows,
                    numeric=(3,), wide=(2, 4), text=(1,))
    return section("rejects", title, summary + codes + listing)


def failed_enrollments(total: int, latest: Sequence[Operation]) -> str:
    title = "Failed enrollments"
    if not total:
        return section("failed", title, "<p>No failed enrollment or list change.</p>")
    rows = []
    for operation in latest:
        what = kind_name(operation.kind)
        if operation.status == OperationStatus.STARTED:
            what += " (outcome unknown: checked in HubSpot before any resend)"
        rows.append([_e(operation.email or ""), _e(what), _e(operation.target or ""),
                     _e(shortened(operation.last_error)), number(operation.attempts)])
    caption = f"The latest {number(len(latest))} of {number(total)}, each tried again next run"
    return section("failed", title, table(caption, ["Contact", "What", "Target", "Reason", "Attempts"], rows,
                                          numeric=(4,), wide=(1, 2), text=(3,)))


def segments_and_lists(config: Config, stages: Stages, sizes: Mapping[str, int],
                       unfinished: Mapping[tuple[OperationKind, str, OperationStatus], int]) -> str:
    title = "Segments and lists"
    parts = []
    if config.segments:
        rows = [[_e(s.label), number(sizes.get(s.name, 0)), _e(_targets(s.enroll) or "the property only")]
                for s in config.segments]
        parts.append(table("Contacts in each segment now", ["Segment", "Contacts", "Enrolls in"], rows,
                           numeric=(1,), wide=(2,)))
    pending: dict[tuple[OperationKind, str], int] = {}
    for (kind, target, _), count in unfinished.items():
        pending[kind, target] = pending.get((kind, target), 0) + count
    by_value = stages.by_value()
    lists = [(s.enroll.list, f"stage {s.label}", by_value[s.value].contacts)
             for s in (config.funnel.stages if config.funnel else []) if s.enroll and s.enroll.list]
    lists += [(s.enroll.list, f"segment {s.label}", sizes.get(s.name, 0))
              for s in config.segments if s.enroll and s.enroll.list]
    if lists:
        rows = [[_e(name), _e(kept_with), number(members), number(pending.get((OperationKind.LIST_ADD, name), 0)),
                 number(pending.get((OperationKind.LIST_REMOVE, name), 0))] for name, kept_with, members in lists]
        parts.append(table("Static lists funnelsync keeps in step: members it put there, and changes not yet made",
                           ["List", "Kept in step with", "Members", "Adds pending", "Removals pending"], rows,
                           numeric=(2, 3, 4), wide=(1,)))
    if not parts:
        parts.append("<p>The config names no segment and no list.</p>")
    return section("segments", title, "".join(parts))


def _targets(enroll: Enroll | None) -> str:
    if enroll is None:
        return ""
    targets = [f"workflow {enroll.workflow_id}"] if enroll.workflow_id is not None else []
    targets += [f"list {enroll.list}"] if enroll.list is not None else []
    targets += [f"sequence {enroll.sequence.id}"] if enroll.sequence is not None else []
    return ", ".join(targets)


def next_run(config: Config, runs: Sequence[Run], unfinished: Mapping[tuple[OperationKind, str, OperationStatus], int],
             reject_counts: Mapping[tuple[str, bool], int], now: datetime) -> str:
    schedule = config.daemon.schedule
    upcoming = CronTrigger.from_crontab(schedule, timezone="UTC").get_next_fire_time(None, now)
    items = []
    if runs and runs[0].outcome == RunOutcome.RUNNING:
        items.append(f"<li>Run #{runs[0].id} is running now, since {when(runs[0].started_at)}.</li>")
    scheduled = when(upcoming) if upcoming else "never (the schedule has no next time)"
    items.append(f"<li>Next scheduled run: {scheduled} (schedule <code>{_e(schedule)}</code>, in UTC).</li>")
    retried = sum(count for (_, will_retry), count in reject_counts.items() if will_retry)
    if retried:
        items.append(f"<li>It tries {plural(retried, 'rejected record')} again.</li>")
    to_send: dict[OperationKind, int] = {}
    unknown: dict[OperationKind, int] = {}
    for (kind, _, status), count in unfinished.items():
        into = unknown if status == OperationStatus.STARTED else to_send
        into[kind] = into.get(kind, 0) + count
    if to_send:
        listed = ", ".join(plural(count, kind_name(kind)) for kind, count in sorted(to_send.items()))
        items.append(f"<li>Pending in the journal, made next run: {listed}.</li>")
    if unknown:
        listed = ", ".join(plural(count, kind_name(kind)) for kind, count in sorted(unknown.items()))
        items.append(f"<li>Outcome unknown (the answer was lost), checked in HubSpot before anything is sent "
                     f"again: {listed}.</li>")
    if not (retried or to_send or unknown):
        items.append("<li>Nothing is left over: it sends only what changes in the source.</li>")
    return section("next", "The next run", f"<ul>{''.join(items)}</ul>")


# -- the page --------------------------------------------------------------------------------------

CSS = """
:root{color-scheme:light;--ink:#1b1f24;--muted:#57606a;--line:#d0d7de;--soft:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);
background:#fff}
header,main,footer{max-width:72rem;margin:0 auto;padding:0 1rem}
header{padding-top:1rem}
h1{font-size:1.6rem;margin:.5rem 0}
h2{font-size:1.25rem;margin:2rem 0 .5rem;padding-top:.5rem;border-top:1px solid var(--line)}
nav ul{display:flex;flex-wrap:wrap;gap:.25rem 1rem;padding:0;margin:.5rem 0;list-style:none}
a{color:#0550ae}
p,li,td,th{overflow-wrap:break-word}
.t,.note{overflow-wrap:anywhere}
time{white-space:nowrap}
.muted,caption,figcaption,.note{color:var(--muted)}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
caption{text-align:left;font-size:.9rem;padding:.25rem 0}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
thead th{background:var(--soft);font-size:.9rem}
tbody th{font-weight:600}
.n{text-align:right;font-variant-numeric:tabular-nums}
td.n{white-space:nowrap}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;vertical-align:-.05em}
.bar{display:block;min-width:6rem;height:.9rem;background:var(--soft);border-radius:2px}
.bar span{display:block;height:100%;border-radius:2px}
.badge{display:inline-block;padding:0 .4em;border-radius:3px;font-size:.9rem;white-space:nowrap}
.ok{background:#dafbe1;color:#116329}.warn{background:#fff8c5;color:#7d4e00}
.bad{background:#ffebe9;color:#a40e26}.info{background:#ddf4ff;color:#0550ae}
.note{display:block;font-size:.85rem}
figure{margin:.5rem 0;max-width:36rem}
.chart{display:block;width:100%;height:auto}
.chart .grid line{stroke:var(--line)}
.chart text{font-size:13px;fill:var(--muted)}
.legend{display:flex;flex-wrap:wrap;gap:.25rem 1rem;padding:0;margin:.25rem 0;list-style:none;color:var(--ink)}
details{margin:.5rem 0 1rem}
summary{cursor:pointer;color:#0550ae}
code{font-size:.9em;background:var(--soft);padding:0 .2em;border-radius:3px}
footer{margin:2rem auto;font-size:.85rem;color:var(--muted)}
@media (max-width:40rem){
h1{font-size:1.35rem}
table.stacked thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
table.stacked,table.stacked tbody,table.stacked caption{display:block}
table.stacked tr{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:0 .75rem;
border:1px solid var(--line);
border-radius:4px;margin:.5rem 0;padding:.25rem .5rem}
table.stacked th,table.stacked td{display:flex;gap:.5rem;justify-content:space-between;border:0;padding:.2rem 0;
text-align:right;min-width:0;font-size:.95rem}
table.stacked th,table.stacked .w,table.stacked .t{grid-column:1/-1}
table.stacked th::before,table.stacked td::before{content:attr(data-label);font-weight:600;text-align:left;
flex:0 1 auto;white-space:normal;color:var(--muted)}
table.stacked td.t{display:block;text-align:left}
table.stacked td.t::before{display:block}
table.stacked time{white-space:normal}
table.stacked .bar{flex:1 1 auto;align-self:center;min-width:0}
.badge{white-space:normal}
}
@media (max-width:22rem){table.stacked tr{grid-template-columns:minmax(0,1fr)}}
"""


def page(config: Config, stages: Stages, now: datetime, sections: Sequence[str]) -> str:
    nav = "".join(f'<li><a href="#{anchor}">{_e(name)}</a></li>' for anchor, name in (
        ("funnel", "Funnel"), ("history", "Over time"), ("runs", "Runs"), ("rejects", "Rejects"),
        ("segments", "Segments and lists"), ("next", "Next run")))
    funnel = f"Funnel: {_e(config.funnel.label)}. " if config.funnel else "No funnel in the config. "
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>funnelsync status</title><style>{CSS}</style></head><body>"
        f'<header><h1>funnelsync status</h1><p class="muted">{funnel}{plural(stages.total, "contact")} '
        f"written to HubSpot. As of {when(now)}; reload for the latest.</p>"
        f'<nav aria-label="Sections"><ul>{nav}</ul></nav></header>'
        f'<main>{"".join(sections)}</main>'
        '<footer>Read-only. <code>funnelsync status</code> and <code>funnelsync rejects</code> show the same '
        "from the command line; <a href=\"/metrics\">/metrics</a> has the counters.</footer></body></html>"
    )
