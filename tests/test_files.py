"""Document translation (.txt, .srt, .html, .docx): layout kept, text translated, bad files refused."""

from __future__ import annotations

import io
import re
import zipfile

import docx
import pytest
from docx.enum.text import WD_ALIGN_PARAGRAPH

from serve.files import (
    CorruptFile,
    FileTooLarge,
    Limits,
    UnsupportedFileType,
    parse_document,
    request_cost,
    translate_document,
)


def upper(texts: list[str]) -> list[str]:
    return [t.upper() for t in texts]


TXT = "\ufeffFirst line here.\r\n\r\n    Indented line, two spaces after.  \r\n-----\r\nLast line without end".encode()

SRT = (
    "1\n00:00:01,000 --> 00:00:02,500\nHello there, my friend,\nhow are you today?\n\n"
    "2\n00:00:03,000 --> 00:00:04,250 X1:40 X2:600\n<i>Fine.</i>\n\n"
    "3\n00:01:05,120 --> 00:01:07,000\n♪ ♪\n\n"
    '4\n00:01:08,000 --> 00:01:09,000\n{\\an8}<font color="#ff0000">Red words</font> and\nsome more\n\n'
    "10\n01:00:00,000 --> 01:00:02,000\nThe end"
).encode()

HTML = (
    b'<!DOCTYPE html>\n<html lang="en"><head><title>My page</title>'
    b"<style>p { color: red }</style></head>\n<body>\n"
    b'  <p class="intro" title="Do not touch">Hello <b>bold</b>\n     world &amp; friends</p>\n'
    b'  <a href="/x?a=1&amp;b=2">link text</a><br/><img src="a.png" alt="pic">\n'
    b"  <pre>keep  this</pre><p translate=\"no\">Brand</p><script>var s = 'text';</script>\n"
    b"</body></html>\n"
)


def test_txt_keeps_lines_endings_indentation_and_bom() -> None:
    out = translate_document(TXT, "notes.txt", upper)
    assert (
        out
        == "\ufeffFIRST LINE HERE.\r\n\r\n    INDENTED LINE, TWO SPACES AFTER.  \r\n-----\r\nLAST LINE WITHOUT END".encode()
    )
    assert parse_document(TXT, "notes.txt").texts == [
        "First line here.", "Indented line, two spaces after.", "Last line without end",
    ]  # fmt: skip


def test_txt_translation_cannot_add_lines() -> None:
    assert translate_document(b"a\nb\n", "x.txt", lambda ts: [t + "\nnew" for t in ts]) == b"a new\nb new\n"


def test_srt_numbers_and_timings_byte_for_byte_multiline_cues() -> None:
    doc = parse_document(SRT, "film.srt")
    assert doc.texts == [
        "Hello there, my friend, how are you today?",
        "Fine.",
        "Red words",
        "and some more",
        "The end",
    ]
    out = translate_document(SRT, "film.srt", upper).decode()
    assert out == (
        "1\n00:00:01,000 --> 00:00:02,500\nHELLO THERE, MY FRIEND,\nHOW ARE YOU TODAY?\n\n"
        "2\n00:00:03,000 --> 00:00:04,250 X1:40 X2:600\n<i>FINE.</i>\n\n"
        "3\n00:01:05,120 --> 00:01:07,000\n♪ ♪\n\n"
        '4\n00:01:08,000 --> 00:01:09,000\n{\\an8}<font color="#ff0000">RED WORDS</font> AND\nSOME MORE\n\n'
        "10\n01:00:00,000 --> 01:00:02,000\nTHE END"
    )
    timing = re.compile(r"^(\d+|\d\d:\d\d:\d\d,\d{3} --> .*)$", re.M)
    assert timing.findall(out) == timing.findall(SRT.decode())


def test_srt_crlf_and_short_translation() -> None:
    src = b"1\r\n00:00:01,000 --> 00:00:02,000\r\nOne two\r\nthree four\r\n"
    assert (
        translate_document(src, "a.srt", lambda ts: ["Eins"])
        == b"1\r\n00:00:01,000 --> 00:00:02,000\r\nEins\r\n"
    )


def test_html_tags_attributes_and_skipped_elements_kept() -> None:
    out = translate_document(HTML, "page.html", upper).decode()
    tags = re.compile(r"<[^>]*>")
    assert tags.findall(out) == tags.findall(HTML.decode())  # every tag and attribute, byte for byte
    assert "<title>MY PAGE</title>" in out and "HELLO <b>BOLD</b>\n     WORLD &amp; FRIENDS" in out
    assert ">LINK TEXT</a>" in out and 'title="Do not touch"' in out
    for kept in ("p { color: red }", "<pre>keep  this</pre>", ">Brand</p>", "var s = 'text';"):
        assert kept in out
    assert translate_document(HTML, "page.html", lambda ts: ts) == HTML  # identity: byte for byte


def build_docx() -> bytes:
    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "Header text"
    document.add_heading("The title", level=1)
    p = document.add_paragraph("This is ", style="List Bullet")
    p.add_run("very").bold = True
    p.add_run(" important")
    p.add_run(" indeed.")  # same formatting as the run before: one stretch with it
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    document.add_paragraph("Left\tright")
    table = document.add_table(rows=2, cols=2)
    for i, cell in enumerate(c for row in table.rows for c in row.cells):
        cell.text = f"cell {i}"
    table.cell(1, 0).add_table(rows=1, cols=1).cell(0, 0).text = "nested cell"
    run = document.add_paragraph().add_run()
    run.add_break(docx.enum.text.WD_BREAK.PAGE)  # not text: left alone
    document.add_paragraph("After the break")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_docx_runs_styles_tables_headers() -> None:
    data = build_docx()
    doc = parse_document(data, "report.docx")
    assert doc.texts == [
        "The title", "This is", "very", "important indeed.", "Left", "right",
        "cell 0", "cell 1", "cell 2", "nested cell", "cell 3", "After the break", "Header text",
    ]  # fmt: skip
    before = docx.Document(io.BytesIO(data))
    after = docx.Document(io.BytesIO(translate_document(data, "report.docx", upper)))
    assert [p.style.name for p in after.paragraphs] == [p.style.name for p in before.paragraphs]
    assert [p.text for p in after.paragraphs] == [p.text.upper() for p in before.paragraphs]
    bullet = after.paragraphs[1]
    assert [(r.text, r.bold) for r in bullet.runs] == [
        ("THIS IS ", None),
        ("VERY", True),
        (" IMPORTANT INDEED.", None),
    ]
    assert bullet.alignment == WD_ALIGN_PARAGRAPH.CENTER
    assert after.paragraphs[2].runs[0]._r.xpath("./w:tab")  # the tab is still a tab
    assert after.paragraphs[3].runs[0]._r.xpath("./w:br[@w:type='page']")  # the page break survived
    assert after.tables[0].cell(1, 1).text == "CELL 3"
    assert after.tables[0].cell(1, 0).tables[0].cell(0, 0).text == "NESTED CELL"
    assert after.sections[0].header.paragraphs[0].text == "HEADER TEXT"


def test_each_text_translated_once_in_one_batch() -> None:
    calls = []

    def translate(texts: list[str]) -> list[str]:
        calls.append(list(texts))
        return upper(texts)

    out = translate_document(b"same\nother\nsame\n", "a.txt", translate)
    assert out == b"SAME\nOTHER\nSAME\n" and calls == [["same", "other"]]
    assert translate_document(b"---\n\n", "a.txt", translate) == b"---\n\n" and len(calls) == 1


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "error", "message"),
    [
        (b"x", "scan.pdf", UnsupportedFileType, r"file format not supported \(\.pdf; supported: \.txt"),
        (b"x", "README", UnsupportedFileType, "no extension"),
        (b"not a zip", "a.docx", CorruptFile, "not a zip archive"),
        (_zip({"hello.txt": b"hi"}), "a.docx", CorruptFile, "the .docx file is corrupt"),
        (build_docx()[:-200], "a.docx", CorruptFile, "the .docx file is corrupt"),
        (_zip({"[Content_Types].xml": b"0" * 3000}), "a.docx", FileTooLarge, "unpacks to 3000 bytes"),
        ("caf\u00e9".encode("latin-1"), "a.txt", CorruptFile, r"not UTF-8 text \(byte 3\)"),
        (b"1\n00:00:01 --> 2\nhi\n", "a.srt", CorruptFile, "line 2: expected a timing line"),
        (b"hello\n", "a.srt", CorruptFile, "line 1: expected a cue number"),
        (b"x" * 1001, "a.txt", FileTooLarge, r"the file \(1001 bytes\) exceeds the limit \(1000\)"),
        (b"abcdef ghijkl\n", "a.txt", FileTooLarge, r"text \(13 characters\) exceeds the limit \(12\)"),
    ],
)
def test_bad_files_raise_specific_errors(data: bytes, name: str, error: type, message: str) -> None:
    limits = Limits(max_bytes=1000, max_chars=12, max_unpacked_bytes=2000)
    if name == "a.docx" and error is CorruptFile:
        limits = Limits()
    with pytest.raises(error, match=message):
        parse_document(data, name, limits)


def test_cost_and_limits_at_the_edge() -> None:
    doc = parse_document(b"abcdef\nghijkl\n", "a.txt", Limits(max_bytes=14, max_chars=12))
    assert doc.chars == 12 and doc.sample(8) == "abcdef\ng"
    assert [request_cost(n, limit) for n, limit in ((12, 5), (3, 5), (12, -1), (5000, 1000))] == [2, 1, 1, 5]
    assert parse_document(b"ok", "UPPER.TXT").texts == ["ok"]
