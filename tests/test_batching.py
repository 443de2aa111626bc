"""finetune.batching: concurrent calls answered together, each with its own results, in order."""

from __future__ import annotations

import threading
import time

import pytest

from finetune.batching import Batcher


def test_concurrent_requests_share_model_calls_and_get_their_own_results():
    calls: list[list[int]] = []

    def model(items: list[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(0.02)  # while the model runs, the other requests queue
        return [item * 10 for item in items]

    batcher = Batcher(model, wait_s=0.0, max_items=64)
    answers: dict[int, list[int]] = {}

    def client(number: int) -> None:
        answers[number] = batcher([number, number + 100])

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {n: [n * 10, (n + 100) * 10] for n in range(16)}
    assert len(calls) < 16 and sum(len(call) for call in calls) == 32
    assert max(len(call) for call in calls) > 2, "requests queued behind a call went into one"


def test_a_call_takes_at_most_max_items_and_a_wait_gathers_late_requests():
    calls: list[int] = []
    batcher = Batcher(lambda items: calls.append(len(items)) or items, wait_s=0.2, max_items=3)
    threads = [threading.Thread(target=batcher, args=([n],)) for n in range(5)]
    for thread in threads:
        thread.start()
        time.sleep(0.01)  # one after another, within the wait
    for thread in threads:
        thread.join()
    assert calls == [3, 2]


def test_an_error_reaches_every_request_of_its_call():
    def broken(items: list[int]) -> list[int]:
        raise ValueError("model failed")

    batcher = Batcher(broken)
    with pytest.raises(ValueError, match="model failed"):
        batcher([1])
    assert Batcher(lambda items: items)([7]) == [7], "a new batcher, and the worker of the broken one, go on"
    with pytest.raises(ValueError, match="model failed"):
        batcher([2])
