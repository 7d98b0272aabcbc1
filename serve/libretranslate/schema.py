"""The OpenAPI description of LibreTranslate's routes, exactly as ``serve.libretranslate.fields`` checks them.

The routes parse their bodies themselves (JSON or form, unknown fields ignored), so FastAPI cannot
derive the schema; it is built here from the limits and the language pairs the server was started
with, so that a body fits the schema exactly when the server accepts it (Schemathesis checks both
directions). Not expressible: valid Unicode.
"""

from __future__ import annotations

from typing import Any

from serve.catalog import Catalog, PairError
from serve.native.schemas import Limits

MEDIA_TYPES = ("application/json", "application/x-www-form-urlencoded")
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what went wrong, for a person to read"}},
}
DETECTION = {
    "type": "object",
    "required": ["language", "confidence"],
    "properties": {
        "language": {"type": "string", "description": "a source language code of the loaded models"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 100},
    },
}
TRANSLATED = {
    "type": "object",
    "required": ["translatedText"],
    "properties": {
        "translatedText": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "a string for a string q, a list for a list",
        },
        "alternatives": {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
            ],
            "description": "with alternatives > 0: further translations (duplicates dropped)",
        },
        "detectedLanguage": {
            "anyOf": [DETECTION, {"type": "array", "items": DETECTION}],
            "description": 'with source "auto"',
        },
    },
}


def _text(limits: Limits) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limits.max_chars}


def _pairs(catalog: Catalog) -> list[dict[str, Any]]:
    """(source, target) the server answers: a routed pair, a language into itself (returned as is),
    and "auto" into a target every detectable language reaches."""

    def answers(source: str, target: str) -> bool:
        if source == target:
            return True
        try:
            catalog.route(source, target)
        except PairError:
            return False
        return True

    codes = sorted(catalog.languages())
    given = [(s, t) for s in codes for t in codes if answers(s, t)]
    given += [("auto", t) for t in codes if all(answers(s, t) for s in catalog.source_models())]
    return [{"properties": {"source": {"const": s}, "target": {"const": t}}} for s, t in given]


def _example(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """A body for the docs page: the first pair that translates (not auto, not into itself)."""
    codes = [(p["properties"]["source"]["const"], p["properties"]["target"]["const"]) for p in pairs]
    source, target = next(((s, t) for s, t in codes if s not in ("auto", t)), codes[0])
    return {"q": "A dog runs.", "source": source, "target": target}


def translate_body(catalog: Catalog, limits: Limits) -> dict[str, Any]:
    pairs = _pairs(catalog)
    return {
        "type": "object",
        "required": ["q", "source", "target"],
        "properties": {
            "q": {
                "anyOf": [
                    _text(limits),
                    {"type": "array", "items": _text(limits), "minItems": 1, "maxItems": limits.max_texts},
                ],
                "description": "a text, or a list of texts",
            },
            "source": {"type": "string", "description": 'a code from GET /languages, or "auto"'},
            "target": {"type": "string", "description": "a code from GET /languages"},
            "format": {
                "type": "string",
                "enum": ["text", "html"],
                "default": "text",
                "description": "html: tags kept, the text between them translated",
            },
            "alternatives": {
                "type": "integer",
                "maximum": limits.max_beam - 1,
                "default": 0,
                "description": "this many further translations, from the n-best list (below 0 means 0)",
            },
            "api_key": {
                "type": ["string", "null"],
                "description": "the server's --api-key, if set (or the X-API-Key header)",
            },
        },
        "allOf": [{"anyOf": pairs}],
        "additionalProperties": True,  # ignored, as LibreTranslate does (clients send apiKey, secret)
        "examples": [_example(pairs)],
    }


def detect_body(limits: Limits) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["q"],
        "properties": {
            "q": _text(limits),
            "api_key": {"type": ["string", "null"], "description": "as for /translate"},
        },
        "additionalProperties": True,
        "examples": [{"q": "A dog runs."}],
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi(name: str, catalog: Catalog, limits: Limits, keyed: bool) -> dict[str, Any]:
    """``add_api_route`` arguments documenting LibreTranslate's ``translate`` or ``detect``."""
    body = translate_body(catalog, limits) if name == "translate" else detect_body(limits)
    responses = {
        "200": _json(TRANSLATED, "the translation")
        if name == "translate"
        else _json({"type": "array", "items": DETECTION}, "every source language, most likely first"),
        "400": _json(ERROR, "a body that does not fit the schema, or a limit"),
        "413": _json(ERROR, "a body over the size limit"),
    }
    if keyed:
        responses["403"] = _json(ERROR, "a missing or wrong API key (api_key field or X-API-Key header)")
    if name == "translate":  # from the inference workers, as on the native route
        responses["503"] = _json(ERROR, "the inference worker died while translating: retry")
        responses["504"] = _json(ERROR, "the request waited in the queue longer than the server's --timeout")
    return {
        "summary": f"LibreTranslate's /{name}"
        + (" (also at the root: a body with q)" if name == "translate" else ""),
        "openapi_extra": {
            "requestBody": {"required": True, "content": {m: {"schema": body} for m in MEDIA_TYPES}},
            "responses": responses,
        },
    }
