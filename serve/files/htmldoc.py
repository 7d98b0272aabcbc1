"""``.html``: the document through the service's markup path (``serve.libretranslate.markup``), tags kept byte for byte.

Each run of text between tags is one text, its inner whitespace (source line breaks and indentation)
collapsed to single spaces before translation; script, style, code, pre and ``translate="no"`` are
left alone, as for ``/translate`` with ``format: "html"``.
"""

from __future__ import annotations

from serve.files.plain import Document, decode
from serve.libretranslate import markup


def _normalize(text: str) -> str:
    return " ".join(text.split())


def parse_html(data: bytes) -> Document:
    source, bom = decode(data, ".html")
    pieces = markup.split_html(source)
    texts = [_normalize(t) for t in markup.texts_to_translate(pieces)]

    def render(translations: list[str]) -> bytes:
        table = dict(zip(texts, translations, strict=True))
        return (bom + markup.rebuild(pieces, lambda plain: table[_normalize(plain)])).encode("utf-8")

    return Document(".html", texts, render)
