"""The inference worker's ends of LitServe's queues, on threads of their own.

Every get from LitServe's request queue is a round trip to its Manager process, a tenth of a
millisecond or more on two busy cores, and so was every answer before ``serve/transport.py``.
Continuous batching (``serve/continuous.py``) looks for new requests and answers some between
every two decoder steps, so on the decoding thread those waits took a good part of each 2-3 ms
step. ``Prefetcher`` moves requests from the Manager queue to a local queue, and sends each one's
START notice as it takes it (so a worker that dies still has its requests answered 503, as
``serve/lifecycle.py`` expects); ``Sender`` sends the answers. The decoding thread only touches
local queues; the two threads spend their time waiting on sockets, without the GIL.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from litserve.loops.base import _SENTINEL_VALUE
from litserve.loops.simple_loops import BatchedLoop
from litserve.transport.base import MessageTransport
from litserve.utils import LitAPIStatus, LoopResponseType

from serve.batching import IDLE_WAIT

logger = logging.getLogger(__name__)


class Prefetcher:
    """Takes up to ``limit`` requests ahead off LitServe's request queue into ``local``."""

    def __init__(self, loop: BatchedLoop, source: Any, transport: MessageTransport, limit: int) -> None:
        self.loop, self.source, self.transport = loop, source, transport
        self.local: queue.Queue = queue.Queue(maxsize=max(1, limit))
        threading.Thread(target=self._run, daemon=True, name="seq2seq-requests").start()

    def _run(self) -> None:
        while True:
            try:
                # never without a timeout: the Manager serves a get in a thread that keeps waiting
                # after a killed worker's socket is gone, and would swallow the next request
                item = self.source.get(timeout=IDLE_WAIT)
            except queue.Empty:
                continue
            except Exception:  # the Manager is gone: the server is shutting down
                item = _SENTINEL_VALUE
            self.local.put(item)  # first: the decoding thread can start while START goes out
            if item == _SENTINEL_VALUE:
                return
            # LitServe's own put_response (the loop's holds answers for the decoding thread); an
            # answer that overtakes its START is still delivered (the START is then ignored)
            BatchedLoop.put_response(
                self.loop, self.transport, item[0], item[1], (), LitAPIStatus.START, LoopResponseType.REGULAR
            )


class Sender(MessageTransport):
    """A transport that sends on a thread of its own, in order; ``close`` waits for the last."""

    def __init__(self, inner: MessageTransport) -> None:
        self.inner = inner
        self.bundles = getattr(inner, "bundles", False)  # whether the reader unpacks bundles
        self.pending: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True, name="seq2seq-answers")
        self.thread.start()

    def send(self, item: Any, consumer_id: int) -> None:
        self.pending.put((item, consumer_id))

    async def areceive(self, consumer_id: int, timeout: float | None = None, block: bool = True) -> Any:
        raise NotImplementedError("a Sender only sends (it lives in the inference worker)")

    def _run(self) -> None:
        while (job := self.pending.get()) is not None:
            try:
                self.inner.send(*job)
            except Exception:  # the Manager is gone: the server is shutting down
                logger.debug("an answer could not be sent", exc_info=True)
                return

    def close(self, send_sentinel: bool = False) -> None:
        self.pending.put(None)
        self.thread.join(timeout=5)
