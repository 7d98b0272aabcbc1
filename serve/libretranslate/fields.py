"""LibreTranslate's request bodies: telling them from native ones, reading them (JSON or form, with
unknown fields ignored, as LibreTranslate does) and checking their fields, before any queueing.

``LibreTranslateDispatch`` lets both APIs share ``POST /translate``: a body with ``q`` is
LibreTranslate's (the native schema forbids that field), so it is routed to ``PREFIX/translate``.
Its look at the body is the request's one parse (``serve.native.body.read_json``, kept in the
scope), which the route that takes the request reuses.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.native.body import read_json
from serve.native.schemas import Limits

PREFIX = "/libretranslate"
GATED = ("/detect", "/suggest", "/translate_file")  # and /translate, which has its own dispatch
PATHS = frozenset(
    {PREFIX + "/translate", *GATED, *(PREFIX + p for p in GATED)}
)  # rate-limited, its error shape
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class FormFields(dict):
    """Fields read from a form or a query string: every value is a string (or a list of them)."""


class LibreTranslateError(Exception):
    """A refusal, answered as ``{"error": message}`` with ``status`` (and ``headers``, e.g. Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _media(request_or_scope_type: str | None) -> str:
    return (request_or_scope_type or "").split(";")[0].strip().lower()


FORM_KEY = "seq2seq.form"  # a url-encoded body's fields in the ASGI scope, read once


def read_urlencoded(scope: Scope, body: bytes) -> FormFields:
    """A url-encoded form's fields (a repeated field as a list), parsed once per request."""
    if FORM_KEY not in scope:
        fields = FormFields()
        for key, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
            old = fields.get(key)
            fields[key] = value if old is None else [*old, value] if isinstance(old, list) else [old, value]
        scope[FORM_KEY] = fields
    return scope[FORM_KEY]


def is_libretranslate_body(scope: Scope, content_type: str | None, body: bytes) -> bool:
    """LibreTranslate's requests carry ``q``; native requests never do (it would be an unknown field)."""
    media = _media(content_type)
    if media == "application/x-www-form-urlencoded":
        return "q" in read_urlencoded(scope, body)
    if media == "multipart/form-data":
        return b'name="q"' in body
    try:
        data = read_json(scope, body)
    except ValueError:  # the route that takes it says what is wrong
        return False
    return isinstance(data, dict) and "q" in data


class LibreTranslateDispatch:
    """ASGI middleware: a ``POST /translate`` whose body is LibreTranslate's goes to ``PREFIX/translate``.

    The body is buffered (up to ``max_body`` bytes; a larger one goes on to the native route,
    which refuses it with 413) and replayed to whichever route takes it.
    """

    def __init__(self, app: ASGIApp, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/translate":
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more and size <= self.max_body:
            try:
                message = await receive()
            except HTTPException as e:  # LitServe's body-size limit (413), which wraps ``receive``
                await JSONResponse({"detail": e.detail}, e.status_code, e.headers)(scope, receive, send)
                return
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if not more and is_libretranslate_body(scope, content_type, body):
            path = PREFIX + "/translate"  # in place: the metrics outside see the route it reaches
            scope["path"], scope["raw_path"] = path, path.encode()
        replayed = {"type": "http.request", "body": body, "more_body": more}
        await self.app(scope, replay([replayed], receive), send)


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` (a body already read) first, then the client's own."""

    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed


async def read_body(request: Request) -> dict:
    """Query parameters overlaid with the JSON or form body, as LibreTranslate (Flask) reads them."""
    fields = FormFields(request.query_params)
    media = _media(request.headers.get("content-type"))
    if media == "application/x-www-form-urlencoded":
        return FormFields({**fields, **read_urlencoded(request.scope, await request.body())})
    if media in FORM_TYPES:
        form = await request.form()
        for key in form:
            values = [v for v in form.getlist(key) if isinstance(v, str)]
            if values:
                fields[key] = values[0] if len(values) == 1 else values
        return fields
    raw = await request.body()
    if not raw.strip():
        return fields
    try:
        data = read_json(request.scope, raw)
    except ValueError as e:
        raise LibreTranslateError(400, f"Invalid request: the body is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise LibreTranslateError(400, "Invalid request: the JSON body must be an object")
    return {**fields, **data}


def string_field(body: dict, name: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise LibreTranslateError(400, f"Invalid request: missing {name} parameter")
    if not isinstance(value, str):
        raise LibreTranslateError(400, f"Invalid request: {name} must be a string")
    return value


def alternatives_field(body: dict, max_beam: int) -> int:
    """An integer (a JSON number, or a form's digits); below 0 means 0, as in LibreTranslate."""
    value = body.get("alternatives", 0)
    if isinstance(body, FormFields) and isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            pass
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value >= max_beam:
        raise LibreTranslateError(
            400, f"Invalid request: alternatives must be an integer, at most {max_beam - 1}"
        )
    return max(0, value)


def key_field(body: dict) -> str | None:
    value = body.get("api_key")
    if value is not None and not isinstance(value, str):
        raise LibreTranslateError(400, "Invalid request: api_key must be a string")
    return value or None


def texts_field(body: dict, limits: Limits) -> tuple[list[str], bool]:
    """``q`` as a list, and whether it was a list."""
    q = body.get("q")
    if q is None or q == "" or q == []:
        raise LibreTranslateError(400, "Invalid request: missing q parameter")
    texts = q if isinstance(q, list) else [q]
    if not all(isinstance(t, str) for t in texts):
        raise LibreTranslateError(400, "Invalid request: q must be a string or a list of strings")
    if "" in texts:
        raise LibreTranslateError(400, "Invalid request: a text in q is empty")
    if len(texts) > limits.max_texts:
        raise LibreTranslateError(
            400, f"Invalid request: {len(texts)} texts, the limit is {limits.max_texts}"
        )
    for text in texts:
        if len(text) > limits.max_chars:
            raise LibreTranslateError(
                400, f"Invalid request: a text of {len(text)} characters, the limit is {limits.max_chars}"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise LibreTranslateError(400, "Invalid request: q is not valid Unicode") from None
    return texts, isinstance(q, list)
