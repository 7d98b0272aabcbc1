"""``format: "html"``: translate the text between tags and keep everything else byte for byte.

The standard library's ``html.parser`` finds the events (tags, comments, declarations, text,
character references); every event that is not translatable text is copied from the source by
its offsets, so tags, attributes, entities, comments and whitespace come back exactly as sent.
The parser never raises on malformed markup (an unclosed ``<div`` ends up as text, which we
keep as is), so this is a best effort, not a 500. Text inside script, style, code, pre and
elements marked ``translate="no"`` or ``class="notranslate"`` is not translated.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.parser import HTMLParser

SKIP = frozenset({"script", "style", "code", "pre", "textarea", "noscript"})
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_WORD = re.compile(r"\w", re.UNICODE)


class _Events(HTMLParser):
    """Records where each text run starts and ends, and whether it may be translated."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=False)
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.starts: list[tuple[int, str, bool]] = []  # (offset, kind, translatable)
        self.stack: list[tuple[str, bool]] = []  # open elements: (tag, skipped)
        self.broken = False  # after a "<" the parser gave up on: the rest of that text is markup

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def _skipping(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def _mark(self, kind: str, translatable: bool = False) -> None:
        if kind in ("tag", "other"):
            self.broken = False
        self.starts.append((self._offset(), kind, translatable and not self.broken))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._mark("tag")
        if tag in VOID:
            return
        values = dict(attrs)
        skip = (
            self._skipping()
            or tag in SKIP
            or (values.get("translate") or "").lower() == "no"
            or "notranslate" in (values.get("class") or "").split()
        )
        self.stack.append((tag, skip))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._mark("tag")

    def handle_endtag(self, tag: str) -> None:
        self._mark("tag")
        for i in range(len(self.stack) - 1, -1, -1):  # close up to the matching element, if open
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        if data.startswith("<"):  # "<" that opens no complete tag: "<b", "<!--" cut short, or "a < b"
            after = self.source[self._offset() + 1 : self._offset() + 2]
            self.broken = self.broken or after.isalpha() or after in ("!", "/", "?")
        self._mark("text", not self._skipping())

    def handle_entityref(self, name: str) -> None:
        self._mark("ref", not self._skipping())

    def handle_charref(self, name: str) -> None:
        self._mark("ref", not self._skipping())

    def handle_comment(self, data: str) -> None:
        self._mark("other")

    def handle_decl(self, decl: str) -> None:
        self._mark("other")

    def handle_pi(self, data: str) -> None:
        self._mark("other")

    def unknown_decl(self, data: str) -> None:
        self._mark("other")


def split_html(source: str) -> list[tuple[str, bool]]:
    """The source cut into consecutive pieces, each (raw text, translatable); they join to ``source``.

    A translatable piece is a run of text between tags; a character reference that stands for a
    letter (``&eacute;``) stays inside its word, any other reference (``&amp;``, ``&nbsp;``) is
    kept verbatim and splits the run.
    """
    parser = _Events(source)
    parser.feed(source)
    parser.close()
    events = parser.starts + [(len(source), "end", False)]
    pieces: list[tuple[str, bool]] = []
    for (start, kind, translatable), (end, _, _) in zip(events, events[1:], strict=False):
        raw = source[start:end]
        if not raw:
            continue
        if kind == "ref" and translatable and not _WORD.fullmatch(html.unescape(raw)):
            translatable = False
        if pieces and pieces[-1][1] and translatable:
            pieces[-1] = (pieces[-1][0] + raw, True)
        else:
            pieces.append((raw, translatable))
    covered = sum(len(raw) for raw, _ in pieces)
    if covered < len(source):  # defensive: never lose bytes, whatever the parser did
        pieces.append((source[covered:], False))
    return pieces


def texts_to_translate(pieces: list[tuple[str, bool]]) -> list[str]:
    """The plain text of each translatable piece that holds a word (entities decoded, space trimmed)."""
    return [text for text in (_plain(raw) for raw, ok in pieces if ok) if text]


def _plain(raw: str) -> str:
    text = html.unescape(raw).strip()
    return text if _WORD.search(text) else ""


def rebuild(pieces: list[tuple[str, bool]], translate: Callable[[str], str]) -> str:
    """The document with each translatable piece replaced by ``translate(plain text)``, escaped, and
    its surrounding whitespace kept."""
    out = []
    for raw, ok in pieces:
        text = _plain(raw) if ok else ""
        if not text:
            out.append(raw)
            continue
        lead = raw[: len(raw) - len(raw.lstrip())]
        trail = raw[len(raw.rstrip()) :]
        out.append(lead + html.escape(translate(text), quote=False) + trail)
    return "".join(out)
