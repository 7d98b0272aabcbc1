"""LibreTranslate's contract for the file, suggestion, settings and list-detect routes."""

from __future__ import annotations

import io

import pytest

from serve.files import SUPPORTED_EXTENSIONS, download_name, stored_name
from serve.libretranslate.contract import (
    LT_FILE_FORMATS,
    ContractError,
    download_headers,
    download_url,
    frontend_settings,
    merge_detections,
    suggest_fields,
    translate_file_fields,
)


@pytest.mark.parametrize(
    ("body", "enabled", "status", "message"),
    [
        (
            {"q": "a", "s": "b", "source": "de", "target": "en"},
            False,
            403,
            "Suggestions are disabled on this server.",
        ),
        ({"s": "b", "source": "de"}, True, 400, "Invalid request: missing q parameter"),
        ({"q": "a", "s": "", "target": "en"}, True, 400, "Invalid request: missing s parameter"),
        ({"q": "a", "s": "b", "target": "en"}, True, 400, "Invalid request: missing source parameter"),
        ({"q": "a", "s": "b", "source": "de"}, True, 400, "Invalid request: missing target parameter"),
    ],
)
def test_suggest_checks_in_libretranslates_order(
    body: dict, enabled: bool, status: int, message: str
) -> None:
    with pytest.raises(ContractError) as e:
        suggest_fields(body, enabled)
    assert (e.value.status, e.value.body()) == (status, {"error": message})


def test_suggest_fields_ok() -> None:
    assert suggest_fields({"q": "a", "s": "b", "source": "de", "target": "en", "x": 1}, True) == (
        "a",
        "b",
        "de",
        "en",
    )


@pytest.mark.parametrize(
    ("form", "filename", "enabled", "status", "message"),
    [
        (
            {"source": "en", "target": "de"},
            "a.txt",
            False,
            403,
            "Files translation are disabled on this server.",
        ),
        ({"source": "en", "target": "de"}, None, True, 400, "Invalid request: missing file parameter"),
        ({"source": "en", "target": "de"}, "", True, 400, "Invalid request: missing file parameter"),
        ({"target": "de"}, "a.txt", True, 400, "Invalid request: missing source parameter"),
        ({"source": "auto"}, "a.txt", True, 400, "Invalid request: missing target parameter"),
        (
            {"source": "en", "target": "de"},
            "slides.pptx",
            True,
            400,
            "Invalid request: file format not supported",
        ),
        ({"source": "en", "target": "de"}, ".txt", True, 400, "Invalid request: file format not supported"),
    ],
)
def test_translate_file_checks(
    form: dict, filename: str | None, enabled: bool, status: int, message: str
) -> None:
    with pytest.raises(ContractError) as e:
        translate_file_fields(form, filename, enabled, SUPPORTED_EXTENSIONS)
    assert (e.value.status, str(e.value)) == (status, message)
    assert (
        translate_file_fields({"source": "auto", "target": "de"}, "A.TXT", True, SUPPORTED_EXTENSIONS)[1]
        == "auto"
    )


def test_frontend_settings_shape() -> None:
    settings = frontend_settings(5000, True, True, True, True, SUPPORTED_EXTENSIONS, target=("fr", "French"))
    assert settings == {
        "charLimit": 5000, "frontendTimeout": 500, "apiKeys": True, "keyRequired": True, "suggestions": True,
        "filesTranslation": True, "supportedFilesFormat": [".txt", ".html", ".srt", ".docx"],
        "language": {"source": {"code": "auto", "name": "Auto Detect"}, "target": {"code": "fr", "name": "French"}},
    }  # fmt: skip
    off = frontend_settings(-1, False, True, False, False, SUPPORTED_EXTENSIONS)
    assert (off["keyRequired"], off["filesTranslation"], off["supportedFilesFormat"]) == (False, False, [])
    assert set(SUPPORTED_EXTENSIONS) < set(LT_FILE_FORMATS)


def test_detect_list_is_one_merged_list() -> None:
    """Hand-computed with LibreTranslate's rule: candidates weighted by their text's length."""
    texts = ["aaaa", "bb", "cccccc"]
    found = [
        [("de", 90.0), ("en", 10.0)],
        [("en", 80.0)],
        [("fr", 30.0), ("de", 60.0), ("en", 5.0), ("it", 1.0)],
    ]
    # candidates: de 90/4, en 10/4, en 80/2, fr 30/6, de 60/6, en 5/6 (top 3 only); total length 28
    # de: mean 75, length 10 -> 26.8; en: mean 31.67, length 12 -> 13.6; fr: 30, 6 -> 6.4
    assert merge_detections(texts, found) == [
        {"confidence": 75.0, "language": "de"},
        {"confidence": pytest.approx(95 / 3), "language": "en"},
        {"confidence": 30.0, "language": "fr"},
    ]
    assert merge_detections(["x"], [[]]) == [{"confidence": 0.0, "language": "en"}]


def test_download_url_and_headers() -> None:
    name = stored_name("report.docx", "de")
    assert download_url("http://h:5000/lt/", name) == f"http://h:5000/lt/download_file/{name}"
    headers = download_headers(download_name(name))
    assert headers["Content-Disposition"] == "attachment; filename=report_de.docx"
    pytest.importorskip("werkzeug")  # the reference: what Flask's send_file sends
    from werkzeug.test import create_environ
    from werkzeug.utils import send_file

    for shown in ("report_de.docx", "notes_fr.txt", "page_en.html", "sub_de.srt", "grüße_de.txt", "no_ext"):
        ref = send_file(io.BytesIO(b""), create_environ(), as_attachment=True, download_name=shown)
        ours = download_headers(shown)
        assert ours["Content-Disposition"] == ref.headers["Content-Disposition"], shown
        assert ours["Content-Type"] == ref.headers["Content-Type"], shown
