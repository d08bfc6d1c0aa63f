"""Requests in flight at once, as many as the CRM wants (its rate budget and measured answer time
say how many), on worker threads. What they bring back is handed to the calling thread in the
order the answers come, and recorded there: a batch is journaled before it is sent and recorded
with its result, whatever order HubSpot answers in. The answers waiting when the calling thread
is free are recorded together, so that recording keeps up with HubSpot's pace.

Items sharing a key (a contact) are never in flight together. An error halts the phase: nothing
more is sent, what is in flight is waited for and recorded, then the first error is raised. A
stop does the same without an error.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from typing import Generic, TypeVar, cast

MOST_WORKERS = 64
# Sent and answered-but-not-recorded together, per place in flight. The answers that come while
# one transaction records the last ones wait for the next: at HubSpot's pace that is about as
# many as are in flight, and more when recording has a slow moment. Twice the width stalled the
# sending at those moments (at 250 per 10 s, 800 ms, 24 in flight, 43-52 waited).
HELD_PER_PLACE = 4

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Queue(Generic[Item]):
    """The items still to send, an item whose key is busy kept back until it is free."""

    def __init__(self, items: Iterable[Item], key: Callable[[Item], str] | None) -> None:
        self._items: Iterator[Item] = iter(items)
        self._key = key
        self._held: list[Item] = []
        self.busy: set[str] = set()
        self.exhausted = False

    def next_free(self) -> Item | None:
        for position, item in enumerate(self._held):
            if self._free(item):
                return self._held.pop(position)
        for item in self._items:
            if self._free(item):
                return item
            self._held.append(item)
        self.exhausted = True
        return None

    def empty(self) -> bool:
        return self.exhausted and not self._held

    def _free(self, item: Item) -> bool:
        return self._key is None or self._key(item) not in self.busy

    def take(self, item: Item) -> None:
        if self._key is not None:
            self.busy.add(self._key(item))

    def release(self, item: Item) -> None:
        if self._key is not None:
            self.busy.discard(self._key(item))


def send_all(items: Iterable[Item], send: Callable[[Item], Result],
             record: Callable[[list[tuple[Item, Result]]], None], *,
             width: Callable[[], int], stop: threading.Event, key: Callable[[Item], str] | None = None) -> None:
    """`send` each item on a worker, at most `width()` at once; `record` the results here, as many
    at once as have come back since the last `record`.

    A worker that has its answer sends the next item itself: a place freed in flight is not
    held while this thread records. Answers waiting to be recorded count against a bound of
    `HELD_PER_PLACE` times the width, so that a slow state slows the sending, never piles up
    answers."""
    queue = _Queue(items, key)
    lock = threading.Lock()  # over the queue and the counts: workers take the next item on their own threads
    answers: SimpleQueue[tuple[Item, Result | None, BaseException | None]] = SimpleQueue()
    running = waiting = 0  # sent and not answered; answered and not recorded
    halted = False
    unreadable: BaseException | None = None  # the items could not be read (the state failed)

    with ThreadPoolExecutor(MOST_WORKERS, thread_name_prefix="funnelsync-request") as workers:

        def next_item() -> Item | None:
            """Under `lock`: the next item to send, when there is room for one more in flight;
            an error reading the items halts the phase."""
            nonlocal running, halted, unreadable
            limit = max(width(), 1)
            if halted or stop.is_set() or running >= limit or running + waiting >= HELD_PER_PLACE * limit:
                return None
            try:
                item = queue.next_free()
            except BaseException as exc:
                unreadable, halted = unreadable or exc, True
                return None
            if item is not None:
                queue.take(item)
                running += 1
            return item

        def top_up() -> None:
            """Under `lock`: start a worker for each place free in flight."""
            while (item := next_item()) is not None:
                context = contextvars.copy_context()  # the run's metrics and log context go along
                workers.submit(context.run, work, item)

        def work(first: Item) -> None:
            """Send items one after another on this thread while there is room: a worker that
            has its answer sends the next item itself, so as many threads run as are in flight."""
            nonlocal running, waiting, halted
            item: Item | None = first
            while item is not None:
                result: Result | None = None
                error: BaseException | None = None
                try:
                    result = send(item)
                except BaseException as exc:
                    error = exc
                with lock:
                    running -= 1
                    waiting += 1
                    queue.release(item)
                    halted = halted or error is not None
                    answers.put((item, result, error))
                    item = next_item()

        failure: BaseException | None = None
        with lock:
            top_up()
        while True:
            with lock:
                if not running and not waiting:
                    break
            came = [answers.get()]
            while not answers.empty():
                came.append(answers.get())
            failure = failure or next((error for _, _, error in came if error is not None), None)
            answered = [(item, cast(Result, result)) for item, result, error in came if error is None]
            try:
                if answered:
                    record(answered)
            except BaseException as exc:  # the state refused: send nothing more, finish what is in flight
                failure = failure or exc
            with lock:
                waiting -= len(came)
                halted = halted or failure is not None
                top_up()
    failure = failure or unreadable
    if failure is not None:
        raise failure
