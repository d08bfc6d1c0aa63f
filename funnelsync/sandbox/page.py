"""The sandbox's page on `/`: what it was sent, for a person to look at. Plain, escaped HTML."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from html import escape
from typing import Any

SYSTEM_PROPERTIES = ("email", "hs_object_id", "createdate", "lastmodifieddate")
RECENT_REQUESTS = 25

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1f2933; }
table { border-collapse: collapse; margin-bottom: 2rem; }
th, td { border: 1px solid #cbd2d9; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f0f4f8; }
.empty { color: #7b8794; font-style: italic; }
"""


def render(state: dict[str, Any]) -> str:
    sections = [
        _contacts(state["contacts"]),
        _lists(state["lists"], state["contacts"]),
        _workflow_enrollments(state["workflow_enrollments"], state["workflows"]),
        _sequence_enrollments(state["sequence_enrollments"]),
        _event_occurrences(state["event_occurrences"], state["dropped_event_occurrences"]),
        _requests(state["request_log"]),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>funnelsync sandbox</title>"
            f"<style>{STYLE}</style></head><body>"
            "<h1>funnelsync sandbox</h1>"
            "<p>A local HubSpot-compatible API. JSON of everything below: "
            "<a href=\"/_sandbox/state\">/_sandbox/state</a>.</p>"
            + "".join(sections) + "</body></html>\n")


def _contacts(contacts: dict[str, dict[str, Any]]) -> str:
    names = sorted({name for contact in contacts.values() for name in contact["properties"]}
                   - set(SYSTEM_PROPERTIES))
    rows = [[contact["id"], email, *(contact["properties"].get(name) or "" for name in names)]
            for email, contact in sorted(contacts.items(), key=lambda item: int(item[1]["id"]))]
    return _section(f"Contacts ({len(contacts)})", ["id", "email", *names], rows)


def _lists(lists: dict[str, dict[str, Any]], contacts: dict[str, dict[str, Any]]) -> str:
    emails = {contact["id"]: email for email, contact in contacts.items()}
    rows = [[lst["listId"], name, len(lst["members"]),
             ", ".join(emails.get(record_id, record_id) for record_id in lst["members"])]
            for name, lst in sorted(lists.items())]
    return _section(f"Static lists ({len(lists)})", ["listId", "name", "size", "members"], rows)


def _workflow_enrollments(enrollments: list[dict[str, Any]],
                          workflows: list[dict[str, Any]]) -> str:
    names = {workflow["id"]: workflow["name"] for workflow in workflows}
    counts = Counter((e["workflowId"], e["email"]) for e in enrollments)
    rows = [[workflow_id, names.get(workflow_id, ""), email, count]
            for (workflow_id, email), count in sorted(counts.items())]
    return _section(f"Workflow enrollments ({len(enrollments)})",
                    ["workflow id", "workflow", "contact", "times enrolled"], rows)


def _sequence_enrollments(enrollments: list[dict[str, Any]]) -> str:
    counts = Counter((e["sequenceId"], e["sequenceName"], e["toEmail"], e["senderEmail"])
                     for e in enrollments)
    rows = [[*key, count] for key, count in sorted(counts.items())]
    return _section(f"Sequence enrollments ({len(enrollments)})",
                    ["sequence id", "sequence", "contact", "sender", "times enrolled"], rows)


def _event_occurrences(kept: list[dict[str, Any]], dropped: list[dict[str, Any]]) -> str:
    counts = Counter((o["eventName"], o["email"] or o["objectId"] or "") for o in kept)
    rows = [[*key, count] for key, count in sorted(counts.items())]
    return _section(f"Custom event occurrences ({len(kept)}; {len(dropped)} repeated uuids dropped)",
                    ["event", "contact", "occurrences"], rows)


def _requests(log: list[dict[str, Any]]) -> str:
    rows = [[_clock(entry["time"]), entry["method"], entry["path"], entry["version"] or "", entry["status"]]
            for entry in reversed(log[-RECENT_REQUESTS:])]
    return _section(f"API requests ({len(log)}; latest first)",
                    ["time (UTC)", "method", "path", "API version", "status"], rows)


def _section(title: str, headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return f"<h2>{escape(title)}</h2><p class=\"empty\">none yet</p>"
    head = "".join(f"<th>{escape(str(header))}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return (f"<h2>{escape(title)}</h2>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
