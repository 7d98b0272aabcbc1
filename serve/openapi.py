"""An OpenAPI document that tells the truth about every status and body the server answers.

FastAPI lists only 200 and 422 (with its own error shape) for a POST route and describes LitServe's
plain-text ``/health`` as JSON. ``document`` wraps ``app.openapi`` and adds, from the
routes themselves: for the routes LitServe serves through inference workers 400, 413, 415, our 422
shape, 503 and 504; 401 for every route that checks the API key (when one is set); 429 on the
rate-limited routes (with ``--req-limit``); and the plain-text bodies. Routes added with their own error documentation (LibreTranslate's) keep it, and
the root ``/translate``, which also takes LibreTranslate's bodies (``serve.libretranslate.fields``),
gets theirs as alternatives. The request models describe themselves (``serve.native.schemas``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.libretranslate.fields import PATHS as LIBRETRANSLATE_PATHS
from serve.libretranslate.fields import PREFIX
from serve.libretranslate.schema import ERROR
from serve.worker.api import OPEN_PATHS
from serve.worker.supervisor import RETRY_AFTER_S


class ErrorMessage(BaseModel):
    detail: str = Field(description="what went wrong, for a person to read")


class ValidationProblem(BaseModel):
    loc: list[str] = Field(description='where: ["body", field, index...]')
    msg: str
    type: str = Field(description="pydantic's error type, e.g. string_type, value_error")


class ValidationErrors(BaseModel):
    detail: list[ValidationProblem]
    message: str = Field(description="all problems in one line")


def _json(model: type[BaseModel], description: str, headers: dict | None = None) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }
    if headers:
        response["headers"] = headers
    return response


def _text(description: str, example: str, media_type: str = "text/plain") -> dict:
    return {
        "description": description,
        "content": {media_type: {"schema": {"type": "string", "example": example}}},
    }


BODY_ERRORS = {
    "400": _json(ErrorMessage, "the body is not UTF-8 encoded JSON"),
    "413": _json(ErrorMessage, "the body is larger than the server accepts"),
    "415": _json(ErrorMessage, "the body was not sent as Content-Type: application/json"),
    "422": _json(ValidationErrors, "the JSON does not fit the request schema or a limit"),
}
WORKER_ERRORS = {
    "503": _json(
        ErrorMessage,
        "the inference worker died while translating (it is being restarted): retry",
        headers={
            "Retry-After": {"description": "seconds", "schema": {"type": "integer", "example": RETRY_AFTER_S}}
        },
    ),
    "504": _json(ErrorMessage, "the request waited in the queue longer than the server's --timeout"),
}
UNAUTHORIZED = {"401": _json(ErrorMessage, "missing or wrong X-API-Key header")}
RETRY_AFTER = {
    "Retry-After": {"description": "seconds until the client's window ends", "schema": {"type": "integer"}}
}
LIMITED = "more requests from this client address this minute than the server's --req-limit"
TOO_MANY = {"429": _json(ErrorMessage, LIMITED, headers=RETRY_AFTER)}
TOO_MANY_LIBRETRANSLATE = {  # {"error": "Slowdown: 3 per 1 minute"}, as LibreTranslate answers
    "429": {
        "description": LIMITED,
        "headers": RETRY_AFTER,
        "content": {"application/json": {"schema": ERROR}},
    }
}
PLAIN = {  # LitServe's health route and /metrics answer text
    "/health": {
        "200": _text("every inference worker is ready", "ok"),
        "503": _text("an inference worker is starting or restarting", "not ready"),
    },
    "/metrics": {
        "200": _text(
            "Prometheus text format (seq2seq_* metrics)",
            "seq2seq_texts_translated_total 42.0",
            "text/plain; version=0.0.4; charset=utf-8",
        )
    },
}
INFO_SCHEMA = {
    "type": "object",
    "required": ["model", "server"],
    "properties": {"model": {"type": "object"}, "server": {"type": "object"}},
}
INFO = {
    "200": {
        "description": "model metadata and server settings",
        "content": {"application/json": {"schema": INFO_SCHEMA}},
    }
}


class PlainTextDefault:
    """LitServe answers ``/health`` with no Content-Type: label it text/plain, as documented."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_typed(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if not any(name.lower() == b"content-type" for name, _ in headers):
                    message = {
                        **message,
                        "headers": [*headers, (b"content-type", b"text/plain; charset=utf-8")],
                    }
            await send(message)

        await self.app(scope, receive, send_typed if scope["type"] == "http" else send)


def _either(native: dict[str, Any], libre: dict[str, Any]) -> None:
    """The root ``POST /translate`` answers a body with ``q`` as LibreTranslate's route does: document
    both requests, and each status as either route's body (idempotent)."""
    content = native["requestBody"]["content"]
    for media, body in libre["requestBody"]["content"].items():
        mine = content.setdefault(media, {"schema": body["schema"]})
        if mine["schema"] is not body["schema"] and "anyOf" not in mine["schema"]:
            mine["schema"] = {"anyOf": [mine["schema"], body["schema"]]}
    responses = native["responses"]
    for status, response in libre["responses"].items():
        if status not in responses:
            responses[status] = copy.deepcopy(response)  # a copy: patching ours must not change theirs
            continue
        if responses[status] == response:  # the copy an earlier call made
            continue
        schema = response["content"]["application/json"]["schema"]
        ours = responses[status].setdefault("content", {}).setdefault("application/json", {})
        if "anyOf" not in ours.get("schema", {}):
            ours["schema"] = {"anyOf": [ours.get("schema", {}), schema]}
            responses[status]["description"] += "; LibreTranslate's: " + response["description"]


def document(
    app: FastAPI, worker_paths: Iterable[str], authorize: Callable | None, rate_limited: bool = False
) -> None:
    """Patch the document ``app`` serves (before it starts); ``authorize``: the dependency that checks
    the API key, if one is set; ``rate_limited``: whether ``--req-limit`` is on (429)."""
    worker_paths = set(worker_paths)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI caches it; the patch below is idempotent
        keyed = {
            route.path
            for route in app.routes
            if authorize is not None
            and route.path not in OPEN_PATHS  # the key check lets these through
            and isinstance(route, APIRoute)
            and any(d.call == authorize for d in route.dependant.dependencies)
        }
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        _, ours = models_json_schema(
            [(m, "serialization") for m in (ErrorMessage, ValidationErrors)],
            ref_template="#/components/schemas/{model}",
        )
        components.update(ours["$defs"])
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if path in PLAIN:
                    responses.update(PLAIN[path])
                if path == "/info":
                    responses.update(INFO)
                if path in worker_paths:  # LitServe's routes: FastAPI validates the body, workers answer
                    responses.update(BODY_ERRORS | WORKER_ERRORS)
                if path in keyed:
                    responses.update(UNAUTHORIZED)
                if rate_limited and path in worker_paths | LIBRETRANSLATE_PATHS:
                    responses.update(TOO_MANY if path in worker_paths else TOO_MANY_LIBRETRANSLATE)
        if "/translate" in schema["paths"] and PREFIX + "/translate" in schema["paths"]:
            _either(schema["paths"]["/translate"]["post"], schema["paths"][PREFIX + "/translate"]["post"])
        return schema

    app.openapi = openapi
    app.add_middleware(PlainTextDefault)
