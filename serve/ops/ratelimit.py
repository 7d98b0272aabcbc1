"""LibreTranslate's ``--req-limit``: at most N translation requests per minute per client address,
counted over every HTTP process of the server.

LitServe forks several uvicorn processes from the main process, so the counters live in shared
memory made before the fork (a ``RawArray`` hash table under one ``multiprocessing.Lock``), not in
a per-process dict. No library fits: ``limits`` (behind slowapi and flask-limiter) keeps its
in-memory storage per process and shares counters only through a Redis/Memcached/MongoDB server.
Each client gets a fixed window that starts at its first request. Over the limit, a request is
answered 429 with ``Retry-After`` before any work is done: on LibreTranslate's routes with its body
``{"error": "Slowdown: 3 per 1 minute"}``, on the native route with ``{"detail": "..."}``.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing as mp
import time

from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send


class RateLimiter:
    """Fixed-window request counters per client, shared by the processes forked after ``__init__``.

    ``slots`` entries of (client hash, window start in ms, count), open addressing over ``probes``
    neighbours. When all of them hold other clients' current windows, the client shares its home
    entry: crowding can make the limit stricter, never looser.
    """

    def __init__(self, limit: int, window_s: float = 60.0, slots: int = 4096, probes: int = 8):
        if limit < 1 or window_s <= 0 or slots < 1 or probes < 1:
            raise ValueError("limit, slots and probes must be at least 1, window_s above 0")
        self.limit, self.window_s, self.slots, self.probes = limit, window_s, slots, min(probes, slots)
        self._table = mp.RawArray("q", 3 * slots)  # zeros: every entry free
        self._lock = mp.Lock()

    def describe(self) -> str:
        """As the ``limits`` library words it (LibreTranslate shows this): "3 per 1 minute"."""
        if self.window_s % 60 == 0:
            return f"{self.limit} per {self.window_s // 60:.0f} minute"
        return f"{self.limit} per {self.window_s:g} second"

    def hit(self, client: str, now: float | None = None) -> float:
        """Count one request of ``client``: 0.0 if allowed, else the seconds until its window ends
        (a refused request is not counted). ``now``: ``time.monotonic()`` (one clock system-wide)."""
        digest = hashlib.blake2b(client.encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "little", signed=True) | 1  # never 0, the free mark
        now_ms, window_ms = int((time.monotonic() if now is None else now) * 1000), int(self.window_s * 1000)
        table, home = self._table, key % self.slots
        with self._lock:
            entry = free = None
            for p in range(self.probes):
                i = 3 * ((home + p) % self.slots)
                if table[i] == key:
                    entry = i
                    break
                if free is None and (table[i] == 0 or now_ms - table[i + 1] >= window_ms):
                    free = i
            if entry is None:
                entry = free if free is not None else 3 * home
                if free is not None:
                    table[entry], table[entry + 2] = key, 0
                    table[entry + 1] = now_ms
            if now_ms - table[entry + 1] >= window_ms:  # its window is over: a new one starts
                table[entry + 1], table[entry + 2] = now_ms, 0
            if table[entry + 2] >= self.limit:
                return (table[entry + 1] + window_ms - now_ms) / 1000
            table[entry + 2] += 1
            return 0.0


class RateLimitMiddleware:
    """ASGI middleware: counts the POSTs to the translation routes per client address and answers
    429 to those over the limit, in LibreTranslate's words on its paths (``libretranslate_paths``).
    It must sit inside ``LibreTranslateDispatch`` (which sends LibreTranslate's bodies at
    ``/translate`` to its own path) and inside the metrics middleware, which then counts the 429s
    under their route."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        native_paths: frozenset[str],
        libretranslate_paths: frozenset[str],
    ) -> None:
        self.app, self.limiter = app, limiter
        self.native_paths, self.libretranslate_paths = native_paths, libretranslate_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not (path in self.native_paths or path in self.libretranslate_paths)
        ):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("",))[0] or ""
        wait = self.limiter.hit(client)
        if not wait:
            await self.app(scope, receive, send)
            return
        _label_route(scope)
        retry = str(max(1, math.ceil(wait)))
        if path in self.libretranslate_paths:
            body = {"error": f"Slowdown: {self.limiter.describe()}"}
        else:
            body = {
                "detail": f"too many requests: the limit is {self.limiter.describe()} per client "
                f"address; retry in {retry} s"
            }
        await JSONResponse(body, status_code=429, headers={"Retry-After": retry})(scope, receive, send)


def _label_route(scope: Scope) -> None:
    """Set ``scope["route"]`` as the router would, so that the metrics count the 429 under its route."""
    for route in getattr(scope.get("app"), "routes", ()):
        match, child = route.matches(scope)
        if match == Match.FULL:
            scope.update(child)
            return
