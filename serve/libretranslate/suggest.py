"""LibreTranslate's ``POST /suggest``: a user's better translation ``s`` of ``q``, kept for the operator
(``seq2seq-suggestions`` exports it), on only with ``--suggestions``.

Fields and answers are LibreTranslate 1.9.6's (``serve.libretranslate.contract``): JSON or form
``q``, ``s``, ``source``, ``target``; ``{"success": true}``; 403 when off, 400 for a missing field.
Unlike LibreTranslate, the route is key-checked and rate-limited like ``/translate`` (its path is in
``fields.PATHS``), ``q`` is held to the char limit and ``s`` to twice it, and a store that cannot be
written answers 503. The store (``serve.store.suggestions``: SQLite, or a Redis stream with
``--shared-storage``) is opened on first use in each HTTP process, never before LitServe forks them.
"""

from __future__ import annotations

import sqlite3

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from serve.libretranslate.contract import NOT_SUPPORTED, SUGGESTIONS_DISABLED, suggest_fields
from serve.libretranslate.fields import PREFIX, LibreTranslateError
from serve.libretranslate.routes import LibreTranslate, guard
from serve.libretranslate.schema import ERROR
from serve.native.schemas import BOUND
from serve.ops.ratelimit import KEY_SCOPE
from serve.store.limiter import client_id
from serve.store.per_process import PerProcess
from serve.store.suggestions import StoreUnavailable, SuggestionError, SuggestionStore, open_suggestions

PATHS = ("/suggest", PREFIX + "/suggest")
RETRY_AFTER_S = "5"  # when the store cannot be written


def suggestion_store(db_path: str, shared_storage: str | None) -> PerProcess[SuggestionStore]:
    """The store ``--suggestions-db-path`` or ``--shared-storage`` names, opened in each process."""
    return PerProcess(lambda: open_suggestions(db_path, shared_storage or None))


def _text(body: dict, name: str, limit: int) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise LibreTranslateError(400, f"Invalid request: {name} must be a string")
    if len(value) > limit:
        raise LibreTranslateError(
            400, f"Invalid request: {name} has {len(value)} characters, the limit is {limit}"
        )
    return value


def install_suggest(
    app: FastAPI, lt: LibreTranslate, enabled: bool, store: PerProcess[SuggestionStore] | None
) -> None:
    """``POST /suggest`` (and under ``PREFIX``); with ``enabled`` False (no ``--suggestions``) every
    request gets LibreTranslate's 403, before the body is read, and the API document leaves it out."""

    async def work(request: Request, body: dict) -> dict:
        suggest_fields(body, enabled=True)  # the missing fields, in LibreTranslate's order
        char_limit = BOUND.get().limits.max_chars  # a key's own char_limit, if any
        q, s = _text(body, "q", char_limit), _text(body, "s", 2 * char_limit)
        source, target = _text(body, "source", 64), _text(body, "target", 64)
        languages = lt.catalog.languages()
        for code in (source, target):
            if code not in languages:
                raise LibreTranslateError(400, NOT_SUPPORTED.format(lang=code))
        address = request.client.host if request.client else ""
        client = client_id(address, request.scope.get(KEY_SCOPE))  # a key's digest, never the key
        try:
            await run_in_threadpool(lambda: store.get().add(q, s, source, target, client=client))
        except SuggestionError as e:
            raise LibreTranslateError(400, str(e)) from None
        except (StoreUnavailable, sqlite3.Error, OSError) as e:
            message = f"the suggestion could not be stored, retry later ({e})"
            raise LibreTranslateError(503, message, {"Retry-After": RETRY_AFTER_S}) from None
        return {"success": True}

    guarded = guard(lt, work)

    async def suggest(request: Request) -> Response:
        if not enabled:
            return JSONResponse({"error": SUGGESTIONS_DISABLED}, status_code=403)
        return await guarded(request)

    for path in PATHS:
        app.add_api_route(
            path, suggest, methods=["POST"], include_in_schema=enabled and path == PATHS[0], **openapi(lt)
        )


def openapi(lt: LibreTranslate) -> dict:
    """``add_api_route`` arguments documenting the route."""
    limit = lt.limits.max_chars
    body = {
        "type": "object",
        "required": ["q", "s", "source", "target"],
        "properties": {
            "q": {"type": "string", "minLength": 1, "maxLength": limit, "description": "the original text"},
            "s": {
                "type": "string",
                "minLength": 1,
                "maxLength": 2 * limit,
                "description": "the better translation",
            },
            "source": {"type": "string", "enum": sorted(lt.catalog.languages())},
            "target": {"type": "string", "enum": sorted(lt.catalog.languages())},
            "api_key": {"type": ["string", "null"], "description": "as for /translate"},
        },
        "additionalProperties": True,
    }

    def answer(description: str, schema: dict = ERROR) -> dict:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    success = {"type": "object", "required": ["success"], "properties": {"success": {"const": True}}}
    responses = {
        "200": answer("stored", success),
        "400": answer("a missing or malformed field, or a language the server does not translate"),
        "403": answer("suggestions are off (no --suggestions), or a wrong API key"),
        "413": answer("a body over the size limit"),
        "503": answer("the suggestion store cannot be written now: retry"),
    }
    media = ("application/json", "application/x-www-form-urlencoded")
    return {
        "summary": "LibreTranslate's /suggest: a better translation, kept for the operator",
        "openapi_extra": {
            "requestBody": {"required": True, "content": {m: {"schema": body} for m in media}},
            "responses": responses,
        },
    }
