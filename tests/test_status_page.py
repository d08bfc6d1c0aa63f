"""The status page RevOps reads on the daemon's port: served by a real `funnelsync run` over the
sandbox after two runs with rejected records, read over HTTP, and rendered in a real headless
Chromium at a laptop's width and a phone's."""

from __future__ import annotations

import html
import json
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from funnelsync.config import Config, parse_config
from funnelsync.daemon import status_page
from funnelsync.daemon.status_page import STAGE_COLOURS
from funnelsync.sandbox import SandboxServer
from funnelsync.state import StateStore
from funnelsync.state.database import _alembic_config
from funnelsync.state.models import Contact, OperationKind, OperationStatus, Reject, Run, RunOutcome, StageCount
from funnelsync.state.records import Confirmed, PlannedOperation, PlannedWrite, Refused, StageMove
from funnelsync.state.store import fingerprint, utcnow
from tests.conftest import TOKEN, TOKEN_ENV, Analytics, config_data
from tests.test_cli import free_port, http_get, wait_for, write_toml

WORKFLOW = 1234567
SANDBOX_LIST = "API funnel: sandbox"
ONBOARDING_LIST = "Onboarding: no API calls yet"
HOSTILE_ROLE = '<script>alert("owned")</script>'
LAPTOP = (1280, 1000)
PHONE = (390, 1200)


# -- a daemon after two runs ---------------------------------------------------------------------

@dataclass(frozen=True)
class Served:
    url: str
    page: str
    content_type: str
    folder: Path


def enrolling_config(analytics: Analytics, sandbox: SandboxServer, folder: Path, port: int) -> dict[str, Any]:
    data = config_data(analytics, sandbox.url, folder / "state.db")
    data["daemon"] = {"schedule": "0 0 1 1 *", "http": f"127.0.0.1:{port}"}  # syncs once, at start
    stages = data["funnel"]["stages"]
    stages[1]["enroll"] = {"list": SANDBOX_LIST}
    stages[2]["enroll"] = {"workflow_id": WORKFLOW}
    data["segments"] = [{"name": "no_calls", "label": "Signed up, no API calls yet",
                         "when": "used_event_count == 0", "enroll": {"list": ONBOARDING_LIST}}]
    sandbox.add_workflow(WORKFLOW, "Production nurture")
    return data


def finished_runs(state_path: Path) -> int:
    """Runs whose stage counts are recorded: the last thing a run writes."""
    if not state_path.exists():
        return 0
    with sqlite3.connect(state_path) as db:
        try:
            return int(db.execute("SELECT count(DISTINCT run_id) FROM stage_counts").fetchone()[0])
        except sqlite3.OperationalError:  # not migrated yet
            return 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Run 1 (`funnelsync sync`): 18 contacts written, two refused by HubSpot, one by the
    mapping. Run 2 (the daemon's first): four contacts move up a stage, one refused again."""
    folder = tmp_path_factory.mktemp("status-page")
    env = {**os.environ, TOKEN_ENV: TOKEN}
    with SandboxServer(token=TOKEN) as sandbox:
        analytics = Analytics(folder / "analytics.db")
        port = free_port()
        config_path = write_toml(folder / "config.toml", enrolling_config(analytics, sandbox, folder, port))
        analytics.add_many(6, calls=0, prefix="top")
        analytics.add_many(8, calls=5, prefix="middle")
        analytics.add_many(4, calls=5000, prefix="bottom")
        for email in ("rej1@example.com", "rej2@example.com"):
            analytics.add(email, calls=5)
        analytics.add("mallory@example.com", role=HOSTILE_ROLE, calls=5)
        sandbox.inject_fault(kind="reject_rows", emails=["rej1@example.com", "rej2@example.com"])
        first = subprocess.run([sys.executable, "-m", "funnelsync", "-c", str(config_path), "sync"],
                               capture_output=True, text=True, timeout=120, env=env)
        assert first.returncode == 1, first.stdout + first.stderr

        for email in ("top0@example.com", "top1@example.com", "top2@example.com"):
            analytics.set_calls(email, 5)
        analytics.set_calls("middle0@example.com", 5000)
        sandbox.inject_fault(kind="reject_rows", emails=["rej1@example.com"])
        log_path = folder / "daemon.log"
        with log_path.open("w") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "funnelsync", "-c", str(config_path), "run"],
                                      stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                wait_for(lambda: finished_runs(folder / "state.db") == 2, timeout=90)
                url = f"http://127.0.0.1:{port}/"
                with urllib.request.urlopen(url, timeout=30) as answer:
                    page, content_type = answer.read().decode(), answer.headers["Content-Type"]
                yield Served(url, page, content_type, folder)
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
        assert "Traceback" not in log_path.read_text()


class PageParts(HTMLParser):
    """The page as a reader meets it: headings in order, and each table's caption and cells."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.headings: list[tuple[str, str]] = []
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._text: list[str] | None = None
        self._heading: str | None = None
        self._caption: list[str] | None = None
        self._rows: list[list[str]] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h1", "h2"):
            self._heading, self._text = tag, []
        elif tag == "table":
            self._rows = []
        elif tag == "caption":
            self._caption = []
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2") and self._heading and self._text is not None:
            self.headings.append((tag, _words(self._text)))
            self._heading = self._text = None
        elif tag in ("td", "th") and self._rows is not None and self._text is not None:
            self._rows[-1].append(_words(self._text))
            self._text = None
        elif tag == "caption" and self._caption is not None:
            self._caption_text = _words(self._caption)
            self._caption = None
        elif tag == "table" and self._rows is not None:
            self.tables.append((self._caption_text, self._rows))
            self._rows = None

    def handle_data(self, data: str) -> None:
        if self._caption is not None:
            self._caption.append(data)
        elif self._text is not None:
            self._text.append(data)

    def table(self, caption_start: str) -> list[list[str]]:
        """The body rows of the table whose caption starts so (the header row left out)."""
        [rows] = [rows for caption, rows in self.tables if caption.startswith(caption_start)]
        return rows[1:]


def _words(parts: list[str]) -> str:
    return " ".join("".join(parts).split())


# -- what the page says, over HTTP ----------------------------------------------------------------

def test_the_daemon_serves_one_small_html_page_at_the_root_and_at_status(served: Served) -> None:
    assert served.content_type.startswith("text/html")
    assert served.page.startswith("<!DOCTYPE html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in served.page
    assert len(served.page.encode()) < 40_000
    status, again = http_get(served.url + "status")
    assert status == 200
    assert PageParts(again).tables == PageParts(served.page).tables


def test_the_funnel_now_has_the_configs_stage_labels_in_funnel_order_with_their_counts(served: Served) -> None:
    funnel = PageParts(served.page).table("Contacts per API integration stage, in funnel order (19 contacts)")
    assert [row[:3] for row in funnel] == [
        ["Not yet integrated", "3", "16%"],
        ["Integrated in sandbox", "11", "58%"],
        ["Integrated in production", "5", "26%"],
    ]


def test_the_funnel_over_time_has_a_point_per_run_and_says_so_in_words(served: Served) -> None:
    parts = PageParts(served.page)
    today = datetime.now(UTC)
    [by_day] = parts.table("Contacts per stage at each day's last run")
    assert by_day == [f"{today.day} {today:%b %Y}", "3", "11", "5"]
    assert "Contacts per stage as each run left them (2 runs shown)" in served.page
    description = served.page.split('<desc id="chart-d">', 1)[1].split("</desc>", 1)[0]
    assert "Not yet integrated: 6 to 3; Integrated in sandbox: 8 to 11; Integrated in production: 4 to 5" in description
    assert 'role="img" aria-labelledby="chart-t chart-d"' in served.page
    for colour in STAGE_COLOURS[:3]:
        assert f'stroke="{colour}"' in served.page


def test_the_last_runs_show_outcome_counts_stage_moves_enrollments_and_duration(served: Served) -> None:
    runs = PageParts(served.page).table("The 2 latest runs, newest first")
    assert [[row[0], *row[4:9]] for row in runs] == [
        # run, read, written, rejected, stage moves, enrollments and list changes
        ["#2", "21", "5", "2", "5", "9"],
        ["#1", "21", "18", "3", "18", "18"],
    ]
    assert all(row[2].startswith("Some records rejected") for row in runs)
    assert all(row[3].endswith(" s") for row in runs)  # how long each took


def test_the_rejects_are_listed_with_their_reasons_escaped(served: Served) -> None:
    parts = PageParts(served.page)
    rejects = {row[0]: row for row in parts.table("The latest 2 of 2")}
    assert set(rejects) == {"rej1@example.com", "mallory@example.com"}  # rej2 went through on run 2
    assert rejects["rej1@example.com"][1] == "Contact rej1@example.com was rejected (sandbox fault reject_rows)"
    assert rejects["rej1@example.com"][3] == "2"  # attempts
    assert HOSTILE_ROLE in rejects["mallory@example.com"][1]  # as text, once the browser reads it
    assert "<script" not in served.page
    assert html.escape(HOSTILE_ROLE) in served.page
    assert "2 records the CRM or the mapping refused; 2 will be tried again next run." in served.page


def test_segments_lists_and_the_next_run_are_shown(served: Served) -> None:
    parts = PageParts(served.page)
    assert parts.table("Contacts in each segment now") == [
        ["Signed up, no API calls yet", "3", f"list {ONBOARDING_LIST}"]]
    assert parts.table("Static lists funnelsync keeps in step") == [
        [SANDBOX_LIST, "stage Integrated in sandbox", "11", "0", "0"],
        [ONBOARDING_LIST, "segment Signed up, no API calls yet", "3", "0", "0"]]
    next_new_year = datetime(datetime.now(UTC).year + 1, 1, 1, tzinfo=UTC)
    assert f'Next scheduled run: <time datetime="{next_new_year.isoformat()}">1 Jan {next_new_year.year} 00:00 UTC' \
        in served.page
    assert "It tries 2 rejected records again." in served.page


# -- the page in a real Chromium ------------------------------------------------------------------

def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("no chromium on PATH: the status page is checked in a real headless Chromium. Run "
                    "`sh scripts/ensure-chromium.sh` (`make install` does), which installs Debian's chromium package")
    return found


def in_chromium(folder: Path, *args: str) -> str:
    """Chromium's stdout; fails the test with its stderr when it fails."""
    profile = folder / "chromium-profile"
    answer = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, f"chromium failed ({answer.returncode}): {answer.stderr[-3000:]}"
    return answer.stdout


def screenshot(served: Served, size: tuple[int, int], name: str) -> Png:
    path = served.folder / f"{name}.png"
    in_chromium(served.folder, f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", served.url)
    return Png.read(path)


# Run inside the page, in an iframe exactly as wide as the screen (a headless window is at least
# 500 px wide): every <details> opened, then nothing may stick out to the right, nor spill out of
# its box (text wider than its cell), and where the chart is.
LAYOUT_PROBE = """<script>
(() => {
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  const width = document.documentElement.clientWidth;
  const clipped = el => { for (let e = el; e; e = e.parentElement) {
    if (getComputedStyle(e).overflowX !== "visible") return true; } return false; };
  const over = [];
  for (const el of document.querySelectorAll("body *")) {
    if (clipped(el)) continue;
    const box = el.getBoundingClientRect();
    const spills = el instanceof HTMLElement && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1;
    if (box.right > width + 0.5 || spills) over.push(`${el.tagName} "${el.textContent.slice(0, 40)}"`);
  }
  const chart = document.querySelector("svg.chart").getBoundingClientRect();
  parent.document.body.dataset.layout = JSON.stringify({width, scrollWidth: document.documentElement.scrollWidth,
    over, chart: [chart.left, chart.top, chart.right, chart.bottom]});
})();
</script>"""


def layout(served: Served, size: tuple[int, int]) -> dict[str, Any]:
    framed = served.page.replace("</body>", LAYOUT_PROBE + "</body>")
    assert framed != served.page
    harness = served.folder / f"layout-{size[0]}.html"
    harness.write_text(f'<!DOCTYPE html><html><body style="margin:0"><iframe style="border:0;width:{size[0]}px;'
                       f'height:{size[1]}px" srcdoc="{html.escape(framed)}"></iframe></body></html>')
    dom = in_chromium(served.folder, f"--window-size={max(size[0], 500) + 20},{size[1]}", "--dump-dom",
                      harness.as_uri())
    marker = 'data-layout="'
    assert marker in dom, dom[-2000:]
    return dict(json.loads(html.unescape(dom.split(marker, 1)[1].split('"', 1)[0])))


@dataclass(frozen=True)
class Png:
    """A PNG as rows of RGB pixels, decoded with zlib: 8-bit RGB or RGBA, not interlaced."""

    width: int
    height: int
    rows: list[bytes]  # RGB

    @classmethod
    def read(cls, path: Path) -> Png:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        position, compressed, header = 8, b"", (0, 0, 0, 0, 0)
        while position < len(data):
            (length,) = struct.unpack(">I", data[position : position + 4])
            kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
            position += 12 + length
            if kind == b"IHDR":
                width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
                header = (width, height, depth, colour_type, interlace)
            elif kind == b"IDAT":
                compressed += body
        width, height, depth, colour_type, interlace = header
        assert depth == 8 and colour_type in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
        channels = 3 if colour_type == 2 else 4
        rows = [bytes(row) for row in _unfiltered(zlib.decompress(compressed), width, height, channels)]
        if channels == 4:  # the alpha left out
            rows = [b"".join(row[x : x + 3] for x in range(0, len(row), 4)) for row in rows]
        return cls(width, height, rows)

    def pixels(self, left: int, top: int, right: int, bottom: int) -> Iterator[tuple[int, int, int]]:
        for row in self.rows[max(0, top) : min(self.height, bottom)]:
            for x in range(max(0, left), min(self.width, right)):
                yield row[3 * x], row[3 * x + 1], row[3 * x + 2]


def _unfiltered(raw: bytes, width: int, height: int, channels: int) -> Iterator[bytearray]:
    """PNG's five row filters undone; Up, the most common in Chromium's shots, a row at a time."""
    stride, previous, at = width * channels, bytearray(width * channels), 0
    for _ in range(height):
        kind, row = raw[at], bytearray(raw[at + 1 : at + 1 + stride])
        at += 1 + stride
        if kind == 2:
            row = bytearray((value + up) & 0xFF for value, up in zip(row, previous, strict=True))
        elif kind == 1:
            for i in range(channels, stride):
                row[i] = (row[i] + row[i - channels]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                row[i] = (row[i] + ((row[i - channels] if i >= channels else 0) + previous[i]) // 2) & 0xFF
        elif kind == 4:  # Paeth: of left, up and up-left, the nearest to left + up - up-left
            for i in range(channels):
                row[i] = (row[i] + previous[i]) & 0xFF
            for i in range(channels, stride):
                a, b, c = row[i - channels], previous[i], previous[i - channels]
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        yield row
        previous = row


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 8) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def check_rendering(served: Served, size: tuple[int, int], name: str) -> None:
    placed = layout(served, size)
    assert placed["width"] == size[0]
    assert placed["scrollWidth"] <= size[0], f"the page is wider than the screen: {placed}"
    assert placed["over"] == [], f"sticks out or spills at {size[0]} px: {placed['over'][:10]}"
    left, top, right, bottom = (round(v) for v in placed["chart"])
    assert 0 <= left < right <= size[0] and bottom <= size[1], f"the chart is not on the first screen: {placed}"

    shot = screenshot(served, size, name)
    assert (shot.width, shot.height) == size
    everything = list(shot.pixels(0, 0, shot.width, shot.height))
    inked = sum(1 for p in everything if not near(p, (255, 255, 255), 16))
    assert inked > len(everything) // 50, f"the page looks blank: {inked} of {len(everything)} pixels inked"
    heading = list(shot.pixels(0, 0, shot.width, 80))
    assert sum(1 for p in heading if sum(p) < 200) > 100, "no dark text where the title is"
    in_chart = list(shot.pixels(left, top, right, bottom))
    for colour in STAGE_COLOURS[:3]:
        found = sum(1 for p in in_chart if near(p, rgb(colour)))
        assert found >= 20, f"stage colour {colour} not drawn in the chart at {size[0]} px ({found} pixels)"


def test_at_a_laptops_width_chromium_draws_the_chart_and_nothing_overflows(served: Served) -> None:
    check_rendering(served, LAPTOP, "laptop")


def test_at_a_phones_width_chromium_draws_the_chart_and_nothing_overflows(served: Served) -> None:
    check_rendering(served, PHONE, "phone")


def test_chromium_reads_the_headings_and_table_headers_a_screen_reader_announces(served: Served) -> None:
    dom = in_chromium(served.folder, "--dump-dom", served.url)
    parts = PageParts(dom)
    assert parts.headings == [
        ("h1", "funnelsync status"), ("h2", "The funnel now"), ("h2", "The funnel over the last 4 weeks"),
        ("h2", "The last runs"), ("h2", "Rejected records"), ("h2", "Failed enrollments"),
        ("h2", "Segments and lists"), ("h2", "The next run")]
    assert dom.count('<th scope="col"') > 20 and '<th scope="row"' in dom
    assert '<title id="chart-t">' in dom and '<desc id="chart-d">From ' in dom
    assert '<html lang="en">' in dom


# -- the page from a state, without a daemon ------------------------------------------------------

def state_only_config(tmp_path: Path, state_url: str) -> Config:
    """A config for rendering a state built here: no sync runs, so no sandbox is needed."""
    data = config_data(Analytics(tmp_path / "analytics.db"), "http://127.0.0.1:9", tmp_path / "unused.db")
    data["state"]["url"] = state_url
    data["funnel"]["stages"][2]["enroll"] = {"workflow_id": WORKFLOW}
    return parse_config(data)


@pytest.fixture
def state_config(tmp_path: Path, state_url: str) -> Config:
    return state_only_config(tmp_path, state_url)


def moved(email: str, stage: str) -> PlannedWrite:
    properties = {"api_integration_stage": stage}
    return PlannedWrite(email, properties, fingerprint(properties), stage_move=StageMove(stage, utcnow()))


def test_the_next_run_says_which_enrollments_are_pending_and_which_are_checked_in_hubspot_first(
    state_config: Config,
) -> None:
    state = StateStore(state_config.state.url)
    try:
        run = state.start_run()
        enroll = [PlannedOperation(OperationKind.ENROLL_WORKFLOW, f"enroll:{email}", email, str(WORKFLOW), {})
                  for email in ("ada@example.com", "grace@example.com", "<b>eve</b>@example.com")]
        state.record_results(run, [Confirmed(moved(op.email, "bottom"), None) for op in enroll],
                             [Refused("bob@example.com", "Property values were not valid", "INVALID")],
                             enrollments=enroll)
        journal = {op.email: op.id for op in state.pending_enrollments()}
        state.mark_operations([journal["ada@example.com"]], OperationStatus.STARTED, "the answer was lost: timed out")
        state.mark_operations([journal["<b>eve</b>@example.com"]], OperationStatus.PLANNED, "HubSpot refused <it>")
        state.finish_run(run, RunOutcome.ENROLLMENTS_FAILED, enrollments_made=0)
        state.record_stage_counts(run)
        page = status_page.render(state_config, state)
    finally:
        state.close()
    assert "Pending in the journal, made next run: 2 workflow enrollments." in page
    assert ("Outcome unknown (the answer was lost), checked in HubSpot before anything is sent again: "
            "1 workflow enrollment.") in page
    assert "It tries 1 rejected record again." in page
    failed = {row[0]: row for row in PageParts(page).table("The latest 2 of 2, each tried again next run")}
    assert failed["ada@example.com"][1] == "workflow enrollment (outcome unknown: checked in HubSpot before any resend)"
    assert failed["<b>eve</b>@example.com"][3] == "HubSpot refused <it>"
    assert "<b>eve" not in page and "&lt;it&gt;" in page


def test_for_a_hundred_thousand_contacts_the_page_stays_a_few_tens_of_kb(tmp_path: Path) -> None:
    """Four weeks of runs every 15 minutes, 3,000 rejected records with long reasons."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = state_only_config(tmp_path, url)
    state = StateStore(url)
    now = utcnow()
    stages = ("top", "middle", "bottom")
    runs = 28 * 96
    with state.engine.begin() as connection:
        connection.execute(sa.insert(Contact), [
            {"email": f"dev{i}@example.com", "fingerprint": "", "properties": "{}", "stage": stages[i % 3],
             "written_at": now} for i in range(100_000)])
        connection.execute(sa.insert(Reject), [
            {"email": f"dev{i}@example.com", "reason": "Property values were not valid: " + "x" * 2000,
             "code": "INVALID_OPTION", "will_retry": True, "attempts": 1, "first_rejected_at": now,
             "last_rejected_at": now, "run_id": runs} for i in range(3000)])
        at = [now - timedelta(minutes=15 * (runs - r)) for r in range(runs)]
        connection.execute(sa.insert(Run), [
            {"id": r + 1, "started_at": at[r], "finished_at": at[r] + timedelta(seconds=40), "outcome": "rejects",
             "rows_read": 100_000, "rows_skipped": 0, "contacts_changed": 10, "contacts_written": 10,
             "contacts_rejected": 3000, "api_calls": 5, "message": "3000 contact(s) rejected"} for r in range(runs)])
        connection.execute(sa.insert(StageCount), [
            {"run_id": r + 1, "stage": stage, "contacts": 33_000 + r, "counted_at": at[r]}
            for r in range(runs - 1) for stage in stages])
    state.record_stage_counts(runs)  # the last run's, counted from the contacts
    try:
        page = status_page.render(config, state)
    finally:
        state.close()
    assert len(page.encode()) < 50_000, len(page.encode())
    parts = PageParts(page)
    assert [row[1] for row in parts.table("Contacts per API integration stage")] == ["33,334", "33,333", "33,333"]
    assert len(parts.table("The latest 25 of 3,000; `funnelsync rejects` lists them all")) == 25
    assert page.count("<polyline ") == 3 and "(120 runs shown)" in page
    assert parts.table("Contacts per stage at each day's last run")[-1][1:] == ["33,334", "33,333", "33,333"]


def test_a_state_from_before_the_status_page_is_migrated_and_its_old_runs_say_not_counted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        command.upgrade(_alembic_config(connection), "0002")
        connection.execute(sa.text(
            "INSERT INTO runs (started_at, finished_at, outcome, rows_read, rows_skipped, contacts_changed, "
            "contacts_written, contacts_rejected, api_calls, message) VALUES "
            "('2026-11-30 10:00:00', '2026-11-30 10:01:05', 'ok', 4, 0, 4, 4, 0, 2, '')"))
        connection.commit()
    engine.dispose()
    state = StateStore(url)
    try:
        page = status_page.render(state_only_config(tmp_path, url), state)
    finally:
        state.close()
    [old] = PageParts(page).table("The 1 latest run")
    assert old[:4] == ["#1", "30 Nov 2026 10:00 UTC", "OK", "1 min 05 s"]
    assert old[8] == "not counted"
    assert "No run has finished in the last 4 weeks: each run adds a point to this chart." in page


def test_dates_counts_and_durations_read_as_a_person_reads_them() -> None:
    assert status_page.number(1234567) == "1,234,567"
    assert status_page.duration(0.2) == "under 1 s" and status_page.duration(4.3) == "4.3 s"
    assert status_page.duration(3725) == "1 h 02 min"
    moment = datetime(2026, 3, 5, 7, 8, tzinfo=UTC)
    assert status_page.when(moment) == '<time datetime="2026-03-05T07:08:00+00:00">5 Mar 2026 07:08 UTC</time>'
    assert status_page.shortened("postgresql://app:s3cret@db/x failed") == "postgresql://app:[redacted]@db/x failed"
    assert status_page.shortened("x" * 1000) == "x" * (status_page.REASON_SHOWN - 1) + "…"


def test_without_a_funnel_the_page_says_there_is_no_stage_to_chart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    data = config_data(Analytics(tmp_path / "analytics.db"), "http://127.0.0.1:9", tmp_path / "unused.db")
    data["state"]["url"] = url
    del data["funnel"]
    state = StateStore(url)
    try:
        run = state.start_run()
        state.record_results(run, [Confirmed(PlannedWrite("ada@example.com", {"n": "1"}, "f"), None)], [])
        state.finish_run(run, RunOutcome.OK, enrollments_made=0)
        state.record_stage_counts(run)
        page = status_page.render(parse_config(data), state)
    finally:
        state.close()
    assert PageParts(page).table("Contacts per stage, in funnel order (1 contact)") == [
        ["Without a stage", "1", "100%", ""]]
    assert "The config has no funnel: there are no stages to chart." in page
    assert "No funnel in the config." in page
