"""API keys and rate limits in front of the translation routes, as LibreTranslate has them.

``AccessMiddleware`` reads the key (``X-API-Key`` header, or ``api_key`` in the body or the query),
looks it up in the key store (``serve.store.keys``), counts the request with
``serve.store.limiter`` (per key when one is sent, else per client address; a batch of N texts
costs N) and refuses banned addresses (``--req-flood-threshold``), all before any work is done; a route
whose cost shows only later (a file's characters) charges the rest through ``CHARGE_SCOPE``.
A key's own ``char_limit`` replaces ``--char-limit`` for its request (the ``Bounds`` the request
models read). Key checks fail closed (503 when the store cannot be read), limits fail open.
Answers are LibreTranslate's ``{"error": ...}`` on its routes and ``{"detail": ...}`` on the native one.
"""

from __future__ import annotations

import dataclasses

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.libretranslate.fields import read_urlencoded, replay
from serve.native.body import read_json
from serve.native.schemas import BOUND, Bound
from serve.store.connection import StoreUnavailable
from serve.store.keys_base import KeyLimits, KeyStore
from serve.store.limiter import FloodGuard, RequestLimiter

KEY_SCOPE = "seq2seq.api_key"  # the checked key of the request (None: none), for the translation cache
CHARGE_SCOPE = "seq2seq.charge"  # cost -> None or a 429: a route's further cost (a file's characters)
NEED_KEY = "Please contact the server operator to get an API key"
RETRY_STORE_S = "5"  # Retry-After when the key store cannot be read


class AccessMiddleware:
    """Keys, limits and bans for the POSTs to ``native_paths`` and ``libretranslate_paths``. It sits
    inside ``Bounds`` (it narrows them per key) and inside ``LibreTranslateDispatch`` (which sends
    LibreTranslate's bodies at ``/translate`` to its own path), so the metrics count its answers."""

    def __init__(self, app: ASGIApp, native_paths: frozenset[str], libretranslate_paths: frozenset[str],
                 limiter: RequestLimiter | None = None, keys: KeyStore | None = None,
                 keys_required: bool = False, flood: FloodGuard | None = None) -> None:  # fmt: skip
        self.app, self.limiter, self.keys, self.flood = app, limiter, keys, flood
        self.keys_required = keys_required
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
        lt = path in self.libretranslate_paths
        messages, body = await _read_all(receive)
        receive = replay(messages, receive)
        fields = await _fields(scope, body, receive)
        key = _header(scope, b"x-api-key") or _text(fields.get("api_key"))
        address = (scope.get("client") or ("",))[0] or ""
        refusal, limits = self._check_key(key, lt)
        if refusal is None and self.flood is not None and self.flood.banned(address):
            refusal = _error(
                lt, 403, FloodGuard.MESSAGE, "this address is banned for too many refused requests"
            )
        if refusal is None:
            texts = fields.get("q" if lt else "texts")
            refusal = self._charge(
                address, key, limits, lt, len(texts) if isinstance(texts, list) and texts else 1
            )
        if refusal is not None:
            _label_route(scope)
            await refusal(scope, receive, send)
            return
        scope[KEY_SCOPE] = key if limits else None
        scope[CHARGE_SCOPE] = lambda cost: self._charge(address, key, limits, lt, cost)
        token = None
        if limits is not None and limits.char_limit:
            bound = BOUND.get()
            token = BOUND.set(
                Bound(dataclasses.replace(bound.limits, max_chars=limits.char_limit), bound.catalog)
            )
        try:
            await self.app(scope, receive, send)
        finally:
            if token is not None:
                BOUND.reset(token)

    def _charge(self, address: str, key: str | None, limits: KeyLimits | None, lt: bool,
                cost: int) -> JSONResponse | None:  # fmt: skip
        """Count ``cost`` requests of the client: None, or the 429 to answer (reported to the flood guard)."""
        if self.limiter is None or cost < 1:
            return None
        verdict = self.limiter.hit(address, key if limits else None,
                                   limits.req_limit if limits else None, cost=cost)  # fmt: skip
        if verdict.allowed:
            return None
        if self.flood is not None:
            self.flood.report(address)
        who = "API key" if limits else "client address"
        return _error(lt, 429, f"Slowdown: {verdict.limit}",
                      f"too many requests: the limit is {verdict.limit} per {who}; "
                      f"retry in {verdict.retry_after} s", {"Retry-After": str(verdict.retry_after)})  # fmt: skip

    def _check_key(self, key: str | None, lt: bool) -> tuple[JSONResponse | None, KeyLimits | None]:
        """(a refusal or None, the key's limits or None). Fails closed: no answer from the store, 503."""
        if self.keys is None:
            return None, None
        if not key:
            if self.keys_required:
                return _error(lt, 400 if lt else 401, NEED_KEY, "an API key is required: send it in "
                              "the X-API-Key header"), None  # fmt: skip
            return None, None
        try:
            limits = self.keys.lookup(key)
        except StoreUnavailable as e:
            message = f"the API key cannot be checked now, retry later ({e})"
            return _error(lt, 503, message, message, {"Retry-After": RETRY_STORE_S}), None
        if limits is None:
            return _error(lt, 403, "Invalid API key", "unknown API key"), None
        return None, limits


def _error(lt: bool, status: int, lt_message: str, native_message: str,
           headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    body = {"error": lt_message} if lt else {"detail": native_message}
    return JSONResponse(body, status_code=status, headers=headers)


async def _read_all(receive: Receive) -> tuple[list[Message], bytes]:
    """The body's messages (to replay) and its bytes; LitServe's size limit raises inside ``receive``
    and the route that replays them answers 413."""
    messages, more = [], True
    while more:
        try:
            message = await receive()
        except Exception:  # the size limit's HTTPException: let the route raise it again
            break
        messages.append(message)
        if message["type"] != "http.request":
            break
        more = message.get("more_body", False)
    return messages, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")


async def _fields(scope: Scope, body: bytes, receive: Receive) -> dict:
    """The query parameters overlaid with the body's fields (JSON or form), as the routes read them;
    an unreadable body gives none (the route says what is wrong)."""
    fields: dict = dict(Request(scope).query_params)
    media = dict(scope.get("headers") or []).get(b"content-type", b"").split(b";")[0].strip().lower()
    if media == b"application/x-www-form-urlencoded":
        return {**fields, **read_urlencoded(scope, body)}
    if media == b"multipart/form-data":
        try:
            form = await Request(scope, replay([{"type": "http.request", "body": body}], receive)).form()
        except (HTTPException, ValueError):  # malformed: the route says what is wrong
            return fields
        try:
            return {**fields, **{k: form.getlist(k) if len(form.getlist(k)) > 1 else form[k] for k in form}}
        finally:
            await form.close()  # the route parses its own copy of the body
    try:
        data = read_json(scope, body) if body.strip() else {}
    except ValueError:
        return fields
    return {**fields, **data} if isinstance(data, dict) else fields


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers") or []:
        if k == name:
            return v.decode("latin-1") or None
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _label_route(scope: Scope) -> None:
    """Set ``scope["route"]`` as the router would, so that the metrics count the refusal under its route."""
    for route in getattr(scope.get("app"), "routes", ()):
        match, child = route.matches(scope)
        if match == Match.FULL:
            scope.update(child)
            return
