"""Document translation for ``/translate_file``: pure functions over bytes and a batch translate callable.

    doc = parse_document(data, "letter.docx", Limits(max_bytes=..., max_chars=...))  # FileError -> 400
    doc.texts, doc.chars, doc.sample()       # what will be translated, its cost, text for detection
    out = doc.render(translate(doc.texts))   # same layout, translated text

``translate_document`` does both steps with a sync callable; an async route can call ``parse_document``,
await its own translation of ``unique_texts(doc)`` and call ``render_unique``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from serve.files.docxdoc import parse_docx
from serve.files.errors import FileTooLarge, UnsupportedFileType
from serve.files.htmldoc import parse_html
from serve.files.plain import Document, parse_srt, parse_txt

Translate = Callable[[list[str]], list[str]]
PARSERS: dict[str, Callable[..., Document]] = {".txt": parse_txt, ".html": parse_html, ".srt": parse_srt}
SUPPORTED_EXTENSIONS = (".txt", ".html", ".srt", ".docx")  # LibreTranslate's order, less what we lack
MAX_BYTES = 10 * 2**20
MAX_UNPACKED_BYTES = 100 * 2**20


@dataclass(frozen=True)
class Limits:
    """``max_bytes``: the upload; ``max_chars``: the text to translate (-1: none, LibreTranslate's spelling);
    ``max_unpacked_bytes``: a .docx once unzipped."""

    max_bytes: int = MAX_BYTES
    max_chars: int = -1
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES


def extension(filename: str) -> str:
    """The supported extension of ``filename`` (case-insensitive), else UnsupportedFileType."""
    ext = os.path.splitext(filename or "")[1].lower()
    if ext not in SUPPORTED_EXTENSIONS:
        shown = ext or "no extension"
        raise UnsupportedFileType(
            f"Invalid request: file format not supported ({shown}; supported: {', '.join(SUPPORTED_EXTENSIONS)})"
        )
    return ext


def parse_document(data: bytes, filename: str, limits: Limits = Limits()) -> Document:  # noqa: B008 (frozen)
    """The document's texts and renderer; UnsupportedFileType, FileTooLarge or CorruptFile (all FileError)."""
    ext = extension(filename)
    if len(data) > limits.max_bytes >= 0:
        raise FileTooLarge(
            f"Invalid request: the file ({len(data)} bytes) exceeds the limit ({limits.max_bytes})"
        )
    if ext == ".docx":
        doc = parse_docx(data, limits.max_unpacked_bytes)
    else:
        doc = PARSERS[ext](data)
    if doc.chars > limits.max_chars >= 0:
        raise FileTooLarge(
            f"Invalid request: the file's text ({doc.chars} characters) exceeds the limit ({limits.max_chars})"
        )
    return doc


def unique_texts(doc: Document) -> list[str]:
    """The document's texts once each, in first-seen order: a repeated header is translated once."""
    return list(dict.fromkeys(doc.texts))


def render_unique(doc: Document, unique: list[str], translations: list[str]) -> bytes:
    """Render from the translations of ``unique_texts(doc)``."""
    if len(translations) != len(unique):
        raise ValueError(f"{len(translations)} translations for {len(unique)} texts")
    table = dict(zip(unique, translations, strict=True))
    return doc.render([table[t] for t in doc.texts])


def translate_document(data: bytes, filename: str, translate: Translate, limits: Limits = Limits()) -> bytes:  # noqa: B008
    """The translated document (same format); ``translate`` gets each distinct text once, in one batch."""
    doc = parse_document(data, filename, limits)
    unique = unique_texts(doc)
    return render_unique(doc, unique, list(translate(unique)) if unique else [])


def request_cost(chars: int, char_limit: int) -> int:
    """Requests a file counts for with a per-request char limit: LibreTranslate's ``max(1, int(n / limit))``
    (it takes n from the upload's bytes; pass ``doc.chars``, the text actually translated)."""
    return max(1, int(chars / char_limit)) if char_limit > 0 else 1
