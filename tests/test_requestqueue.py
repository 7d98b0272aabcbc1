"""The request queue in front of LitServe's (serve/requestqueue.py): real sockets, a real Manager
queue, spawned readers as LitServe spawns its inference workers."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from pathlib import Path

import pytest

from serve.requestqueue import MAX_DATAGRAM, DatagramQueue


def take_all(requests: DatagramQueue, out, idle_s: float) -> None:
    """A spawned reader: every item it gets until none comes for ``idle_s`` seconds."""
    while True:
        try:
            out.put(requests.get(timeout=idle_s))
        except queue.Empty:
            out.put("done")
            return


def collect(out, readers: int) -> list:
    items, done = [], 0
    while done < readers:
        item = out.get(timeout=60)
        if item == "done":
            done += 1
        else:
            items.append(item)
    return items


@pytest.fixture
def manager():
    with mp.Manager() as m:
        yield m


def test_every_request_reaches_exactly_one_reader_by_either_path(manager, tmp_path: Path) -> None:
    requests = DatagramQueue(manager.Queue(), str(tmp_path / "requests.sock"))
    big = (0, "big", 0.0, "x" * (MAX_DATAGRAM + 1))  # too large for a datagram: the Manager queue
    sent = [(0, f"uid-{i}", 0.0, {"text": f"sentence {i}"}) for i in range(40)] + [big]
    for item in sent:  # nobody reads yet: the kernel's datagram queue fills, the rest go to the Manager
        requests.put(item)
    assert 1 <= requests.fallback.qsize() < len(sent)  # both paths were used

    ctx, out = mp.get_context("spawn"), manager.Queue()
    readers = [ctx.Process(target=take_all, args=(requests, out, 1.5)) for _ in range(2)]
    for r in readers:
        r.start()
    got = collect(out, len(readers))
    for r in readers:
        r.join(timeout=30)
    assert sorted(got, key=repr) == sorted(sent, key=repr)  # each once: none lost, none twice
    assert requests.fallback.qsize() == 0


def test_a_waiting_reader_wakes_for_a_request_and_times_out_without_one(manager, tmp_path: Path) -> None:
    requests = DatagramQueue(manager.Queue(), str(tmp_path / "requests.sock"))
    began = time.monotonic()
    with pytest.raises(queue.Empty):
        requests.get(timeout=0.3)
    assert 0.3 <= time.monotonic() - began < 1.3
    with pytest.raises(queue.Empty):
        requests.get_nowait()

    ctx = mp.get_context("fork")  # as LitServe forks its HTTP processes
    for item, path in (
        ((0, "small", 1.0, "hi"), "datagram"),
        ((0, "big", 1.0, "y" * 2 * MAX_DATAGRAM), "Manager"),
    ):
        sender = ctx.Process(target=requests.put, args=(item,))
        began = time.monotonic()
        sender.start()
        assert requests.get(timeout=20) == item, path
        assert time.monotonic() - began < 5, path  # woken by it, not by a timeout going round
        sender.join(timeout=10)


def test_a_reader_that_does_not_wait_gets_what_the_drain_thread_holds(manager, tmp_path: Path) -> None:
    """Between decoder steps the worker only looks (``get_nowait``): what the Manager queue handed to
    the drain thread must come even after a waiting ``get`` has read the thread's wake-ups."""
    requests = DatagramQueue(manager.Queue(), str(tmp_path / "requests.sock"))
    with pytest.raises(queue.Empty):
        requests.get_nowait()  # starts the drain thread
    batch = [(0, f"big-{i}", 0.0, "z" * (MAX_DATAGRAM + 1)) for i in range(3)]
    for item in batch:  # too large for a datagram: through the Manager queue
        requests.put(item)
    deadline = time.monotonic() + 20
    while requests.taken.qsize() < len(batch) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the thread's progress, not waiting for a duration
    os.read(requests.wake_r, 4096)  # as a waiting get does when it wakes
    assert [requests.get_nowait() for _ in batch] == batch
    with pytest.raises(queue.Empty):
        requests.get_nowait()
