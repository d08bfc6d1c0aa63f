"""funnelsync sync benchmark against the sandbox, with HubSpot's 10-second limit enforced.

    .venv/bin/python bench/sync_bench.py                       # N = 10,000 and 100,000, naive on 2,000
    .venv/bin/python bench/sync_bench.py --quick               # smoke run: N = 2,000, naive on 150
    .venv/bin/python bench/sync_bench.py --out BENCHMARKS.md   # also write the results into the file
    .venv/bin/python bench/sync_bench.py --ref HEAD            # measure a commit, not the working tree

What runs where:

* The sandbox (`SandboxServer(requests_per_10s=LIMIT)`) runs in this process, in threads, so its
  memory and CPU are not counted against the sync. The config's `requests_per_10s` is LIMIT too.
* Each sync is a child process, `funnelsync -c CONFIG --json-logs sync`, exactly as an operator
  runs it, started by a small launcher process (`bench/common.py --launch`) that waits for it with
  `os.wait4()`: its peak RSS is that `ru_maxrss`, its CPU time `ru_utime + ru_stime`, its wall
  time is measured around the process (start-up included). See `run_child` for why a launcher.
* HubSpot calls, 429s and the achieved request rate come from the sandbox's request log
  (`store.request_log()`: every answered request, with method, path, status and time).
* The naive baseline is a child process too (this file with `--naive-child`): one
  `basic_api.create` per contact with the same `hubspot-api-client`, the same property values
  and provisioning calls, paced by a sliding window of the same limit.
* The CPU that other processes used during each sync is recorded (/proc/stat), since wall times
  and the achieved rate of a CPU-bound client depend on it.

Nothing here asserts on time: it measures, prints tables and checks only correctness (every
contact arrived, the re-sync wrote exactly the changed ones).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import common
from common import (
    BATCH,
    SEED,
    TOKEN,
    TOKEN_ENV,
    WINDOW_SECONDS,
    Child,
    build_source,
    code_fingerprint,
    engine_seconds,
    funnelsync_argv,
    is_provisioning,
    is_upsert,
    last_run,
    run_child,
    window_rates,
    write_config,
)

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # after PYTHONPATH, so that a --ref snapshot wins

# the naive baseline's `basic_api.create`: the generated client calls the numbered path; funnelsync
# upserts under its configured API version (date-versioned by default), matched by `is_upsert`
CREATE_PATH = "/crm/v3/objects/contacts"
MARK_START = "<!-- bench:results:start -->"
MARK_END = "<!-- bench:results:end -->"


# -- the source database ----------------------------------------------------------------------

def change_usage(path: Path, fraction: float, seed: int = SEED + 1) -> dict[str, int]:
    """Change `used_event_count` of `fraction` of the developers; returns email -> new value."""
    rng = random.Random(seed)
    db = sqlite3.connect(path)
    with db:
        rows = db.execute("SELECT email, used_event_count FROM usage ORDER BY rowid").fetchall()
        picked = rng.sample(rows, max(1, round(len(rows) * fraction)))
        changed = {email: used + rng.randint(1, 3000) for email, used in picked}
        db.executemany("UPDATE usage SET used_event_count = ? WHERE email = ?",
                       [(value, email) for email, value in changed.items()])
    db.close()
    return changed


# -- the sandbox, with single-contact create for the naive baseline ----------------------------

def bench_sandbox(limit: int) -> Any:
    """A SandboxServer that also answers `POST /crm/v3/objects/contacts` (basic_api.create),
    which the product's sandbox does not serve: the same value checks and store as batch upsert,
    after the same authentication, rate limiter and request log."""
    from funnelsync.sandbox import SandboxServer, contacts_api
    from funnelsync.sandbox.calls import Answer, ApiCall
    from funnelsync.sandbox.errors import conflict, validation_error
    from funnelsync.sandbox.schema import CONTACTS
    from funnelsync.sandbox.values import wire_string

    def create_contact(call: ApiCall, store: Any) -> Answer:
        body = call.json()
        if isinstance(body, dict) and isinstance(body.get("properties"), dict):
            body = {**body, "properties": {k: wire_string(v) for k, v in body["properties"].items()}}
        request = CONTACTS.read("SimplePublicObjectInputForCreate", body)
        properties = request.get("properties") or {}
        email = properties.get("email")
        if not email:
            raise validation_error("a contact needs an email in this benchmark")
        row = contacts_api._upsert_row({"idProperty": "email", "id": email, "properties": properties})
        contacts_api._check_values([row], store)
        existing = store.contact_by_email(row.email)
        if existing is not None:
            raise conflict(f"Contact already exists. Existing ID: {existing.id}")
        contact, _ = store.write_contact(row.email, row.values)
        names = [*row.sent, "email", *contacts_api.ALWAYS_RETURNED]
        return Answer(201, CONTACTS.answer("SimplePublicObject",
                                           contacts_api._public_object(contact, names)))

    class BenchSandbox(SandboxServer):
        def _execute(self, call: ApiCall) -> Answer:
            if call.method == "POST" and call.path.rstrip("/") == CREATE_PATH:
                with self.store.lock:
                    return create_contact(call, self.store)
            return super()._execute(call)

    return BenchSandbox(token=TOKEN, requests_per_10s=limit)


# -- what the request log says -----------------------------------------------------------------

@dataclass
class Measured:
    label: str
    size: int
    changed: int  # contacts the sync had to write
    written: int
    exit_status: int
    upsert_calls: int  # answered 2xx
    write_calls_429: int
    provisioning_calls: int
    provisioning_needed: int  # provisioning requests not refused (429) nor failed (5xx)
    other_calls: int
    total_calls: int  # every answered request, 429s included
    client_counted_calls: int | None
    floor: int
    over_floor_pct: float
    status_counts: dict[str, int]
    rate_max: int | None
    rate_mean: float | None
    rate_windows: int
    launcher_rss_mb: float
    sandbox_cores: float
    other_cores: float
    write_phase_seconds: float
    write_phase_rate: float | None  # admitted requests per 10 s over the whole write phase
    wall_seconds: float
    engine_seconds: float | None
    contacts_per_second: float
    changed_per_second: float
    peak_rss_mb: float
    cpu_seconds: float
    before_first_request_s: float
    provisioning_s: float
    after_last_request_s: float
    checks: list[str] = field(default_factory=list)


def is_create(entry: dict[str, Any]) -> bool:
    """The naive baseline's one-contact write."""
    return entry["method"] == "POST" and entry["path"].rstrip("/") == CREATE_PATH


def measure(label: str, size: int, changed: int, child: Child, log: list[dict[str, Any]],
            run: dict[str, Any], *, naive: bool = False) -> Measured:
    is_write = is_create if naive else is_upsert
    statuses = Counter(f"{r['method']} {r['path']} {r['status']}" for r in log)
    writes = [r for r in log if is_write(r)]
    upserts = [r for r in writes if 200 <= r["status"] < 300]
    provisioning = [r for r in log if is_provisioning(r)]
    other = [r for r in log if not is_write(r) and not is_provisioning(r)]
    admitted = sorted(r["time"] for r in log if r["status"] != 429)
    needed = sum(1 for r in provisioning if r["status"] != 429 and r["status"] < 500)
    floor = (changed if naive else math.ceil(changed / BATCH)) + needed
    if writes:
        start, end = writes[0]["time"], writes[-1]["time"]
        # windows that lie wholly within the sync: from 10 s after its first request
        rate_max, rate_mean, windows = window_rates(
            admitted, max(start, log[0]["time"] + WINDOW_SECONDS), end)
        span = end - start
        in_phase = sum(1 for t in admitted if start <= t <= end)
        phase_rate = (in_phase - 1) / span * WINDOW_SECONDS if span > 0 else None
    else:
        rate_max = rate_mean = phase_rate = None
        windows, span = 0, 0.0
    prov_times = [r["time"] for r in provisioning]
    return Measured(
        label=label, size=size, changed=changed, written=int(run.get("contacts_written", -1)),
        exit_status=child.exit_status, upsert_calls=len(upserts),
        write_calls_429=sum(1 for r in writes if r["status"] == 429),
        provisioning_calls=len(provisioning), provisioning_needed=needed,
        other_calls=len(other), total_calls=len(log),
        client_counted_calls=run.get("api_calls"), floor=floor,
        over_floor_pct=(len(log) - floor) / floor * 100 if floor else 0.0,
        status_counts=dict(statuses), rate_max=rate_max, rate_mean=rate_mean, rate_windows=windows,
        write_phase_seconds=span, write_phase_rate=phase_rate,
        wall_seconds=child.wall_seconds, engine_seconds=engine_seconds(child.stderr),
        contacts_per_second=size / child.wall_seconds,
        changed_per_second=changed / child.wall_seconds,
        peak_rss_mb=child.peak_rss_mb, cpu_seconds=child.cpu_seconds,
        launcher_rss_mb=child.launcher_rss_mb, sandbox_cores=child.sandbox_cores,
        other_cores=child.other_cores,
        before_first_request_s=(log[0]["time"] - child.started) if log else child.wall_seconds,
        provisioning_s=(max(prov_times) - min(prov_times)) if prov_times else 0.0,
        after_last_request_s=(child.finished - log[-1]["time"]) if log else 0.0,
    )


def log_since(sandbox: Any, index: int) -> list[dict[str, Any]]:
    return sandbox.store.request_log()[index:]


# -- the scenarios -----------------------------------------------------------------------------

def bench_size(size: int, limit: int, root: Path) -> list[Measured]:
    workdir = root / f"n{size}"
    workdir.mkdir()
    source, state, config = workdir / "analytics.db", workdir / "state.db", workdir / "config.toml"
    t = time.perf_counter()
    build_source(source, size)
    print(f"[N={size:,}] source database built in {time.perf_counter() - t:.1f} s", flush=True)
    results = []
    with bench_sandbox(limit) as sandbox:
        write_config(config, source=source, base_url=sandbox.url, state=state, limit=limit)

        print(f"[N={size:,}] backfill ...", flush=True)
        mark = len(sandbox.store.request_log())
        child = run_child(funnelsync_argv(config), workdir, "backfill")
        backfill = measure("backfill", size, size, child, log_since(sandbox, mark), last_run(state))
        contacts = sandbox.store.contacts_by_email()
        backfill.checks.append(f"sandbox holds {len(contacts):,} contacts (expected {size:,})")
        if child.exit_status != 0:
            backfill.checks.append(f"exit status {child.exit_status}: {child.stderr[-2000:]}")
        results.append(backfill)
        report_one(backfill, limit)

        changed = change_usage(source, 0.01)
        print(f"[N={size:,}] re-sync with {len(changed):,} changed ...", flush=True)
        mark = len(sandbox.store.request_log())
        child = run_child(funnelsync_argv(config), workdir, "resync")
        run = last_run(state)
        resync = measure("re-sync 1%", size, int(run.get("contacts_changed", len(changed))), child,
                         log_since(sandbox, mark), run)
        contacts = sandbox.store.contacts_by_email()
        arrived = sum(1 for email, value in changed.items()
                      if contacts.get(email, {}).get("properties", {}).get("used_event_count") == str(value))
        resync.checks.append(f"{arrived:,} of {len(changed):,} changed values arrived in the sandbox; "
                             f"the planner found {resync.changed:,} contacts to write")
        if child.exit_status != 0:
            resync.checks.append(f"exit status {child.exit_status}: {child.stderr[-2000:]}")
        results.append(resync)
        report_one(resync, limit)
    return results


BUILT_IN = {"email", "hs_object_id", "createdate", "lastmodifieddate"}


def bench_naive(size: int, limit: int, root: Path) -> tuple[Measured, Measured]:
    """funnelsync's backfill of `size` contacts, then the naive one of the same contacts with
    the same property values (taken from what funnelsync wrote) into a fresh sandbox."""
    workdir = root / f"naive{size}"
    workdir.mkdir()
    source, state, config = workdir / "analytics.db", workdir / "state.db", workdir / "config.toml"
    build_source(source, size)

    with bench_sandbox(limit) as sandbox:
        write_config(config, source=source, base_url=sandbox.url, state=state, limit=limit)
        print(f"[naive N={size:,}] funnelsync backfill ...", flush=True)
        child = run_child(funnelsync_argv(config), workdir, "funnelsync")
        ours = measure("funnelsync backfill", size, size, child, log_since(sandbox, 0),
                       last_run(state))
        contacts = sandbox.store.contacts_by_email()
        ours.checks.append(f"sandbox holds {len(contacts):,} contacts (expected {size:,})")
        if child.exit_status != 0:
            ours.checks.append(f"exit status {child.exit_status}: {child.stderr[-2000:]}")
        group = sandbox.store.group("funnelsync")
        spec = {
            "group": group,
            "properties": [p for p in sandbox.store.properties().values()
                           if p["groupName"] == "funnelsync"],
            "contacts": {email: {k: v for k, v in c["properties"].items()
                                 if k not in BUILT_IN and v not in (None, "")}
                         for email, c in contacts.items()},
        }
    report_one(ours, limit)
    spec_path = workdir / "naive.json"
    spec_path.write_text(json.dumps(spec))

    with bench_sandbox(limit) as sandbox:
        print(f"[naive N={size:,}] naive backfill ...", flush=True)
        argv = [sys.executable, str(Path(__file__).resolve()), "--naive-child", str(spec_path),
                "--naive-url", sandbox.url, "--limit", str(limit)]
        child = run_child(argv, workdir, "naive")
        try:
            run = json.loads(child.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            run = {}
        naive = measure("naive backfill", size, size, child, log_since(sandbox, 0), run,
                        naive=True)
        held = sandbox.store.contacts_by_email()
        same = sum(1 for email, values in spec["contacts"].items()
                   if all(held.get(email, {}).get("properties", {}).get(k) == v
                          for k, v in values.items()))
        naive.checks.append(f"sandbox holds {len(held):,} contacts, {same:,} with the same values "
                            "funnelsync wrote")
        if child.exit_status != 0:
            naive.checks.append(f"exit status {child.exit_status}: {child.stderr[-2000:]}")
    report_one(naive, limit)
    return ours, naive


# -- the naive baseline, run as a child --------------------------------------------------------

class Pacer:
    """A sliding window of `limit` requests per 10 s, timestamped when a request is let go:
    the same rule as funnelsync's RequestBudget, without its header corrections."""

    def __init__(self, limit: int) -> None:
        from collections import deque

        self.limit = limit
        self.sent: Any = deque()

    def acquire(self) -> None:
        while True:
            now = time.monotonic()
            while self.sent and now - self.sent[0] >= WINDOW_SECONDS:
                self.sent.popleft()
            if len(self.sent) < self.limit:
                self.sent.append(now)
                return
            time.sleep(max(WINDOW_SECONDS - (now - self.sent[0]), 0.001))


def naive_child(spec_path: str, base_url: str, limit: int) -> int:
    """Provisioning with the same calls funnelsync makes (read the properties, read the group,
    create it, create each property), then one `basic_api.create` per contact, with the same
    `hubspot-api-client` and the same values, paced to `limit` per 10 s; a 429 waits 1 s."""
    import hubspot
    from hubspot.crm.contacts import SimplePublicObjectInputForCreate
    from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
    from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate
    from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException

    spec = json.loads(Path(spec_path).read_text())
    token = os.environ[TOKEN_ENV]
    client = hubspot.Client.create(access_token=token, host=base_url)
    pacer = Pacer(limit)
    counts = Counter()

    def call(fn: Any, *args: Any, missing_ok: bool = False) -> Any:
        while True:
            pacer.acquire()
            counts["calls"] += 1
            try:
                return fn(*args)
            except (ContactsApiException, PropertiesApiException) as exc:
                if exc.status == 429:
                    counts["refused_429"] += 1
                    time.sleep(1.0)
                    continue
                if exc.status == 404 and missing_ok:
                    return None
                raise

    properties = client.crm.properties
    call(properties.core_api.get_all, "contacts")
    group = spec["group"]
    if call(properties.groups_api.get_by_name, "contacts", group["name"], missing_ok=True) is None:
        call(properties.groups_api.create, "contacts",
             PropertyGroupCreate(name=group["name"], label=group["label"], display_order=-1))
    for prop in spec["properties"]:
        options = [OptionInput(label=o["label"], value=o["value"], display_order=o["displayOrder"],
                               hidden=o["hidden"]) for o in prop.get("options") or []]
        call(properties.core_api.create, "contacts", PropertyCreate(
            name=prop["name"], label=prop["label"], type=prop["type"], field_type=prop["fieldType"],
            group_name=prop["groupName"], description=prop.get("description") or None,
            options=options or None))
    contacts = client.crm.contacts.basic_api
    for email, values in spec["contacts"].items():
        call(contacts.create, SimplePublicObjectInputForCreate(properties={"email": email, **values}))
        counts["contacts_written"] += 1
    print(json.dumps({**counts, "api_calls": counts["calls"]}))
    return 0


# -- reporting ---------------------------------------------------------------------------------

def report_one(m: Measured, limit: int) -> None:
    rate = (f"{m.rate_max}/{m.rate_mean:.1f} per 10 s (max/mean of {m.rate_windows} windows)"
            if m.rate_mean is not None else "sync < 10 s")
    print(f"  {m.label}: {m.total_calls} calls (floor {m.floor}), 429s {m.write_calls_429}, "
          f"{rate}, wall {m.wall_seconds:.1f} s, {m.contacts_per_second:,.0f} contacts/s, "
          f"peak RSS {m.peak_rss_mb:.0f} MB, CPU {m.cpu_seconds:.1f} s; other processes "
          f"{m.other_cores:.2f} cores, sandbox {m.sandbox_cores:.2f} cores", flush=True)
    for check in m.checks:
        print(f"    check: {check}", flush=True)


def snapshot(ref: str, into: Path) -> str:
    """`git archive REF funnelsync` into `into` (read-only for the repository): the sync
    children and the sandbox import funnelsync from there, so edits to the working tree
    during the run do not change what is measured. Returns the commit."""
    commit = common.git("rev-parse", "--short", f"{ref}^{{commit}}")
    if not commit:
        raise SystemExit(f"git does not know {ref!r}")
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "funnelsync"], cwd=REPO,
                             capture_output=True, check=True).stdout
    import io
    import tarfile

    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    common.import_funnelsync_from(into)
    return commit


def machine(commit: str | None = None) -> dict[str, str]:
    facts = common.machine(("funnelsync", "hubspot-api-client", "sqlalchemy", "urllib3"))
    return {
        **facts,
        "commit": (f"{commit} (a `git archive` snapshot of funnelsync/)" if commit is not None
                   else f"{common.working_tree_commit()} working tree"),
        "load": "load average {:.2f} {:.2f} {:.2f} at the start".format(*os.getloadavg()),
    }


def pct(value: float) -> str:
    return f"{value:+.1f} %"


def markdown(results: list[Measured], naive: tuple[Measured, Measured] | None, limit: int,
             facts: dict[str, str], command: str) -> str:
    out = [f"Run: `{command}` on {facts['date']}.", "",
           f"Machine: {facts['cpu']}, {facts['memory']} RAM, {facts['os']}, {facts['python']}; "
           f"{facts['packages']}; commit {facts['commit']}; {facts['load']}.", "",
           f"Limit: sandbox `requests_per_10s = {limit}` and config `requests_per_10s = {limit}`.", ""]

    out += ["### HubSpot calls per sync", "",
            "| N | sync | contacts to write | upsert calls | provisioning calls "
            "| other | 429s | all calls | floor | over floor |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in results:
        out.append(f"| {m.size:,} | {m.label} | {m.changed:,} | {m.upsert_calls:,} | "
                   f"{m.provisioning_calls} | {m.other_calls} | "
                   f"{m.write_calls_429} | {m.total_calls:,} | {m.floor:,} | {pct(m.over_floor_pct)} |")
    out += ["", "floor = ceil(contacts to write / 100) + the provisioning calls in the log that "
            "were not refused (429) or failed (5xx); "
            "\"all calls\" counts every answered request, 429s included (the client's own count, "
            "`runs.api_calls`, is " +
            ", ".join(f"{m.client_counted_calls}" for m in results) + " in the same order).", ""]

    out += ["### Rate, time and memory", "",
            "| N | sync | write phase | req/10 s max | req/10 s mean | of limit (mean) "
            "| wall | before 1st request | contacts/s | written/s | peak RSS | CPU | other load |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in results:
        if m.rate_mean is not None:
            rate = f"{m.rate_max} | {m.rate_mean:.1f} | {m.rate_mean / limit * 100:.0f} %"
        else:
            rate = "— | — | — (sync < 10 s)"
        out.append(f"| {m.size:,} | {m.label} | {m.write_phase_seconds:.1f} s | {rate} | "
                   f"{m.wall_seconds:.1f} s | {m.before_first_request_s:.1f} s | "
                   f"{m.contacts_per_second:,.0f} | {m.changed_per_second:,.1f} | "
                   f"{m.peak_rss_mb:.0f} MB | {m.cpu_seconds:.1f} s | {m.other_cores:.2f} |")
    floor_mb = max(m.launcher_rss_mb for m in results)
    out += ["", "req/10 s: admitted requests (any path) of the sandbox's request log in trailing "
            "10-s windows (t - 10 s, t], t every 0.1 s and at every request, from 10 s after the "
            "sync's first request to its last upsert; none when the sync is shorter. Log times "
            "are when the sandbox answered, not when it admitted, so a window can read one over "
            "the limit. write phase = first to last upsert. contacts/s = N / wall time of the "
            "`funnelsync sync` process (start-up included); written/s = contacts to write / wall. "
            "Peak RSS = `ru_maxrss` of that process from `os.wait4` in a small launcher process "
            f"(launcher floor {floor_mb:.0f} MB; spawned directly from the benchmark process, "
            "which holds the sandbox, the figure would include the benchmark's own RSS); "
            "CPU = its user + system time. other load = CPU time of every other process on the "
            f"machine ({os.cpu_count()} cores) during the sync, per second, from /proc/stat "
            "(the sandbox's own CPU excluded): above 0 means the figures shared the machine.", ""]

    if naive is not None:
        fs, nv = naive
        out += [f"### Naive baseline, N = {fs.size:,} backfill", "",
                "| way | calls | 429s | wall | contacts/s | peak RSS | CPU | other load |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for m in (fs, nv):
            out.append(f"| {m.label} | {m.total_calls:,} | {m.write_calls_429} | "
                       f"{m.wall_seconds:.1f} s | {m.contacts_per_second:,.1f} | "
                       f"{m.peak_rss_mb:.0f} MB | {m.cpu_seconds:.1f} s | {m.other_cores:.2f} |")
        out += ["", f"funnelsync / naive: calls {fs.total_calls / nv.total_calls:.3f} "
                f"(1 : {nv.total_calls / fs.total_calls:.1f}), wall time "
                f"{fs.wall_seconds / nv.wall_seconds:.3f} (1 : {nv.wall_seconds / fs.wall_seconds:.1f}). "
                "Naive = one `basic_api.create` per contact with the same `hubspot-api-client`, "
                "the values funnelsync wrote in its backfill and the same provisioning calls, "
                "paced by a sliding window of the same limit (funnelsync's `RequestBudget` rule "
                "without its header corrections; a 429 waits 1 s and retries).", ""]

    checks = [f"{m.size:,} {m.label}: {c}" for m in [*results, *(naive or ())] for c in m.checks]
    out += ["Checks: " + "; ".join(checks) + ".", ""]
    out += ["### Targets", "", *targets(results, limit), ""]
    return "\n".join(out)


def targets(results: list[Measured], limit: int) -> list[str]:
    lines = []
    for m in results:
        calls_ok = m.over_floor_pct <= 2.0
        rate = ("n/a (sync < 10 s)" if m.rate_mean is None else
                f"{'met' if m.rate_mean >= 0.9 * limit else 'missed'} "
                f"({m.rate_mean / limit * 100:.0f} % of the limit)")
        lines.append(
            f"- N = {m.size:,}, {m.label}: calls within 2 % of the floor "
            f"{'met' if calls_ok else 'missed'} ({pct(m.over_floor_pct)}); rate >= 90 % {rate}; "
            f"zero 429s {'met' if m.write_calls_429 == 0 else f'missed ({m.write_calls_429})'}"
            + (f"; peak RSS < 300 MB {'met' if m.peak_rss_mb < 300 else 'missed'} "
               f"({m.peak_rss_mb:.0f} MB)" if m.size >= 100_000 else "") + ".")
    return lines


INTRO = """## Sync against HubSpot's 10-second limit (`bench/sync_bench.py`)

A funnelsync sync against the sandbox (the local HubSpot-compatible API) with HubSpot's
10-second rolling limit enforced: the sandbox answers 429 past `requests_per_10s`, and the
config's `requests_per_10s` is the same number, so the client must pace itself exactly. For each
N: the first sync (backfill of N contacts into an empty sandbox and an empty state) and a re-sync
after 1 % of the developers' usage changed; on a smaller N, the same backfill done the naive way
(one `basic_api.create` per contact).

    .venv/bin/python bench/sync_bench.py [--sizes 10000,100000] [--naive-size 2000] [--out BENCHMARKS.md]
    .venv/bin/python bench/sync_bench.py --quick     # smoke run, well under a minute

Targets: HubSpot calls within 2 % of the floor ceil(changed / 100) + provisioning calls; at least
90 % of the configured requests per 10 s while writing, and zero 429s; peak memory of the syncing
process under 300 MB at N = 100,000.

"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated contact counts")
    parser.add_argument("--naive-size", type=int, default=2000, help="N of the naive comparison (0: skip)")
    parser.add_argument("--limit", type=int, default=100, help="requests per 10 s, sandbox and config")
    parser.add_argument("--quick", action="store_true", help="smoke run: --sizes 2000 --naive-size 150")
    parser.add_argument("--out", type=Path, help="write the results into this Markdown file")
    parser.add_argument("--json", type=Path, help="write the raw figures as JSON here")
    parser.add_argument("--ref", help="measure this git commit (extracted with `git archive`) "
                        "instead of the working tree")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--naive-child", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--naive-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_child:
        return naive_child(args.naive_child, args.naive_url, args.limit)
    if args.quick:
        args.sizes, args.naive_size = "2000", 150
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    command = "bench/sync_bench.py " + " ".join(sys.argv[1:])
    root = Path(tempfile.mkdtemp(prefix="funnelsync-bench-"))
    package = REPO / "funnelsync"
    commit = None
    if args.ref:
        commit = snapshot(args.ref, root / "src")
        package = root / "src" / "funnelsync"
    facts = machine(commit)
    print(f"machine: {facts}", flush=True)

    started = time.perf_counter()
    code = code_fingerprint(package)
    changed_code = []
    try:
        results: list[Measured] = []
        for size in sizes:
            results += bench_size(size, args.limit, root)
            if code_fingerprint(package) != code:
                changed_code.append(f"during or before N = {size:,}")
                code = code_fingerprint(package)
        naive = bench_naive(args.naive_size, args.limit, root) if args.naive_size else None
        if code_fingerprint(package) != code:
            changed_code.append("during the naive comparison")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"benchmark took {time.perf_counter() - started:.0f} s\n", flush=True)

    body = markdown(results, naive, args.limit, facts, command.strip())
    if changed_code:
        body = ("**Warning: the funnelsync code under test changed " + ", ".join(changed_code) +
                "; the figures mix versions. Use --ref to measure a commit.**\n\n" + body)
    print(body)
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "limit": args.limit,
                                         "results": [asdict(m) for m in results],
                                         "naive": [asdict(m) for m in naive] if naive else None},
                                        indent=1))
    if args.out:
        common.write_section(args.out, body, (MARK_START, MARK_END), INTRO)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
