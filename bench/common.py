"""What the benchmarks share: the developers they invent, and the facts of the machine they ran on."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

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


def api_usage(rng: random.Random, signed_up: date, today: date) -> tuple[int, int, int, str | None, str | None]:
    """One developer's calls, errors, calls in the last 30 days, first and last call day: a third
    never called the API (top), about 40 % call it a little (middle), a quarter more than 1,000
    times a day (bottom)."""
    tier = rng.random()
    if tier < 0.33:
        return 0, 0, 0, None, None
    used = rng.randint(1, 1000) if tier < 0.75 else rng.randint(1001, 200_000)
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
    if dirty:
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
