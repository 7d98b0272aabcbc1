"""One JSON reader for every route that reads a body: depth-safe, and run once per request.

``json.loads`` (FastAPI's and Starlette's parser) recurses once per nesting level, so a body of
100,000 ``[`` raises ``RecursionError``, which is not a ``ValueError``: code that sniffs a body
with it answers 500. pydantic-core's parser stops at 200 levels with a ``ValueError``, and is
faster on small bodies too. ``read_json`` parses a request's body with it and keeps the result in
the request's scope, so a middleware that looks at the body (``serve.libretranslate.fields``) and
the route that reads it share one parse. ``JSONRoute`` is the FastAPI route class (FastAPI's
documented custom ``APIRoute``) whose request reads its JSON that way: a body FastAPI would have
parsed with ``json.loads`` reaches FastAPI's own error path as a ``json.JSONDecodeError`` (422,
``json_invalid``) instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Scope

SCOPE_KEY = "seq2seq.json"  # the parsed body (or the JSONDecodeError) in the ASGI scope
_WHERE = re.compile(r" at line (\d+) column (\d+)$")  # where pydantic-core says it stopped


def parse_json(raw: bytes) -> Any:
    """The body's value. ``ValueError`` for a body that is not JSON: ``json.JSONDecodeError`` (invalid
    or nested too deeply), ``UnicodeDecodeError`` (not UTF-8)."""
    try:
        return pydantic_core.from_json(raw)
    except ValueError as e:
        if str(e).startswith("recursion limit exceeded"):
            where = _WHERE.search(str(e))
            pos = int(where[2]) if where else 0
            text = raw.decode("utf-8", "replace")
            raise json.JSONDecodeError("nested more than 200 levels deep", text, pos) from None
    # rare: what pydantic-core refuses but JSON allows (a lone surrogate escape, which the request
    # validators then name), and json's own words for everything else
    try:
        return json.loads(raw)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", raw.decode("utf-8", "replace"), 0) from None


def read_json(scope: Scope, raw: bytes) -> Any:
    """``parse_json(raw)``, once per request: later calls get the same value (or error) from the scope."""
    if SCOPE_KEY not in scope:
        try:
            scope[SCOPE_KEY] = parse_json(raw)
        except ValueError as e:
            scope[SCOPE_KEY] = e
    value = scope[SCOPE_KEY]
    if isinstance(value, ValueError):
        raise value
    return value


class ParsedRequest(Request):
    """A request whose ``json()`` is ``read_json``: depth-safe, and parsed at most once."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = read_json(self.scope, await self.body())
        return self._json


class JSONRoute(APIRoute):
    """FastAPI's route with ``ParsedRequest``: set as the app's ``route_class`` before routes are added."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(ParsedRequest(request.scope, request.receive))

        return route
