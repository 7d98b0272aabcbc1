"""Documents translated by the tiny real model: every text in the output is exactly what
``Translator.translate`` gives for that text alone, and the layout is the source's."""

from __future__ import annotations

import io

import docx
import pytest

from seq2seq.translator import Translator
from serve.files import parse_document, translate_document

SENTENCES = ["twenty-two", "Friday, November 24, 1989", "one hundred and seven", "Monday, February 12, 2091"]


@pytest.fixture(scope="module")
def translator(tiny_checkpoint) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint)


def _docx() -> bytes:
    document = docx.Document()
    document.add_heading(SENTENCES[0], level=2)
    p = document.add_paragraph(SENTENCES[1] + " ")
    p.add_run(SENTENCES[2]).italic = True
    document.add_table(rows=1, cols=1).cell(0, 0).text = SENTENCES[3]
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


DOCUMENTS = {
    "a.txt": ("\n".join(SENTENCES) + "\n").encode(),
    "a.srt": (
        f"1\n00:00:01,000 --> 00:00:02,000\n{SENTENCES[0]}\n\n"
        f"2\n00:00:02,500 --> 00:00:04,000\n{SENTENCES[1]}\n{SENTENCES[2]}\n\n"
        f"3\n00:00:05,000 --> 00:00:06,000\n{SENTENCES[3]}\n"
    ).encode(),
    "a.html": f'<h1 class="t">{SENTENCES[0]}</h1><p>{SENTENCES[1]} <em>{SENTENCES[2]}</em></p>'
    f"<ul><li>{SENTENCES[3]}</li></ul>".encode(),
    "a.docx": _docx(),
}


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_document_texts_equal_translator_output(translator: Translator, name: str) -> None:
    data = DOCUMENTS[name]
    source = parse_document(data, name)
    assert len(source.texts) == (3 if name == "a.srt" else 4)

    def batch(texts: list[str]) -> list[str]:
        return [t.text for t in translator.translate(texts, beam_size=1)]

    out = translate_document(data, name, batch)
    alone = [" ".join(translator.translate([t], beam_size=1)[0].text.split()) for t in source.texts]
    assert alone != source.texts  # the model did translate
    assert parse_document(out, name).texts == alone  # each text: the model's translation of it alone
    if name == "a.srt":  # cue numbers and timings kept; the two-line cue is still two lines
        lines = out.decode().split("\n")
        assert lines[:2] == ["1", "00:00:01,000 --> 00:00:02,000"] and lines[3] == ""
        assert lines[4:6] == ["2", "00:00:02,500 --> 00:00:04,000"] and all(lines[6:8]) and lines[8] == ""
        assert lines[9:11] == ["3", "00:00:05,000 --> 00:00:06,000"]
    if name == "a.docx":
        paragraphs = docx.Document(io.BytesIO(out)).paragraphs
        assert [p.style.name for p in paragraphs] == ["Heading 2", "Normal"]
        assert [r.italic for r in paragraphs[1].runs] == [None, True]
