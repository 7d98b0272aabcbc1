"""Prometheus metrics, summed over every process of the server, served at ``GET /metrics``.

LitServe forks several HTTP processes and spawns the inference workers, so each process records
into prometheus-client's multiprocess files and ``/metrics`` adds them up. ``serve.__main__`` sets
``PROMETHEUS_MULTIPROC_DIR`` to a fresh directory before anything imports this module; without it
(tests, scripts) the metrics simply stay in the process. The HTTP processes count requests by
route and status (a middleware, so every route is counted, present or future), the workers count
batches, texts and tokens, the main process counts worker restarts.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.ops import logs

if TYPE_CHECKING:
    from seq2seq.translator import Translation

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = Counter(
    "seq2seq_http_requests",
    "HTTP requests answered, by method, route and status",
    ["method", "path", "status"],
)
LATENCY = Histogram(
    "seq2seq_http_request_duration_seconds",
    "time from receiving a request to starting its response, by method and route",
    ["method", "path"],
    buckets=SECONDS,
)
IN_PROGRESS = Gauge(
    "seq2seq_http_requests_in_progress", "HTTP requests being handled now", multiprocess_mode="livesum"
)
QUEUE_WAIT = Histogram(
    "seq2seq_queue_wait_seconds", "time a request waited before an inference worker took it", buckets=SECONDS
)
BATCH_REQUESTS = Histogram(
    "seq2seq_batch_requests", "requests an inference worker translated together", buckets=COUNTS
)
BATCH_TEXTS = Histogram(
    "seq2seq_batch_texts", "texts an inference worker translated together", buckets=COUNTS
)
PREDICT = Histogram("seq2seq_batch_duration_seconds", "time to translate one batch", buckets=SECONDS)
TEXTS = Counter("seq2seq_texts_translated", "texts (sentences) translated, by model", ["model"])
TOKENS = Counter(
    "seq2seq_tokens_translated",
    "subword tokens translated, by model and side (source, target)",
    ["model", "side"],
)
WORKER_RESTARTS = Counter("seq2seq_worker_restarts", "inference workers restarted after they died")
RELOADS = Counter("seq2seq_reloads", "checkpoint reloads (SIGHUP, /admin/reload), by outcome", ["outcome"])
FAIL_OPEN = Counter(
    "seq2seq_rate_limit_fail_open",
    "requests let through unchecked because the rate-limit store was unreachable",
)


def count_fail_open(reason: str) -> None:
    """``serve.store.limiter.Counters``' hook: one request not counted against its limits."""
    FAIL_OPEN.inc()


def route_path(scope: Scope) -> str:
    """The route's template (``/translate``), never the raw URL: unknown paths share one label."""
    return getattr(scope.get("route"), "path", None) or "unmatched"


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route and status; with ``access_log``, also
    writes its log line (``serve.ops.logs``). Pure ASGI, one pass for both."""

    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), None

        def record(code: int) -> None:
            nonlocal status
            status = code
            method, path = scope["method"], route_path(scope)
            REQUESTS.labels(method, path, str(code)).inc()
            LATENCY.labels(method, path).observe(time.perf_counter() - start)

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start" and status is None:
                record(message["status"])  # before the body: a client that got it sees the count
            await send(message)

        watched = scope["path"] != "/metrics"  # a scrape sees the requests in progress but itself
        if watched:
            IN_PROGRESS.inc()
        with logs.request_fields() as fields:
            try:
                await self.app(scope, receive, send_and_record)
            except BaseException:
                if status is None:
                    record(500)  # Starlette's outermost handler answers 500
                raise
            finally:
                if watched:
                    IN_PROGRESS.dec()
                if self.access_log:
                    logs.log_request(scope, status or 500, time.perf_counter() - start, fields)


def metrics_endpoint(collectors: Sequence[Collector] = ()) -> Callable[[Request], Awaitable[Response]]:
    """The Prometheus text format, summed over every process that wrote metrics, and ``collectors``."""

    async def endpoint(request: Request) -> Response:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in collectors:
            registry.register(collector)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return endpoint


# -- inference workers -----------------------------------------------------------------------
def observe_queue_wait(request: Any) -> None:
    """Queue wait of a request stamped ``_received_at`` (``time.monotonic``, system-wide on Linux)
    in the HTTP process; called when a worker decodes it."""
    received = getattr(request, "_received_at", None)
    if received is not None:
        QUEUE_WAIT.observe(max(0.0, time.monotonic() - received))


def observe_batch(requests: int, texts: int, seconds: float) -> None:
    """One worker batch: how many requests and texts, and how long it took."""
    BATCH_REQUESTS.observe(requests)
    BATCH_TEXTS.observe(texts)
    PREDICT.observe(seconds)


def observe_translations(model: str, translations: Sequence[Translation]) -> None:
    """One model's share of a batch (a pivoted text counts once per model): texts, subword tokens."""
    TEXTS.labels(model).inc(len(translations))
    TOKENS.labels(model, "source").inc(sum(len(t.source_tokens) for t in translations))
    TOKENS.labels(model, "target").inc(sum(len(t.hypotheses[0].tokens) for t in translations if t.hypotheses))


def bearer_check(token: str, name: str = "metrics token") -> Callable[..., Any]:
    """``--metrics-auth-token`` (or ``--admin-token``): a dependency wanting ``Authorization: Bearer
    TOKEN`` (constant time); a 401 names the token wanted."""

    async def check(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, f"send the {name}: Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    return check


def add_metrics_route(
    app: FastAPI,
    authorize: Callable[..., Any],
    token: str | None = None,
    collectors: Sequence[Collector] = (),
) -> None:
    """``GET /metrics``, behind the API key like ``/info`` (Prometheus can send the header), or
    behind ``--metrics-auth-token`` instead when one is set; ``collectors`` add live values."""
    if token:
        authorize = bearer_check(token)
    app.add_api_route(
        "/metrics",
        metrics_endpoint(collectors),
        methods=["GET"],
        dependencies=[Depends(authorize)],
        response_class=Response,
    )
