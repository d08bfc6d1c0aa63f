"""funnelsync's throughput against a HubSpot that answers late: how much of the rate limit a sync uses.

    .venv/bin/python bench/throughput_bench.py                    # the issue's scale (hours: see below)
    .venv/bin/python bench/throughput_bench.py --quick            # smoke run, a few minutes
    .venv/bin/python bench/throughput_bench.py --contacts 5000 --enrollments 500 --serial 190/300ms
    .venv/bin/python bench/throughput_bench.py ... --out BENCHMARKS.md --json FILE --logs DIR
    .venv/bin/python bench/throughput_bench.py --report FILE --logs DIR   # the tables again, from a kept run

For each cell of latency x limit (default 300 ms and 800 ms x 100, 190 and 250 requests per 10 s):
the sandbox (`SandboxServer(requests_per_10s=LIMIT, latency=Latency(...), wire_checks=False)`, in
this process) answers every request that late, and the config's `requests_per_10s` is LIMIT too.
It skips its check of every body against the client's models (the tests keep it): that check is
about 0.1 s of CPU per 100-contact upsert, under the store's lock, so at 190 requests per 10 s the
sandbox itself would need two cores and could answer at most 9 upserts a second. Into it:

1. **backfill**: the first sync of N contacts (`--contacts`) into an empty sandbox and state, of
   which M (`--enrollments`) are in the stage `bottom`, enrolled through direct v2 workflow
   enrollment (`enroll = { workflow_id = ... }`, the workflow seeded with `add_workflow`), and
   about 40 % in `middle`, kept in a static list (`enroll = { list = ... }`);
2. **re-sync 1 %**: a second sync after 1 % of the developers' usage changed: a share M / N of
   them enter `bottom` (enrolled, and taken off the list if they were on it), the ones who never
   called the API start to (added to the list), the others change within their stage.

Each sync runs with `[hubspot].concurrency = --concurrency` (default 0: funnelsync picks it from the
limit and the latency it sees) and, for the cells `--serial` names, again from scratch with
`concurrency = 1` (one request at a time) for the ratio of wall times. Each sync is
`funnelsync -c CONFIG --json-logs sync` in a child process, started by the launcher of
`bench/common.py` for its peak RSS (`ru_maxrss`). The syncs and the sandbox import funnelsync from
a copy of the working tree's `funnelsync/` taken when the run starts, so that edits made meanwhile
do not change what is measured.

From the sandbox's request log (every request with when it arrived, when it was answered, its
status and path), per phase -- writes (contact batch upserts), list changes (list membership
calls), enrollments (the v2 workflow enrollment API), set-up (everything else: properties, the
lists' look-ups and creation, which go beside them, the workflow check, account) -- the calls,
429s and duration, and the share of the limit used: the admitted requests (any phase) in
trailing 10-s windows that lie wholly within the phase, over the limit, by arrival (HubSpot
counts a request when it arrives); its busiest window and the mean of them all, none when the
phase is shorter than 10 s. Per sync: all calls against the floor (the fewest the work needs:
ceil(contacts to write / 100) upserts + the set-up calls not refused, a find (and create) per
list among them + ceil(list changes / the membership chunk) + one per enrollment), wall time,
peak RSS, and checks that the sandbox holds what it should (no contact enrolled twice).

Nothing here asserts on time: it measures and prints. At the full scale a cell's enrollment phase
alone is 10,000 requests (~9 min at 190 per 10 s, ~17 min at 100), and one request at a time at
800 ms takes over 2 hours for it: `--serial` defaults to every cell all the same.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import common
from common import (
    BATCH,
    LISTS_API,
    MEMBERSHIP_CHANGE,
    SEED,
    TOKEN,
    WINDOW_SECONDS,
    WORKFLOW_ENROLLMENT,
    Child,
    arrival,
    build_source,
    funnelsync_argv,
    is_upsert,
    last_run,
    run_child,
    set_usage,
    snapshot_working_tree,
    stage_of,
    usage_counts,
    window_rates,
    write_config,
)

WORKFLOW_ID = 1234567
LIST_NAME = "API funnel: sandbox"
# stage -> its `enroll` inline table
ENROLL = {"middle": f"{{ list = {json.dumps(LIST_NAME)} }}", "bottom": f"{{ workflow_id = {WORKFLOW_ID} }}"}
TOP_SHARE = 0.4  # of the developers outside `bottom`, those who never called the API
CHANGED_SHARE = 0.01
PHASES = ("set-up", "writes", "list changes", "enrollments")
MARK_START = "<!-- throughput-bench:results:start -->"
MARK_END = "<!-- throughput-bench:results:end -->"
QUICK = {"contacts": 2000, "enrollments": 100, "latencies": "300ms", "limits": "190"}
TARGET_SHARE = 0.9
TARGET_OVER_FLOOR_PCT = 2.0
TARGET_RSS_MB = 300


# -- the developers and what changes ----------------------------------------------------------

def stages_of_rows(contacts: int, enrollments: int, seed: int = SEED + 2) -> dict[int, str]:
    """Row number -> stage: exactly `enrollments` rows in `bottom`, the rest top or middle."""
    rng = random.Random(seed)
    bottom = set(rng.sample(range(contacts), min(enrollments, contacts)))
    return {number: "bottom" if number in bottom else "top" if rng.random() < TOP_SHARE else "middle"
            for number in range(contacts)}


@dataclass
class Expected:
    """What a sync has to do, from the source data before and after."""

    contacts: int  # to write
    enrollments: int
    list_adds: int
    list_removes: int
    in_list: int  # members afterwards
    enrolled: int  # workflow enrollments afterwards, in all


def expected_backfill(counts: Mapping[str, int]) -> Expected:
    stages = Counter(stage_of(used) for used in counts.values())
    return Expected(len(counts), stages["bottom"], stages["middle"], 0, stages["middle"], stages["bottom"])


def change_for_resync(source: Path, enroll_share: float, seed: int = SEED + 3) -> Expected:
    """Change the usage of 1 % of the developers (see the module's docstring); what follows."""
    rng = random.Random(seed)
    before = usage_counts(source)
    picked = rng.sample(sorted(before), max(1, round(len(before) * CHANGED_SHARE)))
    outside_bottom = [email for email in picked if stage_of(before[email]) != "bottom"]
    promoted = set(outside_bottom[:round(len(picked) * enroll_share)] if enroll_share else ())
    changed = {}
    for email in picked:
        used = before[email]
        if email in promoted:
            changed[email] = rng.randint(1001, 200_000)
        elif stage_of(used) == "top":
            changed[email] = rng.randint(1, 1000)
        elif stage_of(used) == "middle":
            changed[email] = used % 1000 + 1  # another value, still middle
        else:
            changed[email] = used + rng.randint(1, 3000)
    set_usage(source, changed)
    after = {**before, **changed}
    moves = Counter((stage_of(before[email]), stage_of(after[email])) for email in changed)
    stages = Counter(stage_of(used) for used in after.values())
    return Expected(len(changed), moves["top", "bottom"] + moves["middle", "bottom"], moves["top", "middle"],
                    moves["middle", "bottom"], stages["middle"], stages["bottom"])


# -- what the request log says ----------------------------------------------------------------

def phase_of(entry: Mapping[str, Any]) -> str:
    if is_upsert(entry):
        return "writes"
    if LISTS_API.match(entry["path"]) and MEMBERSHIP_CHANGE.search(entry["path"]):
        return "list changes"
    if WORKFLOW_ENROLLMENT.match(entry["path"]):
        return "enrollments"
    return "set-up"


def most_in_flight(log: list[dict[str, Any]]) -> int:
    """The most requests the sandbox held at one moment (arrived, not yet answered)."""
    moments = sorted([(arrival(entry), 1) for entry in log] + [(entry["time"], -1) for entry in log])
    held = most = 0
    for _, step in moments:
        held += step
        most = max(most, held)
    return most


@dataclass
class Phase:
    name: str
    calls: int
    refused_429: int
    seconds: float  # first arrival to last answer
    busiest_share: float | None  # of the limit, in the busiest 10-s window within the phase
    mean_share: float | None  # of the limit, the mean of those windows
    windows: int
    answer_ms: float  # mean time from arrival to answer
    sandbox_ms: float  # of which the sandbox's own work (and its wait for the store's lock), not the latency
    in_flight: int  # the most requests held at once
    mean_in_flight: float  # on average over the phase: the concurrency it kept up


def measure_phase(name: str, entries: list[dict[str, Any]], admitted: list[float], limit: int) -> Phase:
    start, end = min(arrival(e) for e in entries), max(e["time"] for e in entries)
    busiest, mean, windows = window_rates(admitted, start + WINDOW_SECONDS, end)
    return Phase(
        name=name, calls=len(entries), refused_429=sum(1 for e in entries if e["status"] == 429),
        seconds=end - start, busiest_share=None if busiest is None else busiest / limit,
        mean_share=None if mean is None else mean / limit, windows=windows,
        answer_ms=sum(e["time"] - arrival(e) for e in entries) / len(entries) * 1000,
        sandbox_ms=sum(e["time"] - arrival(e) - e.get("delay", 0.0) for e in entries) / len(entries) * 1000,
        in_flight=most_in_flight(entries),
        mean_in_flight=sum(e["time"] - arrival(e) for e in entries) / (end - start) if end > start else 1.0)


@dataclass
class Measured:
    limit: int
    latency: str
    sync: str  # backfill | re-sync 1%
    concurrency: int
    expected: Expected
    exit_status: int
    wall_seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    launcher_rss_mb: float
    other_cores: float
    calls: int  # every answered request, 429s included
    refused_429: int
    floor: int
    over_floor_pct: float
    client_counted_calls: int | None
    phases: list[Phase]
    statuses: dict[str, int]
    sandbox_cores: float = float("nan")  # the sandbox's CPU per second of the sync
    checks: list[str] = field(default_factory=list)


def membership_chunk() -> int:
    from funnelsync.connectors.hubspot.automation import MEMBERSHIP_CHUNK

    return int(MEMBERSHIP_CHUNK)


def floor_of(expected: Expected, log: list[dict[str, Any]]) -> int:
    """The fewest calls the work needs; set-up calls and list look-ups as the log has them, less
    the refused (429) and failed (5xx) ones."""
    needed = [e for e in log if phase_of(e) == "set-up"]
    looked_up = sum(1 for e in needed if e["status"] != 429 and e["status"] < 500)
    chunk = membership_chunk()
    return (math.ceil(expected.contacts / BATCH) + looked_up + expected.enrollments
            + math.ceil(expected.list_adds / chunk) + math.ceil(expected.list_removes / chunk))


def measure(limit: int, latency: str, sync: str, concurrency: int, expected: Expected, child: Child,
            log: list[dict[str, Any]], run: Mapping[str, Any]) -> Measured:
    admitted = sorted(arrival(e) for e in log if e["status"] != 429)
    phases = [measure_phase(name, entries, admitted, limit) for name in PHASES
              if (entries := [e for e in log if phase_of(e) == name])]
    floor = floor_of(expected, log)
    return Measured(
        limit=limit, latency=latency, sync=sync, concurrency=concurrency, expected=expected,
        exit_status=child.exit_status, wall_seconds=child.wall_seconds, peak_rss_mb=child.peak_rss_mb,
        cpu_seconds=child.cpu_seconds, launcher_rss_mb=child.launcher_rss_mb, other_cores=child.other_cores,
        calls=len(log), refused_429=sum(1 for e in log if e["status"] == 429), floor=floor,
        over_floor_pct=(len(log) - floor) / floor * 100 if floor else 0.0,
        client_counted_calls=run.get("api_calls"), phases=phases, sandbox_cores=child.sandbox_cores,
        statuses=dict(Counter(f"{phase_of(e)} {e['method']} {e['status']}" for e in log)))


def check_sandbox(m: Measured, sandbox: Any, child: Child, run: Mapping[str, Any], contacts: int) -> None:
    held = len(sandbox.store.contacts_by_email())
    enrollments = sandbox.store.workflow_enrollments()
    enrolled = Counter(email for _, email, _ in enrollments)
    members = len(sandbox.store.lists().get(LIST_NAME, {}).get("members", ()))
    e = m.expected
    m.checks.append(f"sandbox holds {held:,} contacts (expected {contacts:,}), {len(enrollments):,} workflow "
                    f"enrollments (expected {e.enrolled:,}; contacts enrolled twice: "
                    f"{sum(1 for n in enrolled.values() if n > 1)}), {members:,} list members (expected "
                    f"{e.in_list:,}); the run wrote {run.get('contacts_written')} contacts "
                    f"(expected {e.contacts:,}) and made {run.get('enrollments_made')} enrollments "
                    f"and list changes (expected {e.enrollments + e.list_adds + e.list_removes:,})")
    if child.exit_status != 0:
        m.checks.append(f"exit status {child.exit_status}: {child.stderr[-2000:]}")


# -- the scenarios -----------------------------------------------------------------------------

def bench_syncs(limit: int, latency: str, concurrency: int, source: Path, workdir: Path,
                enroll_share: float, seed: int, logs: Path | None) -> list[Measured]:
    """A backfill, then a re-sync 1 %, into one fresh sandbox and state (each sync's request
    log into `logs`, if given)."""
    from funnelsync.sandbox import Latency, SandboxServer

    workdir.mkdir(parents=True)
    copy, state, config = workdir / "analytics.db", workdir / "state.db", workdir / "config.toml"
    shutil.copyfile(source, copy)
    name = f"[{limit}/10 s, {latency}, concurrency {concurrency}]"
    results = []
    with SandboxServer(token=TOKEN, requests_per_10s=limit, latency=Latency.parse(latency, seed=seed),
                       wire_checks=False) as sandbox:
        sandbox.add_workflow(WORKFLOW_ID, "Integrated in production")
        write_config(config, source=copy, base_url=sandbox.url, state=state, limit=limit,
                     hubspot={"concurrency": concurrency}, enroll=ENROLL)
        for sync in ("backfill", "re-sync 1%"):
            expected = (expected_backfill(usage_counts(copy)) if sync == "backfill"
                        else change_for_resync(copy, enroll_share))
            print(f"{name} {sync}: {expected.contacts:,} contacts to write, {expected.enrollments:,} "
                  f"enrollments, {expected.list_adds + expected.list_removes:,} list changes ...", flush=True)
            mark = len(sandbox.store.request_log())
            child = run_child(funnelsync_argv(config), workdir, sync.split()[0])
            run = last_run(state)
            log = sandbox.store.request_log()[mark:]
            if logs is not None:
                (logs / log_name(limit, latency, concurrency, sync)).write_text(json.dumps(log))
            measured = measure(limit, latency, sync, concurrency, expected, child, log, run)
            check_sandbox(measured, sandbox, child, run, expected_backfill(usage_counts(copy)).contacts)
            report_one(measured)
            results.append(measured)
    return results


def log_name(limit: int, latency: str, concurrency: int, sync: str) -> str:
    return f"{limit}-{latency}-c{concurrency}-{sync.split()[0]}.json".replace("±", "pm")


def report_one(m: Measured) -> None:
    print(f"  wall {m.wall_seconds:.1f} s, {m.calls:,} calls (floor {m.floor:,}, {pct(m.over_floor_pct)}), "
          f"429s {m.refused_429}, peak RSS {m.peak_rss_mb:.0f} MB, CPU {m.cpu_seconds:.1f} s, "
          f"other load {m.other_cores:.2f}", flush=True)
    for p in m.phases:
        print(f"    {p.name}: {p.calls:,} calls, 429s {p.refused_429}, {p.seconds:.1f} s, share of the limit "
              f"{share(p.busiest_share)} busiest / {share(p.mean_share)} mean, answers in {p.answer_ms:.0f} ms "
              f"({p.sandbox_ms:.0f} ms of it the sandbox's work), "
              f"{p.mean_in_flight:.1f} in flight on average, up to {p.in_flight}", flush=True)
    for check in m.checks:
        print(f"    check: {check}", flush=True)


# -- reporting ---------------------------------------------------------------------------------

def pct(value: float) -> str:
    return f"{value:+.1f} %"


def share(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def known(value: float, spec: str) -> str:
    """A figure, or — where the run did not record it."""
    return "—" if math.isnan(value) else format(value, spec)


def cell_name(limit: int, latency: str) -> str:
    return f"{limit}/{latency}"


def serial_of(results: list[Measured], m: Measured) -> Measured | None:
    return next((s for s in results if s.concurrency == 1 and m.concurrency != 1 and s.limit == m.limit
                 and s.latency == m.latency and s.sync == m.sync), None)


def markdown(results: list[Measured], facts: dict[str, str], command: str, args: argparse.Namespace,
             scale: Expected, resync: Expected) -> str:
    out = [f"Run: `{command}` on {facts['date']}.", "",
           f"Machine: {facts['cpu']}, {facts['memory']} RAM, {facts['os']}, {facts['python']}; "
           f"{facts['packages']}; commit {facts['commit']}; {facts['load']}.", "",
           f"**Scale: {args.contacts:,} contacts, {args.enrollments:,} enrollments** (the issue's full scale is "
           "100,000 and 10,000). Backfill: "
           f"{scale.contacts:,} contacts to write, {scale.enrollments:,} workflow enrollments, "
           f"{scale.list_adds:,} list additions. Re-sync 1 %: {resync.contacts:,} contacts to write, "
           f"{resync.enrollments:,} enrollments, {resync.list_adds:,} list additions and "
           f"{resync.list_removes:,} removals. Every request of a kind is answered as late as the cell says "
           "(`Latency.parse`); the sandbox's limit and the config's `requests_per_10s` are the cell's limit; "
           f"concurrency {args.concurrency} ({'auto' if args.concurrency == 0 else 'fixed'}), "
           "and 1 for the serial runs.", ""]

    out += ["### Per sync", "",
            "| limit / 10 s | latency | sync | concurrency | wall | calls | floor | over floor | 429s "
            "| peak RSS | CPU | sandbox CPU | other load | serial wall | serial / concurrent |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in results:
        serial = serial_of(results, m)
        versus = (f"{serial.wall_seconds:.1f} s | {serial.wall_seconds / m.wall_seconds:.2f}"
                  if serial else "— | —")
        out.append(f"| {m.limit} | {m.latency} | {m.sync} | {m.concurrency or 'auto'} | {m.wall_seconds:.1f} s "
                   f"| {m.calls:,} | {m.floor:,} | {pct(m.over_floor_pct)} | {m.refused_429} "
                   f"| {m.peak_rss_mb:.0f} MB | {m.cpu_seconds:.1f} s | {known(m.sandbox_cores, '.2f')} "
                   f"| {m.other_cores:.2f} | {versus} |")
    out += ["", "calls: every request the sandbox answered, 429s included (the client's own count, "
            "`runs.api_calls`: " + ", ".join(str(m.client_counted_calls) for m in results) + " in the same order). "
            "floor: ceil(contacts to write / 100) + the set-up calls and list look-ups the log holds that were not "
            f"refused or failed + ceil(list changes / {membership_chunk()}) per direction + one call per enrollment. "
            "wall: the `funnelsync sync` process, start-up included; peak RSS its `ru_maxrss` (launcher floor "
            f"{max(m.launcher_rss_mb for m in results):.0f} MB); CPU its user + system time; sandbox CPU: the "
            "benchmark process's (the sandbox's) CPU per second of the sync, in cores; other load: the CPU "
            f"every other process on the machine ({os.cpu_count()} cores) used meanwhile, per second, the "
            "sandbox's own excluded (/proc/stat).", ""]

    out += ["### Per phase", "",
            "| limit / 10 s | latency | sync | concurrency | phase | calls | 429s | duration "
            "| share of limit: busiest 10 s | mean of 10-s windows | answer time (sandbox's work) "
            "| in flight: mean | most |",
            "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in results:
        for p in m.phases:
            out.append(f"| {m.limit} | {m.latency} | {m.sync} | {m.concurrency or 'auto'} | {p.name} | {p.calls:,} "
                       f"| {p.refused_429} | {p.seconds:.1f} s | {share(p.busiest_share)} | {share(p.mean_share)} "
                       f"| {p.answer_ms:.0f} ms ({known(p.sandbox_ms, '.0f')} ms) | {known(p.mean_in_flight, '.1f')} "
                       f"| {p.in_flight} |")
    out += ["", "Phases by path: writes = contact batch upserts, list changes = list membership calls, "
            "enrollments = the v2 workflow enrollment API, set-up = the rest (properties, the lists' look-ups "
            "and creation, the workflow check, account details). duration: the phase's first arrival to its last "
            "answer. share of limit: requests admitted (any phase, by arrival: HubSpot counts a request when it "
            "arrives) in trailing 10-s windows (t - 10 s, t] for t every 0.1 s from 10 s after the phase's start "
            "to its end, over the limit: the busiest window and the mean of them all; — when the phase lasts "
            "under 10 s. answer time: mean from arrival to answer in the sandbox's log; in brackets, what of it was "
            "not the latency: the sandbox's own work on the request, which holds the store's lock (checking an "
            "upsert's answer with the client's models takes tens of ms of CPU), and its wait for that lock. "
            "in flight: the phase's requests the sandbox held at once, on average over the phase (the sum of "
            "their answer times over its duration) and at most.", ""]

    out += ["Checks: " + "; ".join(checks_said_once(results)) + ".", "", "### Targets", "", *targets(results), ""]
    return "\n".join(out)


def checks_said_once(results: list[Measured]) -> list[str]:
    """Each check's text once, with the syncs it holds for (most read the same in every cell)."""
    syncs: dict[str, list[str]] = {}
    for m in results:
        for check in m.checks:
            syncs.setdefault(check, []).append(f"{cell_name(m.limit, m.latency)} concurrency {m.concurrency or 'auto'}")
    said = []
    for check, where in syncs.items():
        sync = next(m.sync for m in results if check in m.checks)
        cells = "every run" if len(where) == sum(1 for m in results if m.sync == sync) else ", ".join(where)
        said.append(f"{sync}, {cells}: {check}")
    return said


def targets(results: list[Measured]) -> list[str]:
    lines = []
    for m in results:
        if m.concurrency == 1:
            continue
        long_phases = [p for p in m.phases if p.mean_share is not None and p.name != "set-up"]
        shares = ", ".join(f"{p.name} {share(p.mean_share)} "
                           f"({'met' if p.mean_share is not None and p.mean_share >= TARGET_SHARE else 'missed'})"
                           for p in long_phases) or "no phase over 10 s"
        serial = serial_of(results, m)
        lines.append(
            f"- {m.limit}/10 s, {m.latency}, {m.sync}: share of the limit >= 90 % (mean of the windows): {shares}; "
            f"zero 429s {'met' if m.refused_429 == 0 else f'missed ({m.refused_429})'}; calls within 2 % of the "
            f"floor {'met' if m.over_floor_pct <= TARGET_OVER_FLOOR_PCT else 'missed'} ({pct(m.over_floor_pct)}); "
            f"peak RSS < {TARGET_RSS_MB} MB {'met' if m.peak_rss_mb < TARGET_RSS_MB else 'missed'} "
            f"({m.peak_rss_mb:.0f} MB)"
            + (f"; {serial.wall_seconds / m.wall_seconds:.1f} x faster than one request at a time" if serial else "")
            + ".")
    return lines


INTRO = """## Throughput against a HubSpot that answers late (`bench/throughput_bench.py`)

A sync waits for HubSpot's answers; against the sandbox, which answers in microseconds, that cost
nothing, so the sync benchmark above could not see it. Here the sandbox answers every request
300 ms or 800 ms late (`SandboxServer(latency=...)`), its limiter and the config's
`requests_per_10s` at 100, 190 or 250 per 10 s, and the sync is a backfill of N contacts with M
direct workflow enrollments and a static list, then a re-sync after 1 % changed: each with
funnelsync's own concurrency and with `concurrency = 1` (one request at a time). See the script's
docstring for what is measured and how.

    .venv/bin/python bench/throughput_bench.py                 # the issue's scale: 100,000 contacts, 10,000 enrollments
    .venv/bin/python bench/throughput_bench.py --contacts 5000 --enrollments 500 --serial 190/300ms
    .venv/bin/python bench/throughput_bench.py --quick         # smoke run

Targets: at least 90 % of the limit in every phase that lasts over 10 s, zero 429s, calls within
2 % of the floor, peak memory of the sync under 300 MB.

"""


def from_json(path: Path, logs: Path | None) -> tuple[list[Measured], dict[str, Any]]:
    """A run's figures from its `--json` file, each phase measured again from its request log
    in `logs` where that holds it (so a new figure can be read off an old run)."""
    saved = json.loads(path.read_text())
    results = []
    for found in saved["results"]:
        expected = Expected(**found["expected"])
        name = log_name(found["limit"], found["latency"], found["concurrency"], found["sync"])
        log_file = logs / name if logs is not None else None
        if log_file is not None and log_file.exists():
            log = json.loads(log_file.read_text())
            admitted = sorted(arrival(e) for e in log if e["status"] != 429)
            phases = [measure_phase(name, entries, admitted, found["limit"]) for name in PHASES
                      if (entries := [e for e in log if phase_of(e) == name])]
        else:
            unknown = {"sandbox_ms": float("nan"), "mean_in_flight": float("nan")}  # not in older runs
            phases = [Phase(**{**unknown, **phase}) for phase in found["phases"]]
        results.append(Measured(**{**found, "expected": expected, "phases": phases}))
    return results, saved


def report_again(args: argparse.Namespace) -> int:
    results, saved = from_json(args.report, args.logs)
    backfill = next(m for m in results if m.sync == "backfill")
    resync = next(m for m in results if m.sync != "backfill")
    scale = argparse.Namespace(contacts=backfill.expected.contacts, enrollments=backfill.expected.enrollments,
                               concurrency=next((m.concurrency for m in results if m.concurrency != 1), 1))
    body = markdown(results, saved["machine"], saved["command"].strip(), scale, backfill.expected, resync.expected)
    print(body)
    if args.out:
        common.write_section(args.out, body, (MARK_START, MARK_END), INTRO)
        print(f"\nwrote {args.out}")
    return 0


def parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000, help="N, the backfill's contacts")
    parser.add_argument("--enrollments", type=int, default=10_000, help="M, the backfill's workflow enrollments")
    parser.add_argument("--latencies", default="300ms,800ms",
                        help="comma-separated sandbox latencies, as `funnelsync sandbox --latency` reads one")
    parser.add_argument("--limits", default="100,190,250", help="comma-separated requests per 10 s")
    parser.add_argument("--concurrency", type=int, default=0, help="[hubspot].concurrency (0: auto)")
    parser.add_argument("--serial", default="all",
                        help="cells (LIMIT/LATENCY, comma-separated, or all, or none) also synced with concurrency 1")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the latency's spread, if any")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2,000 contacts, 100 enrollments, 300ms, 190 (unless given), serial")
    parser.add_argument("--out", type=Path, help="write the results into this Markdown file")
    parser.add_argument("--json", type=Path, help="write the raw figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--logs", type=Path, help="write each sync's request log (JSON) into this folder")
    parser.add_argument("--report", type=Path, metavar="JSON",
                        help="measure nothing: report again the run of this --json file (with its --logs)")
    args = parser.parse_args()
    if args.report:
        return report_again(args)
    if args.quick:  # the smoke run's scale, where no other was asked for
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    latencies, limits = parse_list(args.latencies), [int(limit) for limit in parse_list(args.limits)]
    cells = [(limit, latency) for latency in latencies for limit in limits]
    serial = (set(cells) if args.serial == "all" else set() if args.serial == "none" else
              {(int(limit), latency) for limit, _, latency in
               (item.partition("/") for item in parse_list(args.serial))})
    unknown = serial - set(cells)
    if unknown:
        parser.error(f"--serial names cells not measured: {', '.join(cell_name(*c) for c in sorted(unknown))}")

    command = "bench/throughput_bench.py " + " ".join(sys.argv[1:])
    root = Path(tempfile.mkdtemp(prefix="funnelsync-throughput-"))
    # others may be editing the working tree: every sync of a run measures the same copy of it
    code = snapshot_working_tree(root / "src")
    facts = machine(code)
    print(f"machine: {facts}", flush=True)
    started = time.perf_counter()
    results: list[Measured] = []
    try:
        stages = stages_of_rows(args.contacts, args.enrollments)
        source = root / "analytics.db"
        build_source(source, args.contacts, stage_of_row=stages.__getitem__)
        scale = expected_backfill(usage_counts(source))
        scratch = root / "resync-preview.db"
        shutil.copyfile(source, scratch)
        resync = change_for_resync(scratch, args.enrollments / args.contacts)
        for limit, latency in cells:
            modes = [args.concurrency, *([1] if (limit, latency) in serial and args.concurrency != 1 else [])]
            for concurrency in modes:
                workdir = root / f"{limit}-{latency}-c{concurrency}".replace("±", "pm")
                results += bench_syncs(limit, latency, concurrency, source, workdir,
                                       args.enrollments / args.contacts, args.seed, args.logs)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"benchmark took {time.perf_counter() - started:.0f} s\n", flush=True)

    body = markdown(results, facts, command.strip(), args, scale, resync)
    print(body)
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "command": command,
                                         "results": [asdict(m) for m in results]}, indent=1))
    if args.out:
        common.write_section(args.out, body, (MARK_START, MARK_END), INTRO)
        print(f"\nwrote {args.out}")
    return 0


def machine(code: str) -> dict[str, str]:
    facts = common.machine(("funnelsync", "requests", "sqlalchemy", "urllib3"))
    return {**facts, "commit": f"{common.working_tree_commit()}, a copy of the working tree's funnelsync/ taken "
            f"at the start (fingerprint {code})",
            "load": "load average {:.2f} {:.2f} {:.2f} at the start".format(*os.getloadavg())}


if __name__ == "__main__":
    sys.exit(main())
