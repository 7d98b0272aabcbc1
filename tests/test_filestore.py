"""Translated-file store: LibreTranslate's names, expiry on an injected clock, a real Redis shared by two
replicas, and names that could escape the store refused."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from redis_server import RedisServer

from serve.files import (
    InvalidFileName,
    LocalFileStore,
    RedisFileStore,
    StoredFileNotFound,
    check_name,
    download_name,
    open_file_store,
    stored_name,
)
from serve.files.filestore import secure_filename

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("upload", "target", "download"),
    [
        ("report.docx", "de", "report_de.docx"),  # LibreTranslate: <uuid>.report_de.docx
        ("My Report (final).v2.txt", "fr", "My_Report_final.v2_fr.txt"),
        ("résumé.html", "en", "resume_en.html"),
        ("файл.srt", "en", "file_en.srt"),  # nothing ASCII left of the stem
        ("../../etc/passwd.txt", "de", "etc_passwd_de.txt"),
    ],
)
def test_names_as_libretranslate_makes_them(upload: str, target: str, download: str) -> None:
    name = stored_name(upload, target)
    assert re.fullmatch(UUID + re.escape("." + download), name)
    assert download_name(name) == download and check_name(name) == name
    assert stored_name(upload, target) != name  # a fresh uuid each time


def test_secure_filename_matches_werkzeug() -> None:
    cases = {"My cool movie.mov": "My_cool_movie.mov", "../../../etc/passwd": "etc_passwd",
             "i contain cool \xfcml\xe4uts.txt": "i_contain_cool_umlauts.txt", "__.hidden": "hidden"}  # fmt: skip
    assert {k: secure_filename(k) for k in cases} == cases  # werkzeug's own docstring examples and more
    werkzeug = pytest.importorskip("werkzeug.utils")  # the reference itself, where installed
    names = [
        *cases,
        "a\\b c..txt",
        " .. ",
        "файл.txt",
        "résumé.html",
        "x/y\\z.docx",
        "CON.txt",
        "\tTab\nNL.srt",
    ]
    assert [secure_filename(n) for n in names] == [werkzeug.secure_filename(n) for n in names]


@pytest.mark.parametrize(
    "name", ["../secret", "x.txt", "a/b.txt", "0b1e1f4e-8c7b-4a56-9c61-3c1d2e0f9a7b/../x", "", "..", "%2e%2e"]
)
def test_names_the_store_never_made_are_refused(tmp_path: Path, name: str) -> None:
    store = LocalFileStore(tmp_path)
    with pytest.raises(InvalidFileName, match="Invalid filename"):
        store.get(name)


def test_local_store_expiry_on_an_injected_clock(tmp_path: Path) -> None:
    clock = Clock()
    store = LocalFileStore(tmp_path / "files", ttl=1800, clock=clock)
    old, new = stored_name("a.txt", "de"), stored_name("b.txt", "de")
    store.put(old, b"first")
    clock.now += 1000
    store.put(new, b"second")
    clock.now += 799.0
    assert store.get(old) == b"first"  # 1799 s old
    clock.now += 1.0
    with pytest.raises(StoredFileNotFound, match="has expired"):
        store.get(old)  # 1800 s: gone, and deleted
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == [new]
    assert store.get(new) == b"second"
    clock.now += 1000
    assert store.purge() == 1 and list((tmp_path / "files").iterdir()) == []
    with pytest.raises(StoredFileNotFound, match="no file"):
        store.get(new)


def test_local_store_sweeps_on_upload(tmp_path: Path) -> None:
    clock = Clock()
    store = LocalFileStore(tmp_path, ttl=100, clock=clock)
    names = [stored_name(f"{i}.txt", "de") for i in range(3)]
    store.put(names[0], b"0")
    clock.now += 60
    store.put(names[1], b"1")  # a sweep is due (every ttl/2): nothing has expired yet
    clock.now += 50
    store.put(names[2], b"2")  # the next sweep: names[0] is 110 s old
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


def test_redis_store_serves_every_replica_and_expires(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "r") as server:
        made_by, other = open_file_store(server.url, ttl=1800), open_file_store(server.url, ttl=1800)
        assert isinstance(made_by, RedisFileStore)
        name = stored_name("report.docx", "de")
        made_by.put(name, b"\x00PK binary")
        assert other.get(name) == b"\x00PK binary"  # another replica, same storage
        assert 1790_000 < made_by._r.pttl("seq2seq:file:" + name) <= 1800_000  # Redis expires it
        short = RedisFileStore(server.url, ttl=0.05)
        quick = stored_name("q.txt", "de")
        short.put(quick, b"x")
        deadline = time.monotonic() + 5
        while made_by._r.exists("seq2seq:file:" + quick) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling Redis until its TTL fires
        with pytest.raises(StoredFileNotFound):
            other.get(quick)
        with pytest.raises(InvalidFileName):
            other.get("../" + name)


def test_open_file_store_choices(tmp_path: Path) -> None:
    assert isinstance(open_file_store("memory://", tmp_path), LocalFileStore)
    assert isinstance(open_file_store(None, tmp_path), LocalFileStore)
    with pytest.raises(ValueError, match="unsupported shared storage"):
        open_file_store("s3://bucket", tmp_path)
