"""What the benchmarks share: the developers they invent, the source database and config of a
sync, running a sync as a child process and measuring it, reading the sandbox's request log,
and the facts of the machine they ran on.

Run as a script (`python -S bench/common.py --launch ...`), it is the small launcher process of
`run_child`. It imports only the standard library, so that launcher stays small.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import platform
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"
TOKEN_ENV = "FUNNELSYNC_BENCH_HUBSPOT_TOKEN"
WINDOW_SECONDS = 10.0
BATCH = 100
SEED = 20261122

ROLES = ["Product", "Engineering", "Marketing", "Customer Success", "Developer Relations", "Sales",
         "Support", "Executive"]
ROLE_WEIGHTS = [8, 45, 5, 6, 12, 6, 10, 8]
PLANS = ["free", "growth", "enterprise"]
PLAN_WEIGHTS = [70, 25, 5]
FIRST = ["ada", "grace", "linus", "margaret", "ken", "barbara", "guido", "yukihiro", "sophie",
         "dennis", "frances", "anders", "radia", "tim", "hedy", "alan"]
LAST = ["lovelace", "hopper", "torvalds", "hamilton", "thompson", "liskov", "rossum", "matsumoto",
        "wilson", "ritchie", "allen", "hejlsberg", "perlman", "berners-lee", "lamarr", "turing"]
COMPANIES = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell",
             "soylent", "cyberdyne", "aperture"]


def api_usage(rng: random.Random, signed_up: date, today: date,
              stage: str | None = None) -> tuple[int, int, int, str | None, str | None]:
    """One developer's calls, errors, calls in the last 30 days, first and last call day: a third
    never called the API (top), about 40 % call it a little (middle), a quarter more than 1,000
    times a day (bottom); or of the `stage` given (the same random draws either way)."""
    tier = rng.random()
    if stage is None:
        stage = "top" if tier < 0.33 else "middle" if tier < 0.75 else "bottom"
    if stage == "top":
        return 0, 0, 0, None, None
    used = rng.randint(1, 1000) if stage == "middle" else rng.randint(1001, 200_000)
    errors = rng.randint(0, max(1, used // 50))
    last30 = used * rng.randint(5, 30)
    first_event = min(signed_up + timedelta(days=rng.randint(0, 30)), today).isoformat()
    last_event = (today - timedelta(days=rng.randint(0, 3))).isoformat()
    return used, errors, last30, first_event, last_event


def git(*args: str) -> str:
    """A read-only git query in the repository ("" where git cannot answer)."""
    try:
        done = subprocess.run(["git", "--no-optional-locks", *args], cwd=REPO, capture_output=True, text=True,
                              check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def working_tree_commit() -> str:
    """The commit measured, and the files of funnelsync/ changed since it, if any."""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line.split(maxsplit=1)[-1] for line in
             git("status", "--porcelain", "--untracked-files=all", "--", "funnelsync").splitlines()]
    if len(dirty) > 8:
        commit += f" with uncommitted changes to {len(dirty)} files of funnelsync/"
    elif dirty:
        commit += f" with uncommitted changes to {', '.join(dirty)}"
    return commit


def _proc_line(path: str, prefix: str) -> str:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return ""
    return next((line for line in lines if line.startswith(prefix)), "")


def machine(packages: tuple[str, ...]) -> dict[str, str]:
    """When, on what, with which versions of `packages`."""
    model = _proc_line("/proc/cpuinfo", "model name").partition(":")[2].strip()
    memory = _proc_line("/proc/meminfo", "MemTotal").split()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{model or platform.processor() or 'unknown'}; {os.cpu_count()} logical cores ({usable} usable)",
        "memory": f"{int(memory[1]) / 1024 / 1024:.1f} GiB" if len(memory) > 1 else "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": ", ".join(f"{name} {metadata.version(name)}" for name in packages),
    }


# -- the source database and the config of a sync ---------------------------------------------

# (source column, HubSpot name, label, type, options): the repository's config.toml mapping
PROPERTIES = [
    ("used_event_count", "used_event_count", "Used Event Count", "number", None),
    ("error_count", "api_error_count", "API errors (last day)", "number", None),
    ("calls_last_30_days", "api_calls_last_30_days", "API calls (last 30 days)", "number", None),
    ("role", "developer_role", "Developer role", "enumeration", ROLES),
    ("plan", "api_plan", "API plan", "enumeration", PLANS),
    ("signed_up_at", "api_signed_up_at", "Signed up for the API", "date", None),
    ("first_event_at", "first_api_call_at", "First API call", "date", None),
    ("last_event_at", "last_api_call_at", "Last API call", "date", None),
]
QUERY = ("SELECT email, role, plan, signed_up_at, used_event_count, error_count, "
         "calls_last_30_days, first_event_at, last_event_at FROM usage")
# the funnel of config.toml: above 0 calls is middle, above 1,000 bottom
STAGES = (("top", "Not yet integrated", None), ("middle", "Integrated in sandbox", 0),
          ("bottom", "Integrated in production", 1000))


def stage_of(used_event_count: int) -> str:
    """The funnel stage a developer with this many calls is in (as `STAGES` and the config say)."""
    return next(value for value, _, above in reversed(STAGES) if above is None or used_event_count > above)


def build_source(path: Path, count: int, seed: int = SEED,
                 stage_of_row: Callable[[int], str | None] | None = None) -> None:
    """A `usage` table of `count` developers (their usage: `api_usage`, in the stage
    `stage_of_row(row number)` says where it says one)."""
    rng = random.Random(seed)
    today = date(2026, 11, 1)
    rows = []
    for number in range(count):
        first, last, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANIES)
        signed_up = today - timedelta(days=rng.randint(1, 900))
        stage = stage_of_row(number) if stage_of_row is not None else None
        used, errors, last30, first_event, last_event = api_usage(rng, signed_up, today, stage)
        rows.append((
            f"{first}.{last}.{number}@{company}.example.com", f"{first.title()} {last.title()}",
            company.title(), rng.choices(ROLES, ROLE_WEIGHTS)[0], rng.choices(PLANS, PLAN_WEIGHTS)[0],
            signed_up.isoformat(), used, errors, last30, first_event, last_event,
        ))
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "CREATE TABLE usage (email TEXT PRIMARY KEY, name TEXT NOT NULL, company TEXT NOT NULL, "
            "role TEXT NOT NULL, plan TEXT NOT NULL, signed_up_at TEXT NOT NULL, "
            "used_event_count INTEGER NOT NULL, error_count INTEGER NOT NULL, "
            "calls_last_30_days INTEGER NOT NULL, first_event_at TEXT, last_event_at TEXT)"
        )
        db.executemany("INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.close()


def usage_counts(path: Path) -> dict[str, int]:
    """email -> used_event_count, as the source holds them now."""
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT email, used_event_count FROM usage ORDER BY rowid").fetchall())
    finally:
        db.close()


def set_usage(path: Path, changed: Mapping[str, int]) -> None:
    db = sqlite3.connect(path)
    with db:
        db.executemany("UPDATE usage SET used_event_count = ? WHERE email = ?",
                       [(value, email) for email, value in changed.items()])
    db.close()


def write_config(path: Path, *, source: Path, base_url: str, state: Path, limit: int,
                 hubspot: Mapping[str, Any] | None = None, enroll: Mapping[str, str] | None = None) -> None:
    """The config of a benchmark's sync: `PROPERTIES` and `STAGES`, `requests_per_10s = limit`,
    more `[hubspot]` keys from `hubspot`, and `enroll` (stage value -> a TOML inline table)."""
    q = json.dumps  # a JSON string of ASCII is a TOML basic string
    lines = [
        "[source]", 'kind = "sql"', f"url = {q('sqlite:///' + str(source))}", 'key = "email"',
        f"query = {q(QUERY)}", "",
        "[hubspot]", f"base_url = {q(base_url)}", f"token_env = {q(TOKEN_ENV)}",
        f"requests_per_10s = {limit}", 'property_group = "funnelsync"',
        *(f"{key} = {q(value)}" for key, value in (hubspot or {}).items()), "",
        "[state]", f"url = {q('sqlite:///' + str(state))}", "",
    ]
    for column, name, label, type_, options in PROPERTIES:
        lines += ["[[properties]]", f"column = {q(column)}", f"name = {q(name)}",
                  f"label = {q(label)}", f"type = {q(type_)}"]
        if options:
            lines.append(f"options = {json.dumps(options)}")
        lines.append("")
    lines += ["[funnel]", 'metric = "used_event_count"', 'property = "api_integration_stage"',
              'label = "API integration stage"', ""]
    for value, label, above in STAGES:
        lines += ["[[funnel.stages]]", f"value = {q(value)}", f"label = {q(label)}"]
        if above is not None:
            lines.append(f"above = {above}")
        if enroll and value in enroll:
            lines.append(f"enroll = {enroll[value]}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


# -- running one sync as a child process -------------------------------------------------------

@dataclass
class Child:
    exit_status: int
    wall_seconds: float
    started: float  # time.time(), to line up with the request log
    finished: float
    peak_rss_mb: float
    cpu_seconds: float
    stdout: str
    stderr: str
    launcher_rss_mb: float
    sandbox_cores: float  # CPU of this process (the sandbox) per second of the sync
    other_cores: float  # CPU of every other process on the machine per second of the sync


def run_child(argv: list[str], workdir: Path, name: str) -> Child:
    """Run `argv` through a small launcher process (this file, `--launch`), which waits for it
    with `os.wait4` and reports its rusage.

    Why a launcher: on Linux a child's `ru_maxrss` starts from the memory of the process that
    spawned it (exec records the high-water mark of the memory it replaces, and the spawned
    process shares or copies the spawner's), so a child of the benchmark process -- which holds
    the sandbox and its contacts -- would report at least that process's RSS. The launcher is a
    fresh, small interpreter, so what its child reports is the child's own peak (or the
    launcher's few MB, whichever is larger; `launcher_rss_mb` records that floor)."""
    env = {**os.environ, TOKEN_ENV: TOKEN, "PYTHONHASHSEED": "0"}
    out_path, err_path = workdir / f"{name}.out", workdir / f"{name}.err"
    report = workdir / f"{name}.rusage.json"
    launcher = [sys.executable, "-S", str(Path(__file__).resolve()), "--launch", str(report),
                str(out_path), str(err_path), "--", *argv]
    busy_before, mine_before = machine_busy_seconds(), own_cpu_seconds()
    subprocess.run(launcher, env=env, cwd=workdir, check=True)
    busy, mine = machine_busy_seconds() - busy_before, own_cpu_seconds() - mine_before
    usage = json.loads(report.read_text())
    # CPU the rest of the machine used meanwhile: all busy time minus this process (the
    # sandbox), the launcher and the sync
    others = max(0.0, busy - mine - usage["cpu_seconds"] - usage["launcher_cpu_seconds"])
    return Child(usage["exit_status"], usage["wall_seconds"], usage["started"], usage["finished"],
                 usage["peak_rss_mb"], usage["cpu_seconds"], out_path.read_text(),
                 err_path.read_text(), usage["launcher_rss_mb"], mine / usage["wall_seconds"],
                 others / usage["wall_seconds"])


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def launch(report: str, out_path: str, err_path: str, argv: list[str]) -> int:
    """The launcher: run `argv`, wait for it with `os.wait4`, write its rusage to `report`."""
    def high_water_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        floor = high_water_mb()
        started = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        finished = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
    launcher = resource.getrusage(resource.RUSAGE_SELF)
    Path(report).write_text(json.dumps({
        "launcher_cpu_seconds": launcher.ru_utime + launcher.ru_stime,
        "exit_status": proc.returncode, "wall_seconds": wall, "started": started,
        "finished": finished, "peak_rss_mb": usage.ru_maxrss / 1024.0,
        "cpu_seconds": usage.ru_utime + usage.ru_stime, "launcher_rss_mb": floor}))
    return 0


def funnelsync_argv(config: Path) -> list[str]:
    script = Path(sys.executable).parent / "funnelsync"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "funnelsync"]
    return [*base, "-c", str(config), "--json-logs", "sync"]


def last_run(state: Path) -> dict[str, Any]:
    db = sqlite3.connect(state)
    try:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        db.close()
    return dict(row) if row else {}


def engine_seconds(stderr: str) -> float | None:
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "sync finished":
            return float(event.get("seconds", 0.0))
    return None


# -- what the sandbox's request log says -------------------------------------------------------

# HubSpot paths in every API version: numbered (`/crm/v3/objects/contacts/...`) and dated
# (`/crm/objects/2026-09/contacts/...`); the log records each request's `version` too
UPSERT = re.compile(r"^/crm/(v3/objects|objects/[^/]+)/contacts/batch/upsert$")
PROPERTIES_API = re.compile(r"^/crm/(v3/properties|properties/[^/]+)/")
LISTS_API = re.compile(r"^/crm/(v3/lists|lists/[^/]+)(/|$)")
MEMBERSHIP_CHANGE = re.compile(r"/memberships/(add|remove|add-and-remove)$")
WORKFLOW_ENROLLMENT = re.compile(r"^/automation/v2/workflows/(\d+/)?enrollments/contacts/")


def is_upsert(entry: Mapping[str, Any]) -> bool:
    return entry["method"] == "POST" and UPSERT.match(entry["path"]) is not None


def is_provisioning(entry: Mapping[str, Any]) -> bool:
    """Property groups and properties."""
    return PROPERTIES_API.match(entry["path"]) is not None


def arrival(entry: Mapping[str, Any]) -> float:
    """When the sandbox received the request (older logs only had the answer's `time`)."""
    return float(entry.get("arrived", entry["time"]))


def window_rates(times: list[float], start: float, end: float) -> tuple[int | None, float | None, int]:
    """Requests in trailing 10-s windows (t - 10 s, t] over the sorted `times`, for t every 0.1 s
    and at every request from `start` to `end`: (max, mean, number of windows); None when
    start > end.

    A trailing window is what the limiter looks at when a request arrives, so a client sending
    100 requests in 4 s and then waiting 6 s (as a sequential client does) still counts 100."""
    if start > end:
        return None, None, 0
    steps = int((end - start) / 0.1)
    ends = [start + i * 0.1 for i in range(steps + 1)]
    ends += [t for t in times if start <= t <= end]
    counts = [bisect.bisect_right(times, t) - bisect.bisect_right(times, t - WINDOW_SECONDS)
              for t in ends]
    return max(counts), sum(counts) / len(counts), len(counts)


# -- what is measured, and where the figures go ------------------------------------------------

def code_fingerprint(package: Path) -> str:
    """A hash of the funnelsync sources under test, to notice them changing during a run."""
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def import_funnelsync_from(folder: Path) -> None:
    """This process and its children import funnelsync from `folder` (ahead of the editable
    install, whose finder comes after the path): edits to the working tree during a run then do
    not change what is measured. Call it before anything imports funnelsync."""
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))


def snapshot_working_tree(into: Path) -> str:
    """A copy of the working tree's funnelsync/ in `into`, imported from there; its fingerprint."""
    shutil.copytree(REPO / "funnelsync", into / "funnelsync", ignore=shutil.ignore_patterns("__pycache__"))
    import_funnelsync_from(into)
    return code_fingerprint(into / "funnelsync")


def write_section(path: Path, body: str, marks: tuple[str, str], intro: str) -> None:
    """Replace what is between a benchmark's `marks`; without them, append its `intro` and
    results. Everything else in the file (other benchmarks, hand-written notes) is kept."""
    start_mark, end_mark = marks
    block = f"{start_mark}\n{body}\n{end_mark}"
    text = path.read_text() if path.exists() else ""
    if start_mark in text and end_mark in text:
        head, _, rest = text.partition(start_mark)
        _, _, tail = rest.partition(end_mark)
        path.write_text(head + block + tail)
    else:
        start = text.rstrip("\n") + "\n\n" if text.strip() else "# Benchmarks\n\n"
        path.write_text(start + intro + "### Results\n\n" + block + "\n")


if __name__ == "__main__" and sys.argv[1:2] == ["--launch"]:
    # python -S bench/common.py --launch REPORT STDOUT STDERR -- ARGV...
    sys.exit(launch(*sys.argv[2:5], sys.argv[6:]))
