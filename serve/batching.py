"""Adaptive batching in the inference worker: a lone request runs at once, load fills batches.

LitServe's ``collate_requests`` keeps collecting until the batch is full or ``batch_timeout``
has passed, polling the queue every millisecond: an idle server holds every lone request for the
whole window (10 ms by default) and spends CPU polling while it waits. ``AdaptiveBatchedLoop``
replaces only that collection step (LitServe's ``BatchedLoop`` runs the hooks as before):

- it blocks on the queue for the first request, so an idle worker sleeps;
- it takes whatever else is already queued: requests that arrived while the last batch ran;
- it waits for more, until the window closes (counted from when the worker took the first), only
  while the batch holds fewer requests than the largest of the last few batches. With one client
  those held one request each, so nothing waits; with N clients in a closed loop the N requests
  that the last batch answered are on their way back, and the batch waits for them. The largest,
  not the last: one batch that the window closed short (a slow round trip on a busy machine) must
  not lower the next target, or batches ratchet down to a few requests each under full load.

A LitAPI takes a custom loop (``LitAPI(loop=...)``); LitServe has no hook for the collection
policy alone, hence this subclass.

The loop also sends its messages in bundles. LitServe sends each answer, and the START notice of
each request it takes (which worker restarts need), as its own item through the Manager queue of
the request's HTTP process: a round trip to the Manager process for the worker, a thread hop for
the HTTP process, 32 of each per batch of 16. ``AdaptiveBatchedLoop`` holds them and sends one
item per HTTP process when it would otherwise wait (before it blocks on the request queue, and
when the batch is answered); ``BundledTransport`` unpacks them on the HTTP side.
"""

from __future__ import annotations

import time
from collections import deque
from queue import Empty, Queue
from typing import Any

from litserve import LitAPI
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError
from litserve.loops.simple_loops import BatchedLoop
from litserve.transport.base import MessageTransport
from litserve.utils import LitAPIStatus, LoopResponseType

IDLE_WAIT = 1.0  # seconds one blocking get waits for a first request before the loop goes round
RECENT = 4  # batches whose largest size is the target: load that leaves costs at most RECENT windows
BUNDLE = "seq2seq-bundle"  # first field of a bundle; LitServe's own messages start with a request's uuid


class BundledTransport(MessageTransport):
    """LitServe's transport, which also carries bundles ``(BUNDLE, [message, ...])`` and hands their
    messages to the HTTP process's reader one at a time, as if each had come alone."""

    bundles = True  # what Outbox.flush checks: the reader unpacks bundles

    def __init__(self, inner: MessageTransport) -> None:
        self.inner = inner
        self.unpacked: dict[int, deque] = {}  # per consumer (HTTP process), messages not yet read

    def send(self, item: Any, consumer_id: int) -> None:
        self.inner.send(item, consumer_id)

    async def areceive(self, consumer_id: int, timeout: float | None = None, block: bool = True) -> Any:
        unpacked = self.unpacked.setdefault(consumer_id, deque())
        if not unpacked:
            item = await self.inner.areceive(consumer_id, timeout=timeout, block=block)
            if not (isinstance(item, tuple) and len(item) == 2 and item[0] == BUNDLE):
                return item
            unpacked.extend(item[1])
        return unpacked.popleft()

    def close(self, send_sentinel: bool = True) -> None:
        self.inner.close(send_sentinel=send_sentinel)


class Outbox:
    """Messages held for each HTTP process until ``flush``; a transport to LitServe's ``put_response``."""

    def __init__(self) -> None:
        self.held: dict[int, list] = {}

    def send(self, item: Any, consumer_id: int) -> None:
        self.held.setdefault(consumer_id, []).append(item)

    def flush(self, transport: MessageTransport) -> None:
        bundles = getattr(transport, "bundles", False)  # else the reader could not unpack them
        for consumer_id, items in self.held.items():
            if bundles and len(items) > 1:
                transport.send((BUNDLE, items), consumer_id=consumer_id)
            else:
                for item in items:
                    transport.send(item, consumer_id=consumer_id)
        self.held.clear()


class AdaptiveBatchedLoop(BatchedLoop):
    """``BatchedLoop`` whose batch window only waits for requests that are likely to come."""

    def __init__(self) -> None:
        super().__init__()
        self.recent: deque[int] = deque([1], maxlen=RECENT)  # sizes of the last batches
        self.outbox = Outbox()

    def put_response(
        self,
        transport: MessageTransport,
        response_queue_id: int,
        uid: str,
        response_data: Any,
        status: LitAPIStatus,
        response_type: LoopResponseType,
    ) -> None:
        """Held until the loop would wait (``get_batch_requests`` sends them)."""
        super().put_response(self.outbox, response_queue_id, uid, response_data, status, response_type)

    def get_batch_requests(
        self, lit_api: LitAPI, request_queue: Queue, transport: MessageTransport
    ) -> tuple[list, list]:
        """(payloads, timed-out ids) as ``litserve.loops.base.collate_requests`` returns them."""
        payloads: list[tuple] = []  # (response_queue_id, uid, request)
        timed_out: list[tuple] = []  # (response_queue_id, uid)
        self.outbox.flush(transport)  # the last batch's answers
        try:
            item = request_queue.get(timeout=IDLE_WAIT)
        except Empty:
            return payloads, timed_out
        self._take(item, lit_api, transport, payloads, timed_out)
        # from now, not from the first request's arrival: requests that queued while the last batch
        # ran would otherwise close the window at once, and 16 clients settle into two alternating
        # batches of 8 (the half answered last is still on its way back when the other half goes)
        deadline = time.monotonic() + lit_api.batch_timeout
        target = min(max(self.recent), lit_api.max_batch_size)  # about how many clients wait on us
        while (taken := len(payloads) + len(timed_out)) < lit_api.max_batch_size:
            wait = deadline - time.monotonic() if taken < target else 0.0
            try:
                if wait > 0:
                    self.outbox.flush(transport)  # START notices: the worker holds these requests
                    item = request_queue.get(timeout=wait)
                else:
                    item = request_queue.get_nowait()
            except Empty:
                break
            self._take(item, lit_api, transport, payloads, timed_out)
        self.outbox.flush(transport)
        self.recent.append(max(1, len(payloads)))
        return payloads, timed_out

    def _take(
        self, item: tuple, lit_api: LitAPI, transport: MessageTransport, payloads: list, timed_out: list
    ):
        """As ``collate_requests`` does for each request: the START notice (used by worker
        restarts), then the queue-timeout check."""
        if item == _SENTINEL_VALUE:
            self.outbox.flush(transport)
            raise _StopLoopError()
        response_queue_id, uid, enqueued_at, request = item
        self.put_response(
            transport=transport,
            response_queue_id=response_queue_id,
            uid=uid,
            response_data=(),
            status=LitAPIStatus.START,
            response_type=LoopResponseType.REGULAR,
        )
        timeout = lit_api.request_timeout
        if timeout not in (-1, False, None) and time.monotonic() - enqueued_at > timeout:
            timed_out.append((response_queue_id, uid))
        else:
            payloads.append((response_queue_id, uid, request))
