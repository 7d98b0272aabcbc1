"""LibreTranslate 1.9.6's contract for ``/suggest``, ``/translate_file``, ``/download_file``,
``/frontend/settings``, ``/detect`` (list ``q``) and ``/spec``, as read in its ``libretranslate/app.py``
(and argos-translate-files for file names): field names, messages, status codes, answer shapes.

Errors are ``{"error": message}``. Where LibreTranslate answers 500 for a client's mistake (a corrupt
document, a missing download) we answer 4xx; ``LT_STATUS`` records what it does. The routes that use
it are in ``suggest``, ``files_routes``, ``frontend`` and ``routes`` (``/detect``).
"""

from __future__ import annotations

import mimetypes
import os
import unicodedata
from collections.abc import Mapping, Sequence
from urllib.parse import quote

SUGGEST_FIELDS = ("q", "s", "source", "target")  # JSON or form; LibreTranslate checks no key there (we do)
TRANSLATE_FILE_FIELDS = ("file", "source", "target", "api_key")  # multipart/form-data; source may be "auto"
DETECT_FIELDS = ("q", "api_key")  # q: a string or a list of strings
LT_FILE_FORMATS = (".txt", ".odt", ".odp", ".docx", ".pptx", ".epub", ".html", ".srt", ".pdf")
FILE_TTL = 1800  # seconds: LibreTranslate deletes files older than this, sweeping every 30 minutes
DETECT_SAMPLE = 4096  # characters of a file's text used to detect its language with source "auto"
RATE_LIMIT_EXEMPT = ("/", "/languages", "/health", "/frontend/settings", "/spec", "/metrics", "/js/app.js")

MISSING = "Invalid request: missing {name} parameter"
EMPTY_FILE = "Invalid request: empty file"  # unreachable there: a nameless upload is already "missing file"
FORMAT_NOT_SUPPORTED = "Invalid request: file format not supported"
NOT_SUPPORTED = "{lang} is not supported"
FILES_DISABLED = "Files translation are disabled on this server."
SUGGESTIONS_DISABLED = "Suggestions are disabled on this server."
INVALID_FILENAME = "Invalid filename"
INVALID_JSON = "Invalid JSON format"

# (route, condition) -> LibreTranslate's status code
LT_STATUS = {
    ("/suggest", "ok"): 200,  # {"success": true}
    ("/suggest", "disabled"): 403,
    ("/suggest", "missing field"): 400,
    ("/translate_file", "ok"): 200,  # {"translatedFileUrl": ...}
    ("/translate_file", "disabled"): 403,
    ("/translate_file", "missing field or bad format or language"): 400,
    ("/translate_file", "error while translating (e.g. corrupt file)"): 500,
    ("/download_file", "ok"): 200,  # the bytes, Content-Disposition: attachment
    ("/download_file", "disabled"): 400,  # 400 there, not 403
    ("/download_file", "path outside the folder"): 400,
    ("/download_file", "unknown or expired name"): 500,  # an unhandled FileNotFoundError
    ("/detect", "missing q"): 400,
    ("/frontend/settings", "ok"): 200,
    ("/spec", "ok"): 200,
}


class ContractError(ValueError):
    """A request LibreTranslate refuses: ``status`` and the ``{"error": ...}`` message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    def body(self) -> dict:
        return {"error": str(self)}


def suggest_fields(body: Mapping, enabled: bool) -> tuple[str, str, str, str]:
    """``/suggest``'s (q, s, source, target), checked in LibreTranslate's order."""
    if not enabled:
        raise ContractError(403, SUGGESTIONS_DISABLED)
    values = tuple(body.get(name) for name in SUGGEST_FIELDS)
    for name, value in zip(SUGGEST_FIELDS, values, strict=True):
        if not value:
            raise ContractError(400, MISSING.format(name=name))
    return values  # type: ignore[return-value]


def translate_file_fields(
    form: Mapping, filename: str | None, enabled: bool, formats: Sequence[str]
) -> tuple[str, str, str]:
    """``/translate_file``'s (filename, source, target), checked in LibreTranslate's order; ``filename``
    is the upload's (None when there is no ``file`` part). Languages are the caller's to check next:
    ``NOT_SUPPORTED`` (400) for an unknown source (other than ``auto``), then target."""
    if not enabled:
        raise ContractError(403, FILES_DISABLED)
    if not filename:
        raise ContractError(400, MISSING.format(name="file"))
    for name in ("source", "target"):
        if not form.get(name):
            raise ContractError(400, MISSING.format(name=name))
    if os.path.splitext(filename)[1].lower() not in formats:  # LibreTranslate: case-sensitive
        raise ContractError(400, FORMAT_NOT_SUPPORTED)
    return filename, form["source"], form["target"]


def download_url(base_url: str, name: str) -> str:
    """``translatedFileUrl``: the server's external base URL (with any prefix) + ``/download_file/<name>``."""
    return f"{base_url.rstrip('/')}/download_file/{name}"


def download_headers(download_name: str) -> dict[str, str]:
    """Werkzeug's ``send_file(as_attachment=True)`` headers: the type guessed from the name (text types
    in UTF-8), ``filename*`` (RFC 5987) beside an ASCII ``filename`` when the name is not ASCII."""
    mime = mimetypes.guess_type(download_name)[0] or "application/octet-stream"
    if mime.startswith("text/"):
        mime += "; charset=utf-8"
    try:
        download_name.encode("ascii")
        disposition = f"attachment; filename={download_name}"
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", download_name).encode("ascii", "ignore").decode("ascii")
        quoted = quote(download_name, safe="!#$&+-.^_`|~")
        disposition = f"attachment; filename={simple}; filename*=UTF-8''{quoted}"
    return {"Content-Type": mime, "Content-Disposition": disposition}


def frontend_settings(
    char_limit: int,
    api_keys: bool,
    require_api_key_origin: bool,
    suggestions: bool,
    files_translation: bool,
    supported_files_format: Sequence[str],
    source: tuple[str, str] = ("auto", "Auto Detect"),
    target: tuple[str, str] = ("en", "English"),
    frontend_timeout: int = 500,
) -> dict:
    """``GET /frontend/settings``. ``keyRequired`` is only ``--api-keys`` with ``--require-api-key-origin``
    there (not ``--under-attack`` nor ``--require-api-key-secret``); ``charLimit`` is the server's, not a key's."""
    return {
        "charLimit": char_limit,
        "frontendTimeout": frontend_timeout,
        "apiKeys": api_keys,
        "keyRequired": bool(api_keys and require_api_key_origin),
        "suggestions": suggestions,
        "filesTranslation": files_translation,
        "supportedFilesFormat": list(supported_files_format) if files_translation else [],
        "language": {
            "source": {"code": source[0], "name": source[1]},
            "target": {"code": target[0], "name": target[1]},
        },
    }


def merge_detections(
    texts: Sequence[str], detections: Sequence[Sequence[tuple[str, float]]], top: int = 3
) -> list[dict]:
    """``/detect`` with a list ``q``: ONE list for all texts, as LibreTranslate's ``detect_languages``.

    Each text contributes its ``top`` candidates weighted by its length; a language found for several
    texts gets their mean confidence and summed length; the list is sorted by confidence x length share.
    """
    confidences: dict[str, list[float]] = {}
    lengths: dict[str, int] = {}
    total = 0  # LibreTranslate sums the length of each candidate's text, once per candidate
    for text, found in zip(texts, detections, strict=True):
        for code, confidence in list(found)[:top]:
            confidences.setdefault(code, []).append(float(confidence))
            lengths[code] = lengths.get(code, 0) + len(text)
            total += len(text)
    if not confidences:
        return [{"confidence": 0.0, "language": "en"}]
    mean = {code: sum(c) / len(c) for code, c in confidences.items()}
    ranked = sorted(mean, key=lambda c: 0 if total == 0 else mean[c] * lengths[c] / total, reverse=True)
    return [{"confidence": mean[c], "language": c} for c in ranked]
