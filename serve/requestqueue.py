"""Requests from the HTTP processes to the inference workers as Unix datagrams.

LitServe's request queue lives in its Manager process: the HTTP process's ``put`` is a round
trip there that blocks its event loop, and a worker's ``get`` another round trip (measured here:
0.36 and 0.25 ms of a lone request's 3-4 ms of HTTP overhead, and a thread of its own in the
worker to keep those waits off the decoding thread). ``DatagramQueue`` stands in for that queue
(``put``, ``get``, ``get_nowait``, all LitServe and our loops call). The main process binds one
Unix datagram socket; the forked HTTP processes send each request to it as one datagram, and every
spawned worker receives on that same socket. The kernel hands each datagram, whole, to exactly one
reader, and keeps it while nobody reads: like the Manager queue, a request is nobody's until a
free worker takes it, and a worker that dies loses only what it had taken (which
``serve/lifecycle.py`` answers 503). A request the socket cannot take at once (larger than
``MAX_DATAGRAM``, or the kernel's queue of 10 datagrams is full under load) goes to the Manager
queue, as before; each worker drains that on a thread of its own.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import select
import socket
import threading
import time
from typing import Any

from litserve.loops.base import _SENTINEL_VALUE

from serve.batching import IDLE_WAIT

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 64 * 1024  # bytes; larger requests take the Manager queue


class DatagramQueue:
    """LitServe's request queue with a Unix datagram socket in front of it (module docstring)."""

    def __init__(self, fallback: Any, path: str, ahead: int = 16) -> None:
        self.fallback, self.path = fallback, path  # the Manager queue; where the socket is bound
        self.ahead = ahead  # requests a worker takes off the Manager queue before it asks for them
        self.receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.receiver.bind(path)
        self._init_process_state()

    def _init_process_state(self) -> None:
        self.receiver.setblocking(False)
        self.sender: socket.socket | None = None  # HTTP side: this process's sending socket
        self.sender_pid = 0
        self.taken: queue.Queue | None = None  # worker side: requests from the Manager queue
        self.wake_r, self.wake_w = -1, -1  # a pipe that says something is in ``taken``
        self.poller: select.poll | None = None  # waits on the socket and that pipe
        self.lock = threading.Lock()

    def __getstate__(self) -> dict:
        """What a spawned worker gets: the receiving socket itself (multiprocessing passes its fd)."""
        return {"fallback": self.fallback, "path": self.path, "ahead": self.ahead, "receiver": self.receiver}

    def __setstate__(self, state: dict) -> None:
        self.fallback, self.path, self.ahead = state["fallback"], state["path"], state["ahead"]
        self.receiver = state["receiver"]
        self._init_process_state()

    # -- HTTP side --------------------------------------------------------------------------
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Send ``item`` as a datagram; to the Manager queue if the socket cannot take it now."""
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) <= MAX_DATAGRAM:
            if self.sender_pid != os.getpid():  # one socket per process, not one inherited by fork
                self.sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.sender.setblocking(False)  # never hold up the event loop
                self.sender_pid = os.getpid()
            try:
                self.sender.sendto(data, self.path)
                return
            except OSError:  # full (EAGAIN), too large here (EMSGSIZE), or gone: the Manager queue takes it
                pass
        self.fallback.put(item, block, timeout)

    # -- worker side ------------------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """The next request, from either path; ``queue.Empty`` after ``timeout`` seconds."""
        if self.taken is None:
            self._start_drain()
        if not block and self.taken.empty():
            # the decoding loop asks between every two decoder steps, its caches cold from the step:
            # one poll, not recv's 64 KiB buffer and two exceptions (0.2 ms of a lone request)
            ready = self.poller.poll(0)
            if not ready:
                raise queue.Empty
            self._read_wakeups(ready)  # for requests already taken: or no look is quick again
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self.taken.get_nowait()
            except queue.Empty:
                pass
            try:
                return pickle.loads(self.receiver.recv(MAX_DATAGRAM))
            except BlockingIOError:  # nothing, or another worker took it first
                pass
            wait = None if deadline is None else deadline - time.monotonic()
            if not block or (wait is not None and wait <= 0):
                raise queue.Empty
            self._read_wakeups(self.poller.poll(None if wait is None else 1000 * wait))

    def _read_wakeups(self, ready: list[tuple[int, int]]) -> None:
        """Empty the drain thread's pipe if ``poll`` found it readable (``taken`` is checked anyway)."""
        if any(fd == self.wake_r for fd, _ in ready):
            os.read(self.wake_r, 4096)

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def _start_drain(self) -> None:
        with self.lock:
            if self.taken is None:
                self.wake_r, self.wake_w = os.pipe()
                os.set_blocking(self.wake_w, False)  # a full pipe wakes the reader as well as one more byte
                self.poller = select.poll()
                for fd in (self.receiver.fileno(), self.wake_r):
                    self.poller.register(fd, select.POLLIN)
                # a burst that overflowed the socket must not join one request per decoder step
                self.taken = queue.Queue(maxsize=max(1, self.ahead))
                threading.Thread(target=self._drain, daemon=True, name="seq2seq-manager-queue").start()

    def _drain(self) -> None:
        """Move requests from the Manager queue to ``taken`` as they come (up to ``ahead``)."""
        while True:
            try:
                # never without a timeout: the Manager serves a get in a thread that keeps waiting
                # after a killed worker's socket is gone, and would swallow the next request
                item = self.fallback.get(timeout=IDLE_WAIT)
            except queue.Empty:
                continue
            except Exception:  # the Manager is gone: the server is shutting down
                item = _SENTINEL_VALUE
            self.taken.put(item)
            try:
                os.write(self.wake_w, b"x")
            except BlockingIOError:  # full: the reader wakes anyway
                pass
            if item == _SENTINEL_VALUE:
                return
