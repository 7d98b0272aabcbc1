"""Continuous batching's bookkeeping: the jobs being decoded step by step, one stream per model and
search, and each job's finished sentences.

A stream (``GreedyStream``, ``BeamStream``: ``seq2seq/stream.py``, ``seq2seq/beam_stream.py``)
takes sentences at any step and gives back the ones that ended; ``StreamedJobs`` maps them back to
their jobs and hands a job's result over the step its last sentence ends.

Greedy steps run on one torch thread fewer than the worker has (one on 2 cores). In-process, a
second thread speeds a batch of 16 greedy sentences up by a fifth to a quarter and slows a lone
one; in the server it costs more than it gives, since the HTTP processes, with a greedy answer to
send every few steps, then wait for the core (docs/benchmarks.md, "Serving"). Beam steps carry five
rows per sentence and keep every thread.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from serve.ops import metrics
from serve.worker.jobs import Job, JobResult, Ticket

if TYPE_CHECKING:
    from seq2seq.stream import Stream
    from seq2seq.translator import Translation, Translator


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
