"""LibreTranslate's ``/suggest``, ``/translate_file``, ``/download_file``, ``/frontend/settings``, ``/spec`` and
``/detect`` with a list, called as LibreTranslate 1.9.6 defines them, on real ``python -m serve`` processes
with tiny models (en->fr, fr->en), a real SQLite file, and two replicas sharing a real redis-server."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import docx
import httpx
import pytest
import redis as redis_lib
from redis_fixture import RedisServer, require_redis
from test_serve import ROOT, Server, start_server

from serve.files import parse_document

KEY = "lt-k3y"
TEXTS = ["seven dogs run in the park", "twelve cats sleep", "three hundred and five"]
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def models(tiny_checkpoints: dict[str, Path]) -> list[str]:
    return [a for pair in ("en-fr", "fr-en") for a in ("--checkpoint", str(tiny_checkpoints[pair]))]


@pytest.fixture(scope="module")
def server(tiny_checkpoints, tmp_path_factory: pytest.TempPathFactory):
    """Suggestions on (SQLite), files on with small limits, one --api-key."""
    tmp = tmp_path_factory.mktemp("lt-routes")
    s = start_server(None, tmp, *models(tiny_checkpoints), "--threads", "1", "--api-key", KEY, "--suggestions",
                     "--suggestions-db-path", str(tmp / "db" / "suggestions.db"), "--files-dir", str(tmp / "files"),
                     "--files-max-bytes", "100000", "--files-max-chars", "3000")  # fmt: skip
    s.db = tmp / "db" / "suggestions.db"
    yield s
    s.stop()
    assert "Traceback" not in s.log.read_text(errors="replace")


def post(server: Server, path: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", timeout=120, **kwargs)


def upload(server: Server, name: str, data: bytes, key: str | None = KEY, mime: str = "text/plain",
           source: str = "en", target: str = "fr", **extra) -> httpx.Response:  # fmt: skip
    """LibreTranslate's multipart layout: the ``file`` part and the ``source``, ``target``, ``api_key`` fields."""
    fields = {"source": source, "target": target, **extra}
    if key is not None:
        fields["api_key"] = key
    return post(server, "/translate_file", files={"file": (name, data, mime)}, data=fields)


def translated(server: Server, texts: list[str], source: str = "en", target: str = "fr") -> list[str]:
    """What ``/translate`` gives for each text."""
    r = post(server, "/translate", json={"q": texts, "source": source, "target": target, "api_key": KEY})
    assert r.status_code == 200, r.text
    return r.json()["translatedText"]


def still_serving(server: Server) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    assert translated(server, ["twelve"]) == translated(server, ["twelve"])


# -- /suggest --------------------------------------------------------------------------------------
def test_suggest_stores_to_sqlite_json_and_form(server: Server) -> None:
    r = post(
        server, "/suggest", json={"q": "twelve", "s": "douze", "source": "en", "target": "fr", "api_key": KEY}
    )
    assert r.status_code == 200 and r.json() == {"success": True}, r.text
    r = post(
        server, "/suggest", data={"q": "three", "s": "trois", "source": "en", "target": "fr", "api_key": KEY}
    )
    assert r.json() == {"success": True}, r.text
    rows = (
        sqlite3.connect(server.db).execute("SELECT q, s, source, target, client FROM suggestions").fetchall()
    )
    assert rows == [
        ("twelve", "douze", "en", "fr", "addr:127.0.0.1"),
        ("three", "trois", "en", "fr", "addr:127.0.0.1"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"s": "douze", "source": "en", "target": "fr"}, 400, "Invalid request: missing q parameter"),
        ({"q": "twelve", "source": "en", "target": "fr"}, 400, "Invalid request: missing s parameter"),
        ({"q": "twelve", "s": "douze", "target": "fr"}, 400, "Invalid request: missing source parameter"),
        ({"q": "twelve", "s": "douze", "source": "en"}, 400, "Invalid request: missing target parameter"),
        ({"q": "twelve", "s": "douze", "source": "xx", "target": "fr"}, 400, "xx is not supported"),
        (
            {"q": ["twelve"], "s": "douze", "source": "en", "target": "fr"},
            400,
            "Invalid request: q must be a string",
        ),
        ({"q": "x" * 1001, "s": "douze", "source": "en", "target": "fr"}, 400, "the limit is 1000"),
        (
            {"q": "twelve", "s": "douze", "source": "en", "target": "fr", "api_key": "wrong"},
            403,
            "Invalid API key",
        ),
    ],
)
def test_suggest_refusals(server: Server, body: dict, status: int, error: str) -> None:
    r = post(server, "/suggest", json={"api_key": KEY} | body)
    assert r.status_code == status and error in r.json()["error"], r.text
    still_serving(server)


# -- /translate_file -------------------------------------------------------------------------------
def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading(TEXTS[0], level=1)
    paragraph = document.add_paragraph()
    paragraph.add_run(TEXTS[1]).bold = True
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = TEXTS[2], TEXTS[1]
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


FILES = {
    "notes.txt": ("text/plain", f"{TEXTS[0]}\n\n  {TEXTS[1]}\r\n{TEXTS[2]}".encode()),
    "page.html": (
        "text/html",
        f'<html><body><h1 class="t">{TEXTS[0]}</h1>\n<p>{TEXTS[1]} <b>{TEXTS[2]}</b></p>'
        f"<script>var x = 'seven';</script></body></html>".encode(),
    ),  # fmt: skip
    "film.srt": (
        "application/x-subrip",
        f"1\n00:00:01,000 --> 00:00:02,500\n{TEXTS[0]}\n\n"
        f"2\n00:00:03,000 --> 00:00:04,000\n<i>{TEXTS[1]}</i>\n".encode(),
    ),  # fmt: skip
    "letter.docx": (DOCX_MIME, make_docx()),
}


def contents(data: bytes, ext: str) -> bytes | dict[str, bytes]:
    """A file's bytes; a .docx's members (its zip entries carry the time they were written)."""
    if ext != "docx":
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


@pytest.mark.parametrize("name", sorted(FILES))
def test_translate_file_round_trip_as_translate(server: Server, name: str) -> None:
    mime, data = FILES[name]
    r = upload(server, name, data, mime=mime)
    assert r.status_code == 200, r.text
    url = r.json()["translatedFileUrl"]
    stem, ext = name.rsplit(".", 1)
    assert url.startswith(f"{server.url}/download_file/") and url.endswith(f".{stem}_fr.{ext}")
    got = httpx.get(url, timeout=30)
    assert got.status_code == 200
    assert got.headers["content-disposition"] == f"attachment; filename={stem}_fr.{ext}"
    # the same document rendered with what /translate answers for each of its texts
    doc = parse_document(data, name)
    assert doc.texts and contents(got.content, ext) == contents(
        doc.render(translated(server, doc.texts)), ext
    )
    if ext == "srt":
        assert "00:00:01,000 --> 00:00:02,500" in got.text and "<i>" in got.text
    if ext == "html":
        assert '<h1 class="t">' in got.text and "<script>var x = 'seven';</script>" in got.text
    if ext == "docx":
        out = docx.Document(io.BytesIO(got.content))
        assert out.paragraphs[0].style.name == "Heading 1" and out.paragraphs[1].runs[0].bold
        assert out.tables[0].rows[0].cells[0].text == translated(server, [TEXTS[2]])[0]


def test_translate_file_auto_source_and_prefix(server: Server) -> None:
    r = post(server, "/libretranslate/translate_file", files={"file": ("a.txt", TEXTS[1].encode(), "text/plain")},
             data={"source": "auto", "target": "fr", "api_key": KEY})  # fmt: skip
    assert r.status_code == 200, r.text
    url = r.json()["translatedFileUrl"]
    assert urlsplit(url).path.startswith("/libretranslate/download_file/")
    assert httpx.get(url, timeout=30).text == translated(server, [TEXTS[1]])[0]


BAD_DOCX = b"PK\x03\x04 this is no zip archive"


@pytest.mark.parametrize(
    ("name", "data", "fields", "status", "error"),
    [
        ("a.pdf", b"%PDF-1.4", {}, 400, "Invalid request: file format not supported"),
        ("noext", b"text", {}, 400, "Invalid request: file format not supported"),
        ("bad.docx", BAD_DOCX, {}, 400, "corrupt"),
        ("latin1.txt", "café".encode("latin-1"), {}, 400, "not UTF-8"),
        ("big.txt", b"seven dogs\n" * 9500, {}, 400, "exceeds the limit (100000)"),
        ("long.txt", b"seven dogs run. " * 300, {}, 400, "exceeds the limit (3000)"),
        ("para.txt", b"seven " * 200, {}, 400, "a text of 1199 characters in the file, the limit is 1000"),
        ("a.txt", b"twelve", {"source": "xx"}, 400, "xx is not supported"),
        ("a.txt", b"twelve", {"target": "yy"}, 400, "yy is not supported"),
        ("a.txt", b"twelve", {"api_key": "wrong"}, 403, "Invalid API key"),
    ],
)
def test_translate_file_refusals(server: Server, name, data, fields, status, error) -> None:
    languages = {k: v for k, v in fields.items() if k != "api_key"}
    r = upload(server, name, data, key=fields.get("api_key", KEY), **languages)
    assert r.status_code == status and error in r.json()["error"], r.text
    still_serving(server)


def test_translate_file_missing_parts_and_bad_bodies(server: Server) -> None:
    cases = [
        (
            {"data": {"source": "en", "target": "fr", "api_key": KEY}},
            "Invalid request: missing file parameter",
        ),
        (
            {"files": {"file": ("a.txt", b"x")}, "data": {"target": "fr", "api_key": KEY}},
            "missing source parameter",
        ),
        (
            {"files": {"file": ("a.txt", b"x")}, "data": {"source": "en", "api_key": KEY}},
            "missing target parameter",
        ),
        (
            {"content": b"--xx\r\ngarbage", "headers": {"content-type": "multipart/form-data; boundary=xx"}},
            "",
        ),
    ]
    for kwargs, error in cases:
        r = post(server, "/translate_file", params={"api_key": KEY}, **kwargs)
        assert r.status_code == 400 and error in r.json()["error"], r.text
    r = post(server, "/translate_file", files={"file": ("big.txt", b"x" * 300_000)}, data={"api_key": KEY})
    assert r.status_code == 413 and "error" in r.json(), r.text  # the body itself is over the limit
    still_serving(server)


def test_download_refusals(server: Server) -> None:
    unknown = httpx.get(
        f"{server.url}/download_file/00000000-0000-4000-8000-000000000000.a_fr.txt", timeout=30
    )
    assert unknown.status_code == 404 and "error" in unknown.json()
    assert httpx.get(f"{server.url}/download_file/..%2F..%2Fetc%2Fpasswd", timeout=30).status_code == 404
    assert httpx.get(f"{server.url}/download_file/x.txt", timeout=30).json() == {"error": "Invalid filename"}


# -- /frontend/settings, /spec, /detect ------------------------------------------------------------
def test_frontend_settings_spec_and_detect_list(server: Server) -> None:
    settings = httpx.get(f"{server.url}/frontend/settings", timeout=30).json()
    assert settings == {
        "charLimit": 1000, "frontendTimeout": 500, "apiKeys": True, "keyRequired": True, "suggestions": True,
        "filesTranslation": True, "supportedFilesFormat": [".txt", ".html", ".srt", ".docx"],
        "language": {"source": {"code": "auto", "name": "Auto Detect"}, "target": {"code": "en", "name": "English"}},
    }  # fmt: skip
    spec = httpx.get(f"{server.url}/spec", timeout=30).json()
    assert spec == httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    for path in ("/suggest", "/translate_file", "/download_file/{name}", "/frontend/settings", "/spec"):
        assert path in spec["paths"], path
    one = post(server, "/detect", json={"q": "seven dogs run", "api_key": KEY}).json()
    many = post(server, "/detect", json={"q": ["seven dogs run", "douze chats"], "api_key": KEY})
    assert many.status_code == 200, many.text
    found = many.json()
    assert isinstance(found, list) and {d["language"] for d in found} == {"en", "fr"}
    assert all(set(d) == {"confidence", "language"} for d in found) and one[0]["language"] == "en"
    assert post(server, "/detect", json={"q": [], "api_key": KEY}).status_code == 400


# -- keys and limits ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gated(tiny_checkpoints, tmp_path_factory: pytest.TempPathFactory):
    """--api-keys (SQLite) with --req-limit 3 and --char-limit 40; suggestions and files on."""
    tmp = tmp_path_factory.mktemp("lt-gated")
    keys_db = tmp / "keys.db"
    s = start_server(None, tmp, *models(tiny_checkpoints), "--threads", "1", "--api-keys", "--api-keys-db-path",
                     str(keys_db), "--req-limit", "3", "--char-limit", "40", "--suggestions",
                     "--suggestions-db-path", str(tmp / "suggestions.db"))  # fmt: skip
    s.keys_db = keys_db
    yield s
    s.stop()


def add_key(db: Path, req_limit: int) -> str:
    done = subprocess.run([sys.executable, "-m", "serve.store.keys_cli", "--api-keys-db-path", str(db), "add",
                           str(req_limit)], cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_suggest_is_key_checked_and_rate_limited(gated: Server) -> None:
    body = {"q": "twelve", "s": "douze", "source": "en", "target": "fr"}
    r = post(gated, "/suggest", json=body | {"api_key": "not-a-key"})
    assert r.status_code == 403 and r.json() == {"error": "Invalid API key"}
    codes = [post(gated, "/suggest", json=body).status_code for _ in range(4)]  # per address: 3 a minute
    assert codes == [200, 200, 200, 429]
    assert post(gated, "/suggest", json=body).json() == {"error": "Slowdown: 3 per 1 minute"}
    key = add_key(gated.keys_db, 2)
    assert [post(gated, "/suggest", json=body | {"api_key": key}).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]


def test_a_file_costs_its_characters_over_the_char_limit(gated: Server) -> None:
    key = add_key(gated.keys_db, 5)
    text = "\n".join(["seven dogs run in the park"] * 4).encode()  # 104 characters: 104 / 40 -> 2 requests
    first = post(gated, "/translate_file", files={"file": ("a.txt", text)},
                 data={"source": "en", "target": "fr", "api_key": key})  # fmt: skip
    assert first.status_code == 200, first.text
    again = post(gated, "/translate_file", files={"file": ("a.txt", text)},
                 data={"source": "en", "target": "fr", "api_key": key})  # fmt: skip
    assert again.status_code == 200, again.text  # 4 of 5
    refused = post(gated, "/translate_file", files={"file": ("a.txt", text)},
                   data={"source": "en", "target": "fr", "api_key": key})  # fmt: skip
    assert refused.status_code == 429 and refused.json() == {"error": "Slowdown: 5 per 1 minute"}
    bad = post(gated, "/translate_file", files={"file": ("a.txt", b"x")}, data={"source": "en", "target": "fr",
                                                                                "api_key": "not-a-key"})  # fmt: skip
    assert bad.status_code == 403 and bad.json() == {"error": "Invalid API key"}


# -- everything off ----------------------------------------------------------------------------------
def test_suggestions_and_files_off(tiny_checkpoint: Path, tmp_path: Path) -> None:
    s = start_server(tiny_checkpoint, tmp_path, "--threads", "1", "--disable-files-translation")
    try:
        r = post(s, "/suggest", json={"q": "twelve", "s": "douze", "source": "en", "target": "fr"})
        assert r.status_code == 403 and r.json() == {"error": "Suggestions are disabled on this server."}
        r = post(
            s, "/translate_file", files={"file": ("a.txt", b"twelve")}, data={"source": "en", "target": "fr"}
        )
        assert r.status_code == 403 and r.json() == {
            "error": "Files translation are disabled on this server."
        }
        r = httpx.get(f"{s.url}/download_file/00000000-0000-4000-8000-000000000000.a_fr.txt", timeout=30)
        assert r.status_code == 400 and r.json() == {
            "error": "Files translation are disabled on this server."
        }
        settings = httpx.get(f"{s.url}/frontend/settings", timeout=30).json()
        assert (settings["suggestions"], settings["filesTranslation"], settings["supportedFilesFormat"]) == (
            False, False, []
        )  # fmt: skip
        assert (settings["apiKeys"], settings["keyRequired"], settings["language"]["target"]["code"]) == (
            False, False, "fr"
        )  # fmt: skip
    finally:
        s.stop()


# -- two replicas sharing a real redis-server --------------------------------------------------------
def test_replicas_share_suggestions_and_files_through_redis(tiny_checkpoint: Path, tmp_path: Path) -> None:
    require_redis()
    redis = RedisServer(tmp_path / "redis").start()
    replicas: list[Server] = []
    try:
        args = ("--threads", "1", "--shared-storage", redis.url, "--suggestions")
        replicas = [start_server(tiny_checkpoint, tmp_path, *args) for _ in range(2)]
        a, b = replicas
        r = post(a, "/suggest", data={"q": "twelve", "s": "douze", "source": "en", "target": "fr"})
        assert r.json() == {"success": True}, r.text
        entries = redis_lib.Redis.from_url(redis.url, decode_responses=True).xrange("seq2seq:suggestions")
        assert [(e["q"], e["s"], e["source"], e["target"]) for _, e in entries] == [
            ("twelve", "douze", "en", "fr")
        ]
        made = post(
            a, "/translate_file", files={"file": ("a.txt", b"twelve")}, data={"source": "en", "target": "fr"}
        )
        assert made.status_code == 200, made.text
        name = made.json()["translatedFileUrl"].rsplit("/", 1)[1]
        got = httpx.get(f"{b.url}/download_file/{name}", timeout=30)  # the other replica
        assert got.status_code == 200 and got.content == httpx.get(f"{a.url}/download_file/{name}").content
        assert (
            got.text
            == post(b, "/translate", json={"q": "twelve", "source": "en", "target": "fr"}).json()[
                "translatedText"
            ]
        )
        redis.kill()  # the store is gone: 503 JSON, and translation goes on
        r = post(a, "/suggest", json={"q": "twelve", "s": "douze", "source": "en", "target": "fr"})
        assert r.status_code == 503 and "could not be stored" in r.json()["error"], r.text
        r = post(
            a, "/translate_file", files={"file": ("a.txt", b"twelve")}, data={"source": "en", "target": "fr"}
        )
        assert r.status_code == 503 and "file store" in r.json()["error"], r.text
        r = httpx.get(f"{b.url}/download_file/{name}", timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
        assert post(b, "/translate", json={"q": "twelve", "source": "en", "target": "fr"}).status_code == 200
        for replica in replicas:
            assert "Traceback" not in replica.log.read_text(errors="replace")
    finally:
        for r in replicas:
            r.stop()
        redis.kill()
