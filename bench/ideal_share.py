"""What a client with no time of its own would score on throughput_bench.py's share of the limit,
replayed from a run's own request log.

funnelsync counts a request in the window from its answer (HubSpot counts it on arrival, which
is somewhere before), so each place in the window comes back once every 10 s + the answer time:
at 800 ms no client counting that way passes 10 / 10.8 = 92.6 % for long. How near a phase of
under a minute comes also depends on how its bursts fall into the measured windows. This replays
one phase of a logged sync: the same requests in the same order, each answered as late as the
sandbox answered it in the run; the calls before the phase where they were; and a client that
sends the moment a place in the window and in flight is free, taking no time to read an answer
or to make the next request. What it scores against what the run scored is what funnelsync's own
time cost. It is a model of a client, not a measurement of one: the figures in BENCHMARKS.md
come from throughput_bench.py.

    bench/ideal_share.py LOG LIMIT [--phase writes] [--widths 20,23,28]

LOG is a sync's log as throughput_bench.py --logs writes it. Without --widths the client keeps
as many in flight as funnelsync's own rule says (the limit's rate x the mean answer time, plus
one).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import WINDOW_SECONDS, arrival, window_rates
from throughput_bench import PHASES, phase_of


def share_in(admitted: list[float], start: float, end: float, limit: int) -> float | None:
    _, mean, _ = window_rates(admitted, start + WINDOW_SECONDS, end)
    return None if mean is None else mean / limit


def replay(start: float, answered_before: Sequence[float], answer_times: Sequence[float], limit: int,
           width: int) -> tuple[list[float], float]:
    """The arrivals of the phase's requests (each answered `answer_times[i]` after it arrives)
    sent from `start` by a client with no time of its own, `width` at most in flight, after the
    run's calls that arrived before the phase (`answered_before`: when each was answered); and
    when the last is answered."""
    expiries: list[float] = []  # when an answered request stops counting
    unanswered: list[tuple[float, bool]] = []  # (answer, one of the phase's)
    for answered in answered_before:
        if answered > start:
            heapq.heappush(unanswered, (answered, False))
        elif answered + WINDOW_SECONDS > start:
            heapq.heappush(expiries, answered + WINDOW_SECONDS)
    arrivals: list[float] = []
    now, end, in_flight = start, start, 0
    while len(arrivals) < len(answer_times) or in_flight:
        while expiries and expiries[0] <= now:
            heapq.heappop(expiries)
        while unanswered and unanswered[0][0] <= now:
            answered, ours = heapq.heappop(unanswered)
            heapq.heappush(expiries, answered + WINDOW_SECONDS)
            if ours:
                in_flight, end = in_flight - 1, max(end, answered)
        if len(arrivals) < len(answer_times) and in_flight < width and len(unanswered) + len(expiries) < limit:
            heapq.heappush(unanswered, (now + answer_times[len(arrivals)], True))
            arrivals.append(now)
            in_flight += 1
            continue
        now = min(unanswered[0][0] if unanswered else math.inf, expiries[0] if expiries else math.inf)
    return arrivals, end


def funnelsync_width(limit: int, answer_times: Sequence[float]) -> int:
    from funnelsync.connectors.hubspot.client import MOST_IN_FLIGHT

    return min(MOST_IN_FLIGHT, math.ceil(limit / WINDOW_SECONDS * sum(answer_times) / len(answer_times)) + 1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("limit", type=int)
    parser.add_argument("--phase", default="writes", choices=PHASES)
    parser.add_argument("--widths", default="", help="comma-separated; default: funnelsync's own rule")
    args = parser.parse_args(argv)
    log: list[dict[str, Any]] = json.loads(args.log.read_text())
    admitted = [entry for entry in log if entry["status"] != 429]
    phase = sorted((entry for entry in admitted if phase_of(entry) == args.phase), key=arrival)
    if not phase:
        print(f"{args.log}: no {args.phase} requests")
        return 1
    start, end = arrival(phase[0]), max(entry["time"] for entry in phase)
    answer_times = [entry["time"] - arrival(entry) for entry in phase]
    measured = share_in(sorted(arrival(entry) for entry in admitted), start, end, args.limit)
    print(f"{args.phase}: {len(phase):,} requests, answered in {sum(answer_times) / len(phase) * 1000:.0f} ms "
          f"on average; the run: {percent(measured)} in {end - start:.1f} s")
    before = [entry for entry in admitted if arrival(entry) < start]
    widths = [int(w) for w in args.widths.split(",") if w] or [funnelsync_width(args.limit, answer_times)]
    for width in widths:
        arrivals, last = replay(start, [entry["time"] for entry in before], answer_times, args.limit, width)
        ideal = share_in(sorted([arrival(entry) for entry in before] + arrivals), start, last, args.limit)
        print(f"  no time of its own, {width} in flight at most: {percent(ideal)} in {last - start:.1f} s")
    return 0


def percent(share: float | None) -> str:
    return "no window (under 10 s)" if share is None else f"{share * 100:.1f} %"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
