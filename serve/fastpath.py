"""The native ``POST /translate``, when well formed, without FastAPI's routing and dependency solving.

For a lone request on this machine the HTTP process spent about 2 ms of CPU on ``/translate``
against 0.4 ms on ``/health``; a third of it was FastAPI's own work per request (routing,
dependency solving, body parsing, validating the response it was handed; cProfile and /proc),
in a 3 ms budget for all of HTTP. ``FastTranslate`` is the innermost middleware, so the rate
limit, metrics, logs, body-size limits and gzip still see every request. It takes a request only
when it can answer exactly as FastAPI would: a JSON body (by its Content-Type) that
``TranslateRequest`` validates. It checks the API key with the route's own dependency, hands the
request to LitServe's own handler (the one the route calls), and writes the answer as FastAPI
does (pydantic's JSON, same bytes, tested). Everything else, other routes, other content types
and bodies that do not validate, goes on to FastAPI with the body replayed, so every error keeps
FastAPI's answer; errors raised here go to the app's own HTTP error handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fastapi import HTTPException, Request
from litserve import LitServer
from litserve.server import RegularRequestHandler
from pydantic import ValidationError
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.api import TranslatorAPI, _is_json, http_error
from serve.ltbody import replay
from serve.schemas import TranslateRequest, TranslateResponse


class FastTranslate:
    """ASGI middleware answering well-formed native translate requests (module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        route: Any,
        handle: Callable[[TranslateRequest], Awaitable[TranslateResponse]],
        authorize: Callable[[Request], Awaitable[None]],
    ) -> None:
        self.app, self.path, self.route = app, path, route  # the route labels the request's metrics
        self.handle, self.authorize = handle, authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if not _is_json(headers.get(b"content-type", b"").decode("latin-1")):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        try:
            messages = await _read(receive)  # a body over the size limit raises 413 here
            request = None
            if messages[-1]["type"] == "http.request":  # else the client went away
                try:
                    request = TranslateRequest.model_validate_json(
                        b"".join(m.get("body", b"") for m in messages)
                    )
                except ValidationError:
                    pass
            if request is not None:
                await self.authorize(Request(scope))
                response = await self.handle(request)
        except HTTPException as e:  # as the app's exception middleware answers it
            await (await http_error(Request(scope), e))(scope, receive, send)
            return
        if request is None:  # FastAPI answers it, in its own words
            await self.app(scope, replay(messages, receive), send)
            return
        body = response.__pydantic_serializer__.to_json(response)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _read(receive: Receive) -> list[Message]:
    """The request's messages up to the end of its body (or to a disconnect)."""
    messages = [await receive()]
    while messages[-1]["type"] == "http.request" and messages[-1].get("more_body"):
        messages.append(await receive())
    return messages


def install_fast_path(server: LitServer, lit_api: TranslatorAPI) -> None:
    """The innermost middleware (inside the rate limit and metrics); before the app starts."""
    route = next(r for r in server.app.routes if getattr(r, "path", None) == lit_api.api_path)
    handler = RegularRequestHandler(lit_api, server)  # what LitServe's route calls
    server.app.user_middleware.append(
        Middleware(
            FastTranslate,
            path=lit_api.api_path,
            route=route,
            handle=partial(handler.handle_request, request_type=TranslateRequest),
            authorize=lit_api.authorize,
        )
    )
