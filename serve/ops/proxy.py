"""Running behind a proxy: ``--url-prefix``, CORS (``--cors-origins``) and which peers' ``X-Forwarded-For``
is believed (``--trust-forwarded-for``, ``--forwarded-allow-ips``).

The client address comes from uvicorn's own ``ProxyHeadersMiddleware``: with ``proxy_headers`` on it
takes, from the right of ``X-Forwarded-For``, the first address that is not a trusted proxy, and
only when the peer itself is one of ``forwarded_allow_ips``; a header from any other peer is ignored.
"""

from __future__ import annotations

import argparse

from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_AT_ROOT = frozenset({"/livez", "/readyz", "/health"})  # probes need no prefix


def uvicorn_proxy_settings(args: argparse.Namespace) -> dict:
    """``uvicorn.Config`` arguments: without ``--trust-forwarded-for`` no peer is believed."""
    if not args.trust_forwarded_for:
        return {"proxy_headers": False}
    allowed = [a.strip() for a in args.forwarded_allow_ips.split(",") if a.strip()]
    return {"proxy_headers": True, "forwarded_allow_ips": allowed}


def cors_middleware(origins: str) -> tuple[type, dict]:
    """Starlette's ``CORSMiddleware`` as LibreTranslate answers browsers (default: any origin)."""
    allowed = [o.strip() for o in origins.split(",") if o.strip()] or ["*"]
    return CORSMiddleware, {
        "allow_origins": allowed,
        "allow_methods": ["GET", "POST", "OPTIONS"],
        "allow_headers": ["Content-Type", "X-API-Key", "Authorization"],
        "expose_headers": ["Retry-After"],
        "max_age": 600,
    }


class PrefixMiddleware:
    """``--url-prefix /p``: ``/p/translate`` is served as ``/translate``; other paths get 404, except the
    probes, which also answer at the root. The path itself is rewritten, not ``root_path``: the
    middlewares inside match on ``scope["path"]``."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == self.prefix or path.startswith(self.prefix + "/"):
            inner = path[len(self.prefix) :] or "/"
            scope["path"], scope["raw_path"] = inner, inner.encode()
        elif path not in OPEN_AT_ROOT:
            await JSONResponse({"detail": f"not found: every route is under {self.prefix}"}, 404)(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)
