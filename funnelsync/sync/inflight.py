"""Requests in flight at once, as many as the CRM wants (its rate budget and measured answer time
say how many), on worker threads. What each brings back is handed to the calling thread in the
order the answers come, and recorded there: a batch is journaled before it is sent and recorded
with its result, whatever order HubSpot answers in.

Items sharing a key (a contact) are never in flight together. An error halts the phase: nothing
more is sent, what is in flight is waited for and recorded, then the first error is raised. A
stop does the same without an error.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

MOST_WORKERS = 64

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


def send_all(items: Iterable[Item], send: Callable[[Item], Result], record: Callable[[Item, Result], None], *,
             width: Callable[[], int], stop: threading.Event, key: Callable[[Item], str] | None = None) -> None:
    """`send` each item on a worker, at most `width()` at once; `record` each result here."""
    queue = _Queue(items, key)
    running: dict[Future[Result], Item] = {}
    answered: list[tuple[Item, Result]] = []
    failure: BaseException | None = None

    def collect(finished: Iterable[Future[Result]]) -> None:
        nonlocal failure
        for future in finished:
            item = running.pop(future)
            queue.release(item)
            error = future.exception()
            if error is not None:
                failure = failure or error
            else:
                answered.append((item, future.result()))

    with ThreadPoolExecutor(MOST_WORKERS, thread_name_prefix="funnelsync-request") as workers:

        def top_up() -> None:
            """The next requests go out before anything is recorded: a slot freed by an answer
            does not wait while the answers that came with it are recorded."""
            collect([future for future in running if future.done()])
            while failure is None and not stop.is_set() and len(running) < max(width(), 1):
                item = queue.next_free()
                if item is None:
                    return
                queue.take(item)
                context = contextvars.copy_context()  # the run's metrics and log context go along
                running[workers.submit(context.run, send, item)] = item

        while True:
            top_up()
            while answered:
                item, result = answered.pop(0)
                try:
                    record(item, result)
                except BaseException as exc:  # the state refused: send nothing more, finish what is in flight
                    failure = failure or exc
                top_up()
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            collect(finished)
    if failure is not None:
        raise failure
