"""Concurrent requests answered by one model call: the served model's request batching.

MLflow's scoring server runs each request's `predict` in a thread of its own, so N concurrent
requests would be N model calls fighting over the same cores. A `Batcher` queues them instead:
one worker thread takes the first waiting request, whatever else is waiting or arrives within
`wait_s` (up to `max_items` items in all), and answers them all with a single call. The queue is
bounded, so a flood of requests waits in the server (and its request timeout) rather than in memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """`batcher(items)` returns `call(items)`, computed together with other threads' items.

    `call` maps a list of items to one result per item, in order; an error in it fails every
    request of that group with the same error.
    """

    def __init__(self, call: Callable[[list[Item]], list[Result]], wait_s: float = 0.0, max_items: int = 64,
                 max_waiting: int = 256):
        self.call, self.wait_s, self.max_items = call, wait_s, max_items
        self._waiting: queue.Queue[tuple[list[Item], Future[list[Result]]]] = queue.Queue(maxsize=max_waiting)
        threading.Thread(target=self._serve, name="finetune-batcher", daemon=True).start()

    def __call__(self, items: list[Item]) -> list[Result]:
        done: Future[list[Result]] = Future()
        self._waiting.put((list(items), done))
        return done.result()

    def _serve(self) -> None:
        while True:
            group = [self._waiting.get()]
            count = len(group[0][0])
            deadline = time.monotonic() + self.wait_s
            while count < self.max_items:
                try:
                    request = self._waiting.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                group.append(request)
                count += len(request[0])
            self._answer(group)

    def _answer(self, group: list[tuple[list[Item], Future[list[Result]]]]) -> None:
        try:
            results = self.call([item for items, _ in group for item in items])
        except BaseException as error:  # noqa: BLE001 - handed to the waiting requests, never lost
            for _, done in group:
                done.set_exception(error)
            return
        start = 0
        for items, done in group:
            done.set_result(results[start:start + len(items)])
            start += len(items)

