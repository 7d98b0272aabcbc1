"""LibreTranslate's ``GET /frontend/settings`` (what its web page and clients ask first) and ``GET /spec``
(its API document's path; here the same OpenAPI document as ``/openapi.json``). Both are open: no key,
no rate limit."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from serve.catalog import Catalog
from serve.libretranslate.contract import frontend_settings
from serve.libretranslate.fields import PREFIX
from serve.libretranslate.languages import language_name

SETTINGS_PATHS = ("/frontend/settings", PREFIX + "/frontend/settings")
SPEC_PATHS = ("/spec", PREFIX + "/spec")


def default_target(catalog: Catalog) -> str:
    """English when the server translates into it (LibreTranslate's default), else the first target."""
    targets = sorted({t for ts in catalog.sources().values() for t in ts})
    return "en" if "en" in targets or not targets else targets[0]


def install_frontend(
    app: FastAPI, catalog: Catalog, char_limit: int, key_required: bool, api_keys: bool,
    suggestions: bool, files_translation: bool, file_formats: tuple[str, ...],
) -> None:  # fmt: skip
    """``keyRequired``: a request without a key is refused (``--api-key`` or ``--api-keys-required``);
    ``apiKeys``: keys are checked (``--api-keys`` or ``--api-key``)."""
    target = default_target(catalog)
    settings = frontend_settings(
        char_limit, api_keys, key_required, suggestions, files_translation, file_formats,
        target=(target, language_name(target)),
    )  # fmt: skip
    settings["keyRequired"] = key_required  # the contract asks for --api-keys too; --api-key also needs one

    async def get_settings() -> dict:
        return settings

    async def spec() -> JSONResponse:
        return JSONResponse(app.openapi())

    schema = {"type": "object", "required": list(settings), "properties": {
        "charLimit": {"type": "integer"}, "frontendTimeout": {"type": "integer"}, "apiKeys": {"type": "boolean"},
        "keyRequired": {"type": "boolean"}, "suggestions": {"type": "boolean"},
        "filesTranslation": {"type": "boolean"}, "supportedFilesFormat": {"type": "array", "items": {"type": "string"}},
        "language": {"type": "object"},
    }}  # fmt: skip
    for path in SETTINGS_PATHS:
        app.add_api_route(
            path, get_settings, methods=["GET"], include_in_schema=path == SETTINGS_PATHS[0],
            summary="LibreTranslate's /frontend/settings: limits and features, for a web page",
            responses={200: {"description": "the settings", "content": {"application/json": {"schema": schema}}}},
        )  # fmt: skip
    for path in SPEC_PATHS:
        app.add_api_route(path, spec, methods=["GET"], include_in_schema=path == SPEC_PATHS[0],
                          summary="This OpenAPI document (LibreTranslate's path for it)")  # fmt: skip
