"""The LitServe API: batching of translation requests over every loaded model, API-key check, JSON
error handlers.

Workers are spawned processes, so ``TranslatorAPI`` holds only picklable settings and the catalog
of checkpoints; every model is loaded in ``setup`` inside each worker (all pairs share the
workers). torch is imported there too, never at module level: the HTTP processes import this
module and have no use for it. No ``from __future__ import
annotations`` here: LitServe reads the annotations of ``decode_request``/``encode_response`` as
classes for FastAPI (the other annotations are strings).
"""

import hmac
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import litserve as ls
from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve import metrics
from serve.batching import AdaptiveBatchedLoop
from serve.continuous import ContinuousLoop, StreamedJobs
from serve.models import Catalog, Route
from serve.schemas import Hypothesis, TranslateRequest, TranslateResponse, TranslationOut

if TYPE_CHECKING:
    from seq2seq.translator import Translation, Translator
    from serve.affinity import CpuPlan

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})  # liveness probes need no key


@dataclass(frozen=True)
class DecodeOptions:
    """Everything that must be equal for requests to share one ``Translator.translate`` call."""

    beam_size: int
    n_best: int
    max_length: int
    length_penalty: float | None  # None: the model's default
    return_attention: bool
    min_length: int = 1  # a non-empty text never gets an empty translation (EOS first)

    def for_pivot(self) -> "DecodeOptions":
        """The first leg of a pivot: only its best English text is needed."""
        return replace(self, n_best=1, length_penalty=None, return_attention=False)


@dataclass
class Job:
    """A decoded request: its texts, options and the model(s) that translate it."""

    texts: list[str]
    options: DecodeOptions
    route: Route


@dataclass
class JobResult:
    """A job's translations (from the last leg), and the pivot texts when there were two legs."""

    route: Route
    translations: "list[Translation]"
    pivot_texts: list[str] | None = None


class TranslatorAPI(ls.LitAPI):
    """``POST /translate``: concurrent requests for the same model and options are translated in one
    batch. Every worker holds every model of the catalog."""

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
        # a lone request is not held for the batch window (serve/batching.py); requests
        # join a running decode (serve/continuous.py)
        loop = "auto"
        if max_batch_size > 1:
            loop = ContinuousLoop() if continuous else AdaptiveBatchedLoop()
        super().__init__(
            max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/translate", loop=loop
        )
        self.catalog = catalog
        self.quantize = quantize
        self.workers = workers
        self.threads = threads  # None: share the cores between the workers
        self.cpus = cpus  # --pin-cpus: the cores of each worker (serve/affinity.py)
        self.api_key = api_key or None
        self.max_length = max_length  # when a request gives none (the spawned workers lack LIMITS)
        self.translators: dict[str, Translator] = {}
        self.streamed: StreamedJobs | None = None  # the jobs ContinuousLoop is decoding

    def setup(self, device: str) -> None:
        if self.cpus is not None:  # before torch starts any thread: they inherit the worker's cores
            self.cpus.pin_worker()
        import torch

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

    def batch(self, inputs: list[Job]) -> list[Job]:
        return inputs  # ragged texts: grouping happens in predict

    def predict(self, jobs: "list[Job] | Job") -> "list[JobResult] | JobResult":
        """One ``translate`` call per distinct model and options; results go back to their own job."""
        if isinstance(jobs, Job):  # max_batch_size == 1: LitServe passes a single input
            return self.translate_jobs([jobs])[0]
        return self.translate_jobs(jobs)

    def translate_jobs(self, jobs: list[Job]) -> list[JobResult]:
        """Leg by leg: a pivoting job joins the other jobs of its first model, then of its second."""
        assert self.translators, "setup() was not called"
        began = time.perf_counter()
        inputs = [job.texts for job in jobs]
        results = [JobResult(job.route, []) for job in jobs]
        for leg in range(max(len(job.route.legs) for job in jobs)):
            groups: dict[tuple[str, DecodeOptions], list[int]] = {}
            for i, job in enumerate(jobs):
                if leg < len(job.route.legs):
                    last = leg == len(job.route.legs) - 1
                    options = job.options if last else job.options.for_pivot()
                    groups.setdefault((job.route.legs[leg], options), []).append(i)
            for (key, options), members in groups.items():
                texts = [text for i in members for text in inputs[i]]
                translations = self.translators[key].translate(texts, **asdict(options))
                metrics.observe_translations(key, translations)
                start = 0
                for i in members:
                    mine = translations[start : start + len(inputs[i])]
                    start += len(inputs[i])
                    if leg == len(jobs[i].route.legs) - 1:
                        results[i].translations = mine
                    else:  # the next leg translates the best pivot texts
                        inputs[i] = results[i].pivot_texts = [t.text for t in mine]
        metrics.observe_batch(len(jobs), sum(len(job.texts) for job in jobs), time.perf_counter() - began)
        return results

    def unbatch(self, output: list[JobResult]) -> list[JobResult]:
        return list(output)

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


# -- errors: always JSON, never a 500 for a client's mistake -----------------------------------
def _is_json(content_type: str | None) -> bool:
    """FastAPI parses the body as JSON only with a JSON content type (none at all is not JSON)."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _problem(error: dict) -> dict:
    loc = [str(part) for part in error.get("loc", ())]
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    if error.get("type") == "json_invalid":  # loc is ("body", character offset)
        msg = f"invalid JSON at character {loc[-1]}: {error.get('ctx', {}).get('error', msg)}"
        loc = ["body"]
    return {"loc": loc, "msg": msg, "type": error.get("type", "")}


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 listing each problem (without echoing the input); 415 for a body that is not JSON."""
    content_type = request.headers.get("content-type")
    if request.method == "POST" and not _is_json(content_type):
        message = f"the body must be JSON sent with Content-Type: application/json, not {content_type}"
        return JSONResponse({"detail": message}, status_code=415)
    problems = [_problem(e) for e in exc.errors()]
    summary = "; ".join(
        (f"{'.'.join(p['loc'][1:])}: " if len(p["loc"]) > 1 else "") + p["msg"] for p in problems
    )
    return JSONResponse({"detail": problems, "message": summary}, status_code=422)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's handler, with a clearer word for a body that is not UTF-8 JSON."""
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        exc = HTTPException(400, "the body could not be parsed: it must be UTF-8 encoded JSON")
    elif exc.status_code == 504:  # LitServe's "Request timed out": it waited in the queue too long
        exc = HTTPException(504, "the request waited longer than the server's --timeout: retry later")
    return await http_exception_handler(request, exc)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Must run before the app starts (Starlette builds its middleware stack on first use)."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
