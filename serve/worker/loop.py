"""The inference worker's loop: continuous batching for greedy and beam requests, batches for the rest.

Requests arrive through LitServe's own request queue and answers leave through its own transport.
Each round the loop takes requests (waiting only when nothing is decoding), hands the jobs a
stream can take (one model, no attention: the common request) to the stream of their model and
search (``serve.worker.streams``), translates the others (attention, pivots, or everything with
``continuous=False``) as one batch through ``LitAPI.predict``, runs one decoder step of every
stream, and answers each request the step its last sentence ends. LitServe's ``BatchedLoop`` runs
decode, predict and encode per batch, with no way to answer a request later than the batch it
came in, hence this loop.

Collecting a batch while nothing decodes: LitServe's ``collate_requests`` polls the queue every
millisecond until the batch is full or ``batch_timeout`` has passed, so an idle server holds every
lone request for the whole window. Here the loop blocks for the first request, takes what else is
queued, and waits out the window only while the batch is smaller than the largest of the last few
batches: with one client nothing waits; with N clients in a closed loop it waits for the N whose
answers are on their way back. The largest, not the last: one batch the window closed short must
not lower the next target, or batches ratchet down under full load.

This module and ``serve.worker.supervisor`` are the only ones that use LitServe beyond its
top-level names and ``litserve.loops``. Here that is the loop contract of litserve 0.2.19, which
``LitLoop`` documents only by example (litserve/loops/base.py, ``collate_requests``, lines 98-160):
queue items ``(response_queue_id, uid, enqueued_at, request)``, the sentinel
``_SENTINEL_VALUE``, and answers as ``LitAPIStatus``/``LoopResponseType`` with
``PickleableHTTPException`` (litserve/utils.py, lines 51-71). It sends no START notices (they tell
the HTTP process which worker took a request): one message per request fewer through LitServe's
manager-backed transport, about 0.4 ms of CPU per request (docs/benchmarks.md, "Serving"). ``tests/test_litserve_seams.py``
pins each of them.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections import deque
from queue import Empty, Queue
from typing import Any

from fastapi import HTTPException
from litserve.loops import LitLoop
from litserve.loops.base import _SENTINEL_VALUE
from litserve.utils import LitAPIStatus, LoopResponseType, PickleableHTTPException

from serve.worker.jobs import Job, Ticket

logger = logging.getLogger(__name__)

IDLE_WAIT = 1.0  # seconds one blocking get waits for a first request before the loop goes round
# while decoding, seconds between two looks at the queue: each look is a round trip to LitServe's
# manager process (about 0.1 ms of CPU on both sides), and a lone greedy sentence takes a step
# every millisecond or two, so looking every step cost more than the request itself
LOOK_S = 0.004
RECENT = 4  # batches whose largest size is the target: load that leaves costs at most RECENT windows


class StopLoop(Exception):
    """The sentinel came (the server is shutting down), or a retired worker has finished."""


class TranslationLoop(LitLoop):
    """Continuous batching plus adaptive batches (module docstring); ``continuous=False``: batches only."""

    def __init__(self, continuous: bool = True) -> None:
        super().__init__()
        self.continuous = continuous
        self.recent: deque[int] = deque([1], maxlen=RECENT)  # sizes of the last batches
        # when a worker died (time.monotonic, system-wide): the HTTP processes answered 503 to every
        # request queued before it (serve.worker.supervisor), so a worker skips those
        self.stale_before = mp.RawValue("d", 0.0)
        # the pid of a worker a reload replaced (serve.worker.reload): it takes no more requests,
        # finishes what it is decoding and exits
        self.retiring = mp.RawValue("q", 0)
        self.pid = 0  # this worker's, set when its loop starts
        self.looked_at = 0.0  # time.monotonic() of the last look at the queue while decoding

    def __call__(
        self, lit_api, device, worker_id, request_queue, transport, *args: Any, **kwargs: Any
    ) -> None:
        """LitServe's entry point in the worker: rounds until the sentinel, or until retired."""
        self.pid = os.getpid()
        try:
            while True:
                self.run(lit_api, device, worker_id, request_queue, transport)
        except StopLoop:
            logger.debug("inference worker %s (pid %s) stops", worker_id, self.pid)

    def run(
        self, lit_api, device, worker_id, request_queue: Queue, transport, *args: Any, **kwargs: Any
    ) -> None:
        """One round: take requests, translate the batch, one step of every stream, answer."""
        streamed = lit_api.streamed
        decoding = streamed.sentences()
        if self.retiring.value == self.pid:  # a reload replaced this worker: finish, take nothing
            if not decoding:
                raise StopLoop
            taken, timed_out = [], []
        elif decoding:  # take what is queued, never wait
            taken, timed_out = [], []
            if (now := time.monotonic()) - self.looked_at >= LOOK_S:
                self.looked_at = now
                room = lit_api.max_batch_size - decoding
                taken, timed_out = self.take_queued(lit_api, request_queue, transport, room)
        else:
            taken, timed_out = self.collect(lit_api, request_queue, transport)
        for ticket in timed_out:  # as LitServe's loops answer them
            self.answer(transport, ticket, error=HTTPException(504, "Request timed out"))
        batch: list[tuple[Ticket, Job]] = []
        for ticket, request in taken:
            try:
                job = lit_api.decode_request(request)
                if not (self.continuous and job.streamable):
                    batch.append((ticket, job))
                elif (done := streamed.add(ticket, job)) is not None:  # a job with no text
                    self.answer(transport, ticket, lit_api.encode_response(done))
            except Exception as e:
                self.answer(transport, ticket, error=e)
        streamed.observe()
        if batch:
            self.translate_batch(lit_api, transport, batch)
        if not streamed.sentences():
            return
        try:
            for ticket, result in streamed.step():
                self.answer(transport, ticket, lit_api.encode_response(result))
        except Exception as e:
            logger.exception("continuous batching failed; its requests get the error")
            for ticket in streamed.abandon():
                self.answer(transport, ticket, error=e)

    # -- taking requests ---------------------------------------------------------------------
    def collect(self, lit_api, request_queue: Queue, transport) -> tuple[list, list[Ticket]]:
        """A first request (blocking up to ``IDLE_WAIT``), then the adaptive window (module docstring)."""
        taken: list[tuple[Ticket, Any]] = []
        timed_out: list[Ticket] = []
        try:
            item = request_queue.get(timeout=IDLE_WAIT)
        except Empty:
            return taken, timed_out
        self._take(item, lit_api, transport, taken, timed_out)
        # from now, not from the first request's arrival: requests that queued while the last batch
        # ran would otherwise close the window at once, and 16 clients settle into two alternating
        # batches of 8 (the half answered last is still on its way back when the other half goes)
        deadline = time.monotonic() + lit_api.batch_timeout
        target = min(max(self.recent), lit_api.max_batch_size)  # about how many clients wait on us
        while (count := len(taken) + len(timed_out)) < lit_api.max_batch_size:
            wait = deadline - time.monotonic() if count < target else 0.0
            try:
                item = request_queue.get(timeout=wait) if wait > 0 else request_queue.get_nowait()
            except Empty:
                break
            self._take(item, lit_api, transport, taken, timed_out)
        self.recent.append(max(1, len(taken)))
        return taken, timed_out

    def take_queued(self, lit_api, request_queue: Queue, transport, room: int) -> tuple[list, list[Ticket]]:
        """Up to ``room`` requests already in the queue, without waiting."""
        taken: list[tuple[Ticket, Any]] = []
        timed_out: list[Ticket] = []
        while len(taken) + len(timed_out) < room:
            try:
                item = request_queue.get_nowait()
            except Empty:
                break
            self._take(item, lit_api, transport, taken, timed_out)
        return taken, timed_out

    def _take(self, item: tuple, lit_api, transport, taken: list, timed_out: list[Ticket]) -> None:
        """As ``collate_requests`` does for each item, the queue-timeout check. No START notice: the
        supervisor does not need to know which worker took a request (``serve.worker.supervisor``)."""
        if item == _SENTINEL_VALUE:
            raise StopLoop
        response_queue_id, uid, enqueued_at, request = item
        if enqueued_at < self.stale_before.value:  # already answered 503: no work
            return
        timeout = lit_api.request_timeout
        if timeout not in (-1, False, None) and time.monotonic() - enqueued_at > timeout:
            timed_out.append((response_queue_id, uid))
        else:
            taken.append(((response_queue_id, uid), request))

    # -- answering ----------------------------------------------------------------------------
    def translate_batch(self, lit_api, transport, batch: list[tuple[Ticket, Job]]) -> None:
        """The jobs no stream takes, translated together; a failure answers each of them with it."""
        try:
            results = lit_api.predict([job for _, job in batch])
        except Exception as e:
            logger.exception("translating a batch failed; its requests get the error")
            for ticket, _ in batch:
                self.answer(transport, ticket, error=e)
            return
        for (ticket, _), result in zip(batch, results, strict=True):
            self.answer(transport, ticket, lit_api.encode_response(result))

    def answer(self, transport, ticket: Ticket, response: Any = None, error: Exception | None = None) -> None:
        """A response, or an error as LitServe's loops send it (an HTTPException keeps its status,
        anything else becomes its 500)."""
        response_queue_id, uid = ticket
        if isinstance(error, HTTPException):
            error_response = PickleableHTTPException.from_exception(error)
            self.put_response(
                transport,
                response_queue_id,
                uid,
                error_response,
                LitAPIStatus.ERROR,
                LoopResponseType.REGULAR,
            )
        elif error is not None:
            self.put_error_response(transport, response_queue_id, uid, error, LoopResponseType.REGULAR)
        else:
            self.put_response(
                transport, response_queue_id, uid, response, LitAPIStatus.OK, LoopResponseType.REGULAR
            )
