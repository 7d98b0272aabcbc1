"""``.txt`` and ``.srt``: UTF-8 text whose layout is kept and whose sentences are translated.

``.txt``: each line that holds a word is one text; its indentation, trailing space and line ending
(LF, CRLF or CR) are kept, as are blank and word-less lines ("-----"): the file keeps its lines.
``.srt``: cue numbers, timing lines and blank lines are copied byte for byte. A cue's text lines are
joined with spaces and translated as one text (a subtitle sentence often spans its lines), then broken
again into as many lines as the cue had (fewer when the translation has fewer words), of balanced length.
Formatting tags (``<i>``, ``<font color="...">``) are kept and never sent to the model: the text between
them is translated (through ``serve.libretranslate.markup``), as are leading position codes (``{\\an8}``); a tag never
straddles a line break. A UTF-8 byte order mark is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from serve.files.errors import CorruptFile
from serve.libretranslate.markup import split_html

BOM = "\ufeff"
WORD = re.compile(r"\w")
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$")
_BREAKS = re.compile(r"[\r\n]+")
_CUE_NUMBER = re.compile(r"\s*\d+\s*")
_POSITION = re.compile(r"^(?:\{\\[^}]*\})+")  # ASS override codes such as {\an8}
_TOKEN = re.compile(r"(?:<[^>]*>|\{[^}]*\}|\S)+")  # a word, its tags glued to it (spaces in tags too)
_TAGS = re.compile(r"<[^>]*>|\{[^}]*\}")
_TIMING = re.compile(r"\s*\d{1,3}:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d{1,3}:\d{2}:\d{2}[,.]\d{1,3}.*")


@dataclass
class Document:
    """Texts to translate, in document order, and how to write the document back with their translations."""

    kind: str
    texts: list[str]
    render: Callable[[list[str]], bytes]

    @property
    def chars(self) -> int:
        """The document's cost in characters: those of every text it sends to translation."""
        return sum(len(t) for t in self.texts)

    def sample(self, limit: int = 4096) -> str:
        """The start of its text, for language detection (LibreTranslate reads the first 4096 characters)."""
        return "\n".join(self.texts)[:limit]


def decode(data: bytes, kind: str) -> tuple[str, str]:
    """(text, bom): UTF-8 with an optional byte order mark, else CorruptFile naming the byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFile(f"Invalid request: the {kind} file is not UTF-8 text (byte {e.start})") from None
    return (text[1:], BOM) if text.startswith(BOM) else (text, "")


def split_lines(text: str) -> list[tuple[str, str]]:
    """Lines as (body, ending); the bodies and endings join back to ``text``."""
    lines = _LINES.findall(text)
    return [(line.rstrip("\r\n"), line[len(line.rstrip("\r\n")) :]) for line in lines]


def one_line(translation: str) -> str:
    """A translation that may not add line breaks to the layout."""
    return _BREAKS.sub(" ", translation).strip()


def parse_txt(data: bytes) -> Document:
    text, bom = decode(data, ".txt")
    lines = split_lines(text)
    slots: list[tuple[str, str, str] | None] = []  # (lead, trail + ending, body) or None for a copied line
    texts: list[str] = []
    for body, ending in lines:
        content = body.strip()
        if WORD.search(content):
            lead = body[: len(body) - len(body.lstrip())]
            slots.append((lead, body[len(body.rstrip()) :] + ending, content))
            texts.append(content)
        else:
            slots.append(None)

    def render(translations: list[str]) -> bytes:
        it = iter(translations)
        out = [bom]
        for slot, (body, ending) in zip(slots, lines, strict=True):
            out.append(body + ending if slot is None else slot[0] + one_line(next(it)) + slot[1])
        return "".join(out).encode("utf-8")

    return Document(".txt", texts, render)


def rebreak(text: str, n_lines: int) -> list[str]:
    """``text``'s words in at most ``n_lines`` lines of about equal length (each line non-empty)."""
    words = _TOKEN.findall(text)
    n = min(n_lines, len(words))
    if n <= 1:
        return [" ".join(words)]
    sizes = [len(_TAGS.sub("", w)) + 1 for w in words]  # what shows on screen: tags take no room
    total = sum(sizes)
    lines: list[str] = []
    current: list[str] = []
    position = 0
    for k, word in enumerate(words):
        current.append(word)
        position += sizes[k]
        words_left, lines_left = len(words) - k - 1, n - len(lines) - 1
        if lines_left and (position >= total * (len(lines) + 1) / n or words_left == lines_left):
            lines.append(" ".join(current))
            current = []
    lines.append(" ".join(current))
    return lines


def _cue_pieces(cue: str) -> list[tuple[str, str | None]]:
    """A cue's text cut into (raw, text to translate or None): tags and position codes are copied."""
    prefix = _POSITION.match(cue)
    pieces: list[tuple[str, str | None]] = [(prefix.group(0), None)] if prefix else []
    for raw, translatable in split_html(cue[prefix.end() if prefix else 0 :]):
        text = " ".join(raw.split())
        pieces.append((raw, text if translatable and WORD.search(text) else None))
    return pieces


def parse_srt(data: bytes) -> Document:
    text, bom = decode(data, ".srt")
    lines = split_lines(text)
    out: list[str | tuple[int, int, list]] = []  # copied text, or (first, end) line indices of a cue + pieces
    texts: list[str] = []
    i = 0
    while i < len(lines):
        body, ending = lines[i]
        if not body.strip():
            out.append(body + ending)
            i += 1
            continue
        if not _CUE_NUMBER.fullmatch(body):
            raise CorruptFile(
                f"Invalid request: .srt line {i + 1}: expected a cue number, found {body[:40]!r}"
            )
        if i + 1 >= len(lines) or not _TIMING.fullmatch(lines[i + 1][0]):
            raise CorruptFile(
                f"Invalid request: .srt line {i + 2}: expected a timing line like 00:00:01,000 --> 00:00:02,500"
            )
        out.append(body + ending + "".join(lines[i + 1]))
        first = end = i + 2
        while end < len(lines) and lines[end][0].strip():
            end += 1
        pieces = _cue_pieces(" ".join(lines[k][0].strip() for k in range(first, end)))
        cue_texts = [t for _, t in pieces if t is not None]
        if cue_texts:
            out.append((first, end, pieces))
            texts.extend(cue_texts)
        else:
            out.append("".join(body + ending for body, ending in lines[first:end]))
        i = end

    def render(translations: list[str]) -> bytes:
        it = iter(translations)
        result = [bom]
        for piece in out:
            if isinstance(piece, str):
                result.append(piece)
                continue
            first, end, pieces = piece
            cue = "".join(
                raw
                if t is None
                else raw[: len(raw) - len(raw.lstrip())] + one_line(next(it)) + raw[len(raw.rstrip()) :]
                for raw, t in pieces
            )
            broken = rebreak(cue, end - first)
            endings = [lines[k][1] for k in range(first, end)]
            newline = endings[0] or "\n"
            for k, line in enumerate(broken):  # the last line keeps the cue's last ending (maybe none)
                result.append(line + (endings[-1] if k == len(broken) - 1 else newline))
        return "".join(result).encode("utf-8")

    return Document(".srt", texts, render)
