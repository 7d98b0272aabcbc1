"""Server logs as text or as JSON (``--log-format json``): one JSON object per line, and in JSON
mode one line per HTTP request (method, path, status, texts, duration).

The request line is written by the metrics middleware (``serve.ops.metrics``, one pass for both);
the number of texts is known only once FastAPI has validated the body, so the request model
reports it with ``count_texts`` into a per-request dict held in a context variable
(validation runs inside the middleware's call). The formatter is a few lines of ``json.dumps``,
no dependency needed.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

from starlette.types import Scope

access_logger = logging.getLogger("serve.access")

_REQUEST_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("seq2seq_request_fields", default=None)


def count_texts(n: int) -> None:
    """Add ``n`` texts to the current request's log line (no-op outside a request). A LibreTranslate
    request validates several native requests: its line counts them all."""
    current = _REQUEST_FIELDS.get()
    if current is not None:
        current["texts"] = (current["texts"] or 0) + n


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...}``; request lines add their own fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(log_format: str, level: str) -> dict:
    """``dictConfig`` for our loggers, and in JSON mode also uvicorn's and LitServe's (uvicorn
    applies it again in ``LitServer.run``, so it is passed there as ``log_config``)."""
    formatter = (
        {"()": JsonFormatter}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    ours = {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
    loggers = {"serve": ours}
    if log_format == "json":
        loggers.update({name: ours for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litserve")})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "loggers": loggers,
    }


def configure(log_format: str, level: str) -> dict | None:
    """Set up logging; return the ``log_config`` for uvicorn (None: keep uvicorn's own text logs)."""
    config = logging_config(log_format, level)
    logging.config.dictConfig(config)
    return config if log_format == "json" else None


@contextmanager
def request_fields() -> Iterator[dict[str, Any]]:
    """The fields ``count_texts`` fills for the request handled inside this block."""
    fields: dict[str, Any] = {"texts": None}
    token = _REQUEST_FIELDS.set(fields)
    try:
        yield fields
    finally:
        _REQUEST_FIELDS.reset(token)


def log_request(scope: Scope, status: int, seconds: float, fields: dict[str, Any]) -> None:
    """The request's line: method, path, status, its noted fields (texts) and duration."""
    method, path = scope["method"], scope["path"]
    fields = {
        "method": method,
        "path": path,
        "status": status,
        **fields,
        "duration_ms": round(1000 * seconds, 2),
    }
    access_logger.info("%s %s %d", method, path, status, extra={"fields": fields})
