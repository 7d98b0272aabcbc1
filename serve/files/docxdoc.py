"""``.docx`` through python-docx: paragraphs translated, their styles and their runs' formatting kept.

The rule: a paragraph's text runs are grouped into maximal stretches of identical formatting (the
same ``w:rPr``; Word splits runs for spell checking and revisions, which is no formatting). A stretch
is translated as one text and its translation goes into the stretch's first run; its other runs are
removed. So a paragraph in one formatting (the usual case) is translated whole, and in a paragraph
with a bold word the bold stretch stays bold, translated on its own. Runs that hold anything but text
(pictures, fields, page breaks) are never touched and split stretches. Tabs and line breaks inside a
stretch are kept (the text on each side is translated separately). Covered: the body, tables (nested
too), text boxes, headers and footers. Not covered: footnotes, comments, tracked insertions.
"""

from __future__ import annotations

import io
import re
import zipfile

from lxml import etree

from serve.files.errors import CorruptFile, FileTooLarge
from serve.files.plain import WORD, Document

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_TEXT_CHILDREN = {
    f"{W}{t}" for t in ("rPr", "t", "tab", "cr", "noBreakHyphen", "softHyphen", "lastRenderedPageBreak")
}
_SEPARATORS = re.compile(r"([\t\n])")
_PARTS = ("/header", "/footer")


def _is_text_run(r) -> bool:
    for child in r:
        if child.tag == f"{W}br":
            if child.get(f"{W}type") not in (None, "textWrapping"):
                return False
        elif child.tag not in _TEXT_CHILDREN:
            return False
    return True


def _stretches(paragraph) -> list[list]:
    """The paragraph's runs of text in stretches of one formatting (hyperlinks are stretches of their own)."""
    from docx.text.hyperlink import Hyperlink

    stretches: list[list] = []
    previous = None  # (parent element, formatting) of the last run, None after a non-text run
    for item in paragraph.iter_inner_content():
        runs = item.runs if isinstance(item, Hyperlink) else [item]
        for run in runs:
            r = run._r
            if not _is_text_run(r):
                previous = None
                continue
            key = (r.getparent(), b"" if r.rPr is None else etree.tostring(r.rPr))
            if key == previous:
                stretches[-1].append(run)
            else:
                stretches.append([run])
            previous = key
    return stretches


def _segments(text: str) -> list[tuple[str, str, str] | str]:
    """A stretch's text cut at tabs and line breaks: (lead, words, trail) to translate, or a copied str."""
    out: list[tuple[str, str, str] | str] = []
    for part in _SEPARATORS.split(text):
        content = part.strip()
        if WORD.search(content):
            out.append(
                (
                    part[: len(part) - len(part.lstrip())],
                    " ".join(content.split()),
                    part[len(part.rstrip()) :],
                )
            )
        elif part:
            out.append(part)
    return out


def _open(data: bytes, max_unpacked: int):
    """The python-docx Document, after checking the zip (and its unpacked size: no zip bombs)."""
    import docx

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            unpacked = sum(info.file_size for info in z.infolist())
    except zipfile.BadZipFile:
        raise CorruptFile("Invalid request: the .docx file is corrupt (not a zip archive)") from None
    if unpacked > max_unpacked:
        raise FileTooLarge(
            f"Invalid request: the .docx file unpacks to {unpacked} bytes (limit {max_unpacked})"
        )
    try:
        return docx.Document(io.BytesIO(data))
    except Exception as e:  # python-docx raises KeyError, ValueError, lxml and package errors alike
        raise CorruptFile(
            f"Invalid request: the .docx file is corrupt ({type(e).__name__}: {e})"[:300]
        ) from None


def _paragraphs(document) -> list:
    """Every paragraph of the body (tables and text boxes included), headers and footers, once each."""
    from docx.text.paragraph import Paragraph

    roots = [document.element.body]
    for rel in document.part.rels.values():
        if not rel.is_external and rel.reltype.endswith(_PARTS):
            roots.append(rel.target_part.element)
    return [Paragraph(p, None) for root in roots for p in root.iter(f"{W}p")]


def _plan(document) -> list[tuple[list, list]]:
    """(stretch runs, segments) for every stretch that holds a word, in document order."""
    plan = []
    for paragraph in _paragraphs(document):
        for runs in _stretches(paragraph):
            segments = _segments("".join(run.text for run in runs))
            if any(isinstance(s, tuple) for s in segments):
                plan.append((runs, segments))
    return plan


def parse_docx(data: bytes, max_unpacked: int = 100 * 2**20) -> Document:
    plan = _plan(_open(data, max_unpacked))
    texts = [s[1] for _, segments in plan for s in segments if isinstance(s, tuple)]

    def render(translations: list[str]) -> bytes:
        document = _open(data, max_unpacked)  # a fresh copy: render is pure and may run twice
        it = iter(translations)
        for runs, segments in _plan(document):
            parts = [s if isinstance(s, str) else s[0] + " ".join(next(it).split()) + s[2] for s in segments]
            runs[0].text = "".join(parts)
            for run in runs[1:]:
                run._r.getparent().remove(run._r)
        out = io.BytesIO()
        document.save(out)
        return out.getvalue()

    return Document(".docx", texts, render)
