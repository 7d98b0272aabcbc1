"""Adaptive batching in the inference worker: a lone request runs at once, load fills batches.

LitServe's ``collate_requests`` keeps collecting until the batch is full or ``batch_timeout``
has passed, polling the queue every millisecond: an idle server holds every lone request for the
whole window (10 ms by default) and spends CPU polling while it waits. ``AdaptiveBatchedLoop``
replaces only that collection step (LitServe's ``BatchedLoop`` runs the hooks as before):

- it blocks on the queue for the first request, so an idle worker sleeps;
- it takes whatever else is already queued: requests that arrived while the last batch ran;
- it waits for more, until the window closes (counted from the first request's arrival), only
  while the batch holds fewer requests than the previous one did. With one client the previous
  batch held one request, so nothing waits; with N clients in a closed loop the N requests that
  the last batch answered are on their way back, and the batch waits for them.

A LitAPI takes a custom loop (``LitAPI(loop=...)``); LitServe has no hook for the collection
policy alone, hence this subclass.
"""

from __future__ import annotations

import time
from queue import Empty, Queue

from litserve import LitAPI
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError
from litserve.loops.simple_loops import BatchedLoop
from litserve.transport.base import MessageTransport
from litserve.utils import LitAPIStatus, LoopResponseType

IDLE_WAIT = 1.0  # seconds one blocking get waits for a first request before the loop goes round


class AdaptiveBatchedLoop(BatchedLoop):
    """``BatchedLoop`` whose batch window only waits for requests that are likely to come."""

    def __init__(self) -> None:
        super().__init__()
        self.expected = 1  # size of the previous batch: about how many clients wait on this worker

    def get_batch_requests(
        self, lit_api: LitAPI, request_queue: Queue, transport: MessageTransport
    ) -> tuple[list, list]:
        """(payloads, timed-out ids) as ``litserve.loops.base.collate_requests`` returns them."""
        payloads: list[tuple] = []  # (response_queue_id, uid, request)
        timed_out: list[tuple] = []  # (response_queue_id, uid)
        try:
            item = request_queue.get(timeout=IDLE_WAIT)
        except Empty:
            return payloads, timed_out
        self._take(item, lit_api, transport, payloads, timed_out)
        deadline = item[2] + lit_api.batch_timeout  # item: (response_queue_id, uid, enqueued at, request)
        target = min(self.expected, lit_api.max_batch_size)
        while (taken := len(payloads) + len(timed_out)) < lit_api.max_batch_size:
            wait = deadline - time.monotonic() if taken < target else 0.0
            try:
                item = request_queue.get(timeout=wait) if wait > 0 else request_queue.get_nowait()
            except Empty:
                break
            self._take(item, lit_api, transport, payloads, timed_out)
        self.expected = max(1, len(payloads))
        return payloads, timed_out

    def _take(
        self, item: tuple, lit_api: LitAPI, transport: MessageTransport, payloads: list, timed_out: list
    ):
        """As ``collate_requests`` does for each request: the START notice (used by worker
        restarts), then the queue-timeout check."""
        if item == _SENTINEL_VALUE:
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
