"""``GET /languages``: what the server translates, in LibreTranslate's shape (one answer for both APIs).

    [{"code": "de", "name": "German", "targets": ["en", "fr"]}, ...]

Names come from Babel's CLDR data (English names), so no table of our own to keep.
"""

from __future__ import annotations

from functools import lru_cache

from fastapi import FastAPI
from pydantic import BaseModel, Field

from serve.catalog import Catalog


class Language(BaseModel):
    code: str = Field(description="ISO 639 code, as the checkpoint records it")
    name: str = Field(description="English name")
    targets: list[str] = Field(description="codes it translates into (directly or through English)")


@lru_cache(maxsize=256)
def language_name(code: str) -> str:
    """English name of a language code ("de" -> "German"); the code itself if Babel does not know it."""
    from babel import Locale, UnknownLocaleError

    try:
        return Locale.parse(code.replace("-", "_")).get_display_name("en") or code
    except (UnknownLocaleError, ValueError, TypeError):
        return code


def language_list(catalog: Catalog) -> list[Language]:
    return [
        Language(code=code, name=language_name(code), targets=targets)
        for code, targets in catalog.sources().items()
    ]


def install_languages_route(app: FastAPI, catalog: Catalog, path: str = "/languages") -> None:
    """Open like ``/health``: LibreTranslate clients (Mastodon too) ask without a key."""
    languages = language_list(catalog)

    async def get_languages() -> list[Language]:
        return languages

    app.add_api_route(
        path,
        get_languages,
        methods=["GET"],
        response_model=list[Language],
        summary="Languages and the targets each translates into (LibreTranslate's format)",
    )
