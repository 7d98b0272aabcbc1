"""Continuous batching in the inference worker: requests join a running greedy or beam search
between decoder steps and are answered the step their last sentence ends.

With batches (``AdaptiveBatchedLoop``) the worker waits for a batch to fill, decodes it to its
longest sentence, and answers all of it at once; then its clients' next requests trickle back
through HTTP one by one while the worker waits again. Measured with 16 clients, that left the
worker idle a quarter of the time. ``ContinuousLoop`` never waits while it has work: every loop
takes whatever requests are queued, hands single-model ones without attention (the common
request) to the stream of their model and search (``GreedyStream``, ``BeamStream``:
``seq2seq/stream.py``, ``seq2seq/beam_stream.py``), translates the others (attention, pivots) as a
batch at once, runs one decoder step of every stream, and answers the requests whose sentences all
ended. When nothing is decoding it collects the first batch as ``AdaptiveBatchedLoop`` does.
LitServe's loop runs decode, predict and encode per batch, with no hook for a request that is
answered later than the batch it came in; hence this loop.

Greedy steps run on one torch thread fewer than the worker has (one on 2 cores). In-process, a
second thread speeds a batch of 16 greedy sentences up by a fifth to a quarter (175-191 to 229-230
sentences/s) and slows a lone one (48-64 to 42-44); in the server it costs more than it gives,
since the HTTP processes, with a greedy answer to send every few steps, then wait for the core:
on 2 cores, 16 greedy clients got 107-113 requests/s with both threads and 129-138 with one
(``bench/load.py``; bench/HISTORY.md).
Beam steps carry five rows per sentence and keep every thread (in-process, 4 sentences:
43-48 against 59-63 sentences/s; 16 clients: 65-77 requests/s with one thread, 68-88 with two).
"""

from __future__ import annotations

import logging
import time
from queue import Empty, Queue
from typing import TYPE_CHECKING

from fastapi import HTTPException
from litserve.loops.base import _StopLoopError
from litserve.transport.base import MessageTransport
from litserve.utils import LitAPIStatus, LoopResponseType, PickleableHTTPException

from serve import metrics
from serve.batching import AdaptiveBatchedLoop

if TYPE_CHECKING:
    from seq2seq.stream import Stream
    from seq2seq.translator import Translation, Translator
    from serve.api import Job, JobResult, TranslatorAPI

logger = logging.getLogger(__name__)

Ticket = tuple[int, str]  # (response queue id, request uid): where the answer goes


class StreamedJobs:
    """The jobs being decoded continuously: one stream per model and search (greedy, or beam search
    with its beam size, n-best and length penalty), and each job's finished sentences."""

    def __init__(self, translators: dict[str, Translator], threads: int = 1) -> None:
        self.translators = translators
        self.threads = threads  # torch threads of the worker: beam steps and batches use them all
        self.greedy_threads = max(1, threads - 1)  # greedy steps leave a core to the HTTP side (above)
        self.streams: dict[tuple, Stream] = {}  # (model, beam size, n-best, alpha) -> its stream
        self.jobs: dict[Ticket, tuple[Job, list[list[int]], list[Translation | None]]] = {}
        self.admitted: list[int] = [0, 0]  # requests and texts since the last batch metric
        self.busy = 0.0  # seconds spent decoding since the last batch metric

    @staticmethod
    def accepts(job: Job) -> bool:
        """One model, no attention: what the streams decode (pivots and attention go as batches)."""
        return not job.options.return_attention and len(job.route.legs) == 1

    def sentences(self) -> int:
        return sum(len(stream) for stream in self.streams.values())

    def stream(self, job: Job) -> Stream:
        """The stream of the job's model and search, made on first use."""
        from seq2seq.beam_stream import BeamStream  # torch: only in the inference workers
        from seq2seq.stream import GreedyStream

        key, options = job.route.legs[0], job.options
        translator = self.translators[key]
        alpha = (
            translator.default_length_penalty if options.length_penalty is None else options.length_penalty
        )
        beam = options.beam_size
        search = (key, 1, 1, 0.0) if beam == 1 else (key, beam, options.n_best, alpha)
        if search not in self.streams:
            if beam == 1:
                self.streams[search] = GreedyStream(translator.model, translator.silent, translator.device)
            else:
                self.streams[search] = BeamStream(
                    translator.model, beam, options.n_best, alpha, translator.silent, translator.device
                )
        return self.streams[search]

    def add(self, ticket: Ticket, job: Job) -> JobResult | None:
        """Queue a job's sentences; a job with no text is answered at once (returned)."""
        from serve.api import JobResult

        translator = self.translators[job.route.legs[0]]
        ids = translator.src_tokenizer.encode(job.texts) if job.texts else []
        if not ids:
            return JobResult(job.route, [])
        stream = self.stream(job)
        for i, src in enumerate(ids):  # the limits translate() applies (MAX_RATIO by default)
            stream.add((ticket, i), src, max_length=job.options.max_length, min_length=job.options.min_length)
        self.jobs[ticket] = (job, ids, [None] * len(ids))
        self.admitted[0] += 1
        self.admitted[1] += len(ids)
        return None

    def step(self) -> list[tuple[Ticket, JobResult]]:
        """One decoder step of every stream; the jobs whose last sentence ended, with their results."""
        import torch

        from seq2seq.translator import Translation
        from serve.api import JobResult

        began = time.perf_counter()
        answered = []
        for search, stream in list(self.streams.items()):
            if not stream:  # made again when needed: per-request options must not pile up streams
                del self.streams[search]
                continue
            torch.set_num_threads(self.greedy_threads if search[1] == 1 else self.threads)
            translator = self.translators[search[0]]
            for (ticket, i), hypotheses in stream.step():
                job, ids, out = self.jobs[ticket]
                pieces = translator.src_tokenizer.pieces(ids[i])
                out[i] = Translation(job.texts[i], pieces, [translator.hypothesis(*h) for h in hypotheses])
                if all(t is not None for t in out):
                    del self.jobs[ticket]
                    metrics.observe_translations(search[0], out)
                    answered.append((ticket, JobResult(job.route, out)))
        torch.set_num_threads(self.threads)  # for batches (attention, pivots)
        self.busy += time.perf_counter() - began
        return answered

    def observe(self) -> None:
        """The batch metrics: requests and texts that joined since the last call, decoding time."""
        if self.admitted[0]:
            metrics.observe_batch(self.admitted[0], self.admitted[1], self.busy)
            self.admitted, self.busy = [0, 0], 0.0

    def abandon(self) -> list[Ticket]:
        """Forget every job (after an error): their tickets, to answer with the error."""
        tickets = list(self.jobs)
        self.jobs.clear()
        self.streams.clear()
        return tickets


class ContinuousLoop(AdaptiveBatchedLoop):
    """``AdaptiveBatchedLoop`` plus continuous batching of greedy and beam requests (module docstring)."""

    def run_batched_loop(
        self, lit_api: TranslatorAPI, request_queue: Queue, transport: MessageTransport, *args, **kwargs
    ) -> None:
        """LitServe's entry point for a batched loop (its own callbacks and spec are not used here)."""
        try:
            self.decode_forever(lit_api, request_queue, transport)
        finally:
            self.outbox.flush(transport)

    def decode_forever(
        self, lit_api: TranslatorAPI, request_queue: Queue, transport: MessageTransport
    ) -> None:
        """Take requests, step the streams, answer; until the sentinel (``_StopLoopError``)."""
        while True:
            streamed = lit_api.streamed
            try:
                if streamed.sentences():  # decoding: take what is queued, never wait
                    room = lit_api.max_batch_size - streamed.sentences()
                    payloads, timed_out = self.take_queued(lit_api, request_queue, transport, room)
                else:
                    payloads, timed_out = self.get_batch_requests(lit_api, request_queue, transport)
            except _StopLoopError:
                return
            for response_queue_id, uid in timed_out:  # as LitServe answers them
                timeout = HTTPException(504, "Request timed out")
                self.put_response(
                    transport, response_queue_id, uid, timeout, LitAPIStatus.ERROR, LoopResponseType.REGULAR
                )
            batch: list[tuple[Ticket, Job]] = []
            for response_queue_id, uid, request in payloads:
                ticket = (response_queue_id, uid)
                try:
                    job = lit_api.decode_request(request)
                    if not streamed.accepts(job):
                        batch.append((ticket, job))
                    elif (done := streamed.add(ticket, job)) is not None:
                        self.answer(transport, ticket, lit_api.encode_response(done))
                except Exception as e:
                    self.answer(transport, ticket, None, e)
            streamed.observe()
            if batch:
                self.translate_batch(lit_api, transport, batch)
            try:
                for ticket, result in streamed.step():
                    self.answer(transport, ticket, lit_api.encode_response(result))
            except Exception as e:
                logger.exception("continuous batching failed; its requests get the error")
                for ticket in streamed.abandon():
                    self.answer(transport, ticket, None, e)

    def take_queued(
        self, lit_api: TranslatorAPI, request_queue: Queue, transport: MessageTransport, room: int
    ) -> tuple[list, list]:
        """Up to ``room`` requests already in the queue, without waiting (answers go out first)."""
        payloads: list[tuple] = []
        timed_out: list[tuple] = []
        self.outbox.flush(transport)
        while len(payloads) + len(timed_out) < room:
            try:
                item = request_queue.get_nowait()
            except Empty:
                break
            self._take(item, lit_api, transport, payloads, timed_out)
        if payloads or timed_out:  # their START notices
            self.outbox.flush(transport)
        return payloads, timed_out

    def translate_batch(
        self, lit_api: TranslatorAPI, transport: MessageTransport, batch: list[tuple[Ticket, Job]]
    ) -> None:
        """The jobs a stream does not take, translated together as ``AdaptiveBatchedLoop`` does."""
        try:
            results = lit_api.translate_jobs([job for _, job in batch])
        except Exception as e:
            logger.exception("translating a batch failed; its requests get the error")
            for ticket, _ in batch:
                self.answer(transport, ticket, None, e)
            return
        for (ticket, _), result in zip(batch, results, strict=True):
            self.answer(transport, ticket, lit_api.encode_response(result))

    def answer(self, transport: MessageTransport, ticket: Ticket, response, error: Exception | None = None):
        """Send a response, or an error as LitServe's loop does (an HTTPException keeps its status)."""
        response_queue_id, uid = ticket
        if isinstance(error, HTTPException):
            response, error = PickleableHTTPException.from_exception(error), None
            status = LitAPIStatus.ERROR
        else:
            status = LitAPIStatus.OK
        if error is not None:
            self.put_error_response(transport, response_queue_id, uid, error, LoopResponseType.REGULAR)
        else:
            self.put_response(transport, response_queue_id, uid, response, status, LoopResponseType.REGULAR)
