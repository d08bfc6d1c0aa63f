"""A seeded demo analytics database: developers, and their API calls per day and endpoint.

Dates are relative to today, so the funnel looks the same whenever the demo runs: about a
third of the developers have never called the API (top), some call it in a sandbox (middle),
and about a quarter are in production with more than 1,000 calls a day (bottom).
"""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROLES = ["Product", "Engineering", "Marketing", "Customer Success", "Developer Relations", "Sales",
         "Support", "Executive"]
ROLE_WEIGHTS = [8, 45, 5, 6, 12, 6, 10, 8]
ENDPOINTS = ["/v1/customers", "/v1/payments", "/v1/invoices", "/v1/webhooks", "/v1/reports"]
PLANS = [("free", 10_000), ("growth", 100_000), ("enterprise", 1_000_000)]
DAYS = 30

SCHEMA = """
CREATE TABLE developers (
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    company TEXT NOT NULL,
    role TEXT NOT NULL,
    plan TEXT NOT NULL,
    monthly_quota INTEGER NOT NULL,
    signed_up_at TEXT NOT NULL
);
CREATE TABLE api_calls_daily (
    email TEXT NOT NULL,
    day TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    calls INTEGER NOT NULL
);
CREATE INDEX api_calls_daily_email ON api_calls_daily (email, day);
CREATE VIEW usage AS
SELECT d.email, d.name, d.company, d.role, d.plan, d.monthly_quota, d.signed_up_at,
       CAST(julianday(date('now')) - julianday(d.signed_up_at) AS INTEGER) AS signed_up_days_ago,
       COALESCE(SUM(CASE WHEN c.day = date('now', '-1 day') THEN c.calls END), 0) AS used_event_count,
       COALESCE(SUM(CASE WHEN c.day = date('now', '-1 day') AND c.status >= 400 THEN c.calls END), 0)
           AS error_count,
       COALESCE(SUM(CASE WHEN c.day >= date('now', '-30 days') THEN c.calls END), 0) AS calls_last_30_days,
       COALESCE(SUM(CASE WHEN c.endpoint = '/v1/payments' THEN c.calls END), 0) AS calls_payments,
       MIN(c.day) AS first_event_at,
       MAX(c.day) AS last_event_at,
       CAST(julianday(date('now')) - julianday(MAX(c.day)) AS INTEGER) AS last_event_days_ago
FROM developers d LEFT JOIN api_calls_daily c ON c.email = d.email
GROUP BY d.email;
"""


def _developer(rng: random.Random, number: int, today: date) -> tuple[tuple[object, ...], str]:
    first = rng.choice(["ada", "grace", "linus", "margaret", "ken", "barbara", "guido", "yukihiro",
                        "sophie", "dennis", "frances", "anders", "radia", "tim", "hedy", "alan"])
    company = rng.choice(["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne",
                          "wonka", "tyrell", "soylent", "cyberdyne", "aperture"])
    email = f"{first}.{number}@{company}.example"
    if number % 97 == 0:
        email = f"  {email.upper()} "  # sources are messy: the sync trims and lower-cases
    role = rng.choices(ROLES, ROLE_WEIGHTS)[0]
    plan, quota = rng.choices(PLANS, [60, 30, 10])[0]
    signed_up = today - timedelta(days=rng.randint(0, 365))
    stage = rng.choices(["top", "middle", "bottom"], [35, 40, 25])[0]
    return (email, f"{first.title()} {number}", company.title(), role, plan, quota, signed_up.isoformat()), stage


def _daily_calls(rng: random.Random, stage: str, signed_up: date, today: date) -> list[tuple[date, int]]:
    if stage == "top":
        return []
    days = []
    active_from = max(signed_up, today - timedelta(days=DAYS))
    stopped = stage == "middle" and rng.random() < 0.2  # some stopped sending traffic
    for offset in range((today - active_from).days):
        day = active_from + timedelta(days=offset)
        if stopped and (today - day).days <= 8:
            continue
        if stage == "bottom":
            calls = rng.randint(3_300, 40_000)  # > 1,000 on each of up to 3 endpoints
        else:
            calls = rng.randint(1, 900) if rng.random() < 0.7 else 0
        if (today - day).days == 1 and stage == "middle" and not stopped:
            calls = max(calls, 1)
        if calls:
            days.append((day, calls))
    return days


def build_demo_database(path: str | Path, *, developers: int = 3000, seed: int = 7,
                        today: date | None = None) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    rng = random.Random(seed)
    today = today or datetime.now(UTC).date()
    connection = sqlite3.connect(target)
    try:
        connection.executescript(SCHEMA)
        for number in range(1, developers + 1):
            row, stage = _developer(rng, number, today)
            connection.execute("INSERT INTO developers VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            email = str(row[0])
            signed_up = date.fromisoformat(str(row[6]))
            if stage != "top" and signed_up >= today - timedelta(days=1):
                signed_up = today - timedelta(days=2)
                connection.execute("UPDATE developers SET signed_up_at = ? WHERE email = ?",
                                   (signed_up.isoformat(), email))
            calls = []
            for day, total in _daily_calls(rng, stage, signed_up, today):
                for endpoint in rng.sample(ENDPOINTS, rng.randint(1, 3)):
                    share = max(1, total // 3)
                    errors = share // rng.randint(10, 50) if rng.random() < 0.3 else 0
                    calls.append((email, day.isoformat(), endpoint, 200, share - errors))
                    if errors:
                        calls.append((email, day.isoformat(), endpoint, rng.choice([400, 401, 429, 500]), errors))
            connection.executemany("INSERT INTO api_calls_daily VALUES (?, ?, ?, ?, ?)", calls)
        connection.commit()
    finally:
        connection.close()
    return target
