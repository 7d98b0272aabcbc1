"""The LitServe API: ``POST /translate`` over every loaded model, and its API-key check.

Workers are spawned processes, so ``TranslatorAPI`` holds only picklable settings and the catalog
of checkpoints; every model is loaded in ``setup`` inside each worker (all pairs share the
workers). torch is imported there too, never at module level: the HTTP processes import this
module and have no use for it. No ``from __future__ import annotations`` here: LitServe reads the
annotations of ``decode_request``/``encode_response`` as classes for FastAPI.
"""

import hmac
import os
from typing import TYPE_CHECKING

import litserve as ls
from fastapi import HTTPException, Request

from serve.catalog import Catalog
from serve.native.schemas import Hypothesis, TranslateRequest, TranslateResponse, TranslationOut
from serve.ops import metrics
from serve.worker.jobs import DecodeOptions, Job, JobResult, translate_jobs
from serve.worker.loop import TranslationLoop

if TYPE_CHECKING:
    from seq2seq.translator import Translator
    from serve.worker.affinity import CpuPlan
    from serve.worker.streams import StreamedJobs

OPEN_PATHS = frozenset({"/health"})  # readiness probes need no key


class TranslatorAPI(ls.LitAPI):
    """Concurrent requests join a running decode or share a batch (``serve.worker.loop``)."""

    def __init__(
        self,
        catalog: Catalog,
        quantize: str = "none",
        workers: int = 1,
        threads: int | None = None,
        api_key: str | None = None,
        max_length: int = 256,
        max_batch_size: int = 16,
        batch_timeout: float = 0.0,
        continuous: bool = True,
        cpus: "CpuPlan | None" = None,
    ):
        super().__init__(
            max_batch_size=max_batch_size,
            batch_timeout=batch_timeout,
            api_path="/translate",
            loop=TranslationLoop(continuous=continuous),
        )
        self.catalog = catalog
        self.quantize = quantize
        self.workers = workers
        self.threads = threads  # None: share the cores between the workers
        self.cpus = cpus  # --pin-cpus: the cores of each worker (serve/worker/affinity.py)
        self.api_key = api_key or None
        self.max_length = max_length  # when a request gives none
        self.translators: dict[str, Translator] = {}
        self.streamed: StreamedJobs | None = None  # the jobs the loop is decoding continuously

    def setup(self, device: str) -> None:
        if self.cpus is not None:  # before torch starts any thread: they inherit the worker's cores
            self.cpus.pin_worker()
        import torch

        from serve.worker.streams import StreamedJobs

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = self.threads or max(1, (cores or 1) // self.workers)
        torch.set_num_threads(threads)
        # device: "cpu", or "cuda:N" when the server runs with --device cuda (or auto on a GPU machine)
        self.translators = self.catalog.load_translators(self.quantize, device)
        self.streamed = StreamedJobs(self.translators, threads)

    async def authorize(self, request: Request) -> None:
        """FastAPI dependency of every route LitServe registers; checks ``X-API-Key`` if a key is set."""
        if self.api_key is None or request.url.path in OPEN_PATHS:
            return
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: send it in the X-API-Key header")

    def decode_request(self, request: TranslateRequest) -> Job:
        metrics.observe_queue_wait(request)
        options = DecodeOptions(
            beam_size=request.beam_size,
            n_best=request.n_best,
            max_length=request.max_length or self.max_length,
            length_penalty=request.length_penalty,
            return_attention=request.return_attention,
        )
        # the HTTP process validated the pair against the same catalog: this cannot fail
        return Job(request.all_texts(), options, self.catalog.route(request.source, request.target))

    def predict(self, jobs: list[Job]) -> list[JobResult]:
        """The batch path of ``TranslationLoop``: one ``translate`` call per distinct model and options."""
        assert self.translators, "setup() was not called"
        return translate_jobs(self.translators, jobs)

    def encode_response(self, output: JobResult) -> TranslateResponse:
        items = []
        for k, t in enumerate(output.translations):
            best = t.hypotheses[0]
            items.append(
                TranslationOut(
                    text=best.text,
                    pivot_text=output.pivot_texts[k] if output.pivot_texts is not None else None,
                    score=best.score,
                    tokens=best.tokens,
                    n_best=[Hypothesis(text=h.text, score=h.score, tokens=h.tokens) for h in t.hypotheses],
                    source_tokens=t.source_tokens if best.attention is not None else None,
                    attention=best.attention,
                )
            )
        route = output.route
        return TranslateResponse(
            translations=items,
            src_lang=route.src,
            tgt_lang=route.tgt,
            pivot=route.pivot,
            model=self.catalog.names(route),
        )
