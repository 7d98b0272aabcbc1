"""Error answers of the native API: always JSON, in FastAPI's ``{"detail": ...}`` shape, never a 500
for a client's mistake."""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


def is_json(content_type: str | None) -> bool:
    """FastAPI parses the body as JSON only with a JSON content type (none at all is not JSON)."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _problem(error: dict) -> dict:
    loc = [str(part) for part in error.get("loc", ())]
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    if error.get("type") == "json_invalid":  # loc is ("body", character offset)
        msg = f"invalid JSON at character {loc[-1]}: {error.get('ctx', {}).get('error', msg)}"
        loc = ["body"]
    return {"loc": loc, "msg": msg, "type": error.get("type", "")}


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 listing each problem (without echoing the input); 415 for a body that is not JSON."""
    content_type = request.headers.get("content-type")
    if request.method == "POST" and not is_json(content_type):
        message = f"the body must be JSON sent with Content-Type: application/json, not {content_type}"
        return JSONResponse({"detail": message}, status_code=415)
    problems = [_problem(e) for e in exc.errors()]
    summary = "; ".join(
        (f"{'.'.join(p['loc'][1:])}: " if len(p["loc"]) > 1 else "") + p["msg"] for p in problems
    )
    return JSONResponse({"detail": problems, "message": summary}, status_code=422)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's handler, with a clearer word for a body that is not UTF-8 JSON and for a 504."""
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        exc = HTTPException(400, "the body could not be parsed: it must be UTF-8 encoded JSON")
    elif exc.status_code == 504:  # LitServe's "Request timed out": it waited in the queue too long
        exc = HTTPException(504, "the request waited longer than the server's --timeout: retry later")
    return await http_exception_handler(request, exc)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Must run before the app starts (Starlette builds its middleware stack on first use)."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
