"""Kubernetes-style probes and the drain on SIGTERM.

- ``GET /livez``: 200 while the process serves HTTP, also while a worker restarts or a model loads
  (a liveness probe must not kill a pod that is about to recover).
- ``GET /readyz``: an alias of LitServe's ``/health`` (200 once the models answer).
- After SIGTERM both readiness routes answer 503 at once, while the listener still takes requests
  for ``--shutdown-delay`` seconds, so that load balancers stop sending before the server stops
  taking; in-flight requests then finish in uvicorn's graceful shutdown.

``Drain`` is a flag in shared memory, made before LitServe forks its HTTP processes: the main
process sets it, every HTTP process reads it.
"""

from __future__ import annotations

import multiprocessing as mp

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LIVE, READY, HEALTH = "/livez", "/readyz", "/health"


class Drain:
    """Set once by the main process on SIGTERM; read by the probe middleware in every HTTP process."""

    def __init__(self) -> None:
        self._flag = mp.RawValue("b", 0)

    def start(self) -> None:
        self._flag.value = 1

    @property
    def draining(self) -> bool:
        return bool(self._flag.value)


class ProbeMiddleware:
    """Answers ``/livez``, sends ``/readyz`` to ``/health``, and both readiness routes 503 while draining.
    Outside the key check and the metrics' route labels: probes need no key."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app, self.drain = app, drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            if path == LIVE:
                await PlainTextResponse("ok")(scope, receive, send)
                return
            if path in (READY, HEALTH):
                if self.drain.draining:
                    await PlainTextResponse("shutting down", status_code=503)(scope, receive, send)
                    return
                scope["path"], scope["raw_path"] = HEALTH, HEALTH.encode()
        await self.app(scope, receive, send)
