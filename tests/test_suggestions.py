"""The suggestion store (SQLite and a real Redis), its crash safety, and the export the trainer reads."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from redis_server import RedisServer

from serve.store.suggestions import (
    RedisSuggestions,
    SQLiteSuggestions,
    StoreUnavailable,
    Suggestion,
    SuggestionError,
    open_suggestions,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def redis_server(tmp_path: Path):
    with RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always") as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path: Path):
    if request.param == "sqlite":
        s = open_suggestions(tmp_path / "db" / "suggestions.db")
    else:
        s = open_suggestions(None, request.getfixturevalue("redis_server").url)
    yield s
    s.close()


def test_add_iter_filter_clear(store) -> None:
    store.add("Hallo Welt", "Hello world", "de", "en", client="k1", at=100.0)
    store.add("Guten Tag", "Good day", "de", "en", at=200.0)
    store.add("Hello", "Bonjour", "en", "fr", at=300.0)
    assert list(store.iter()) == [
        Suggestion("Hallo Welt", "Hello world", "de", "en", 100.0, "k1"),
        Suggestion("Guten Tag", "Good day", "de", "en", 200.0, None),
        Suggestion("Hello", "Bonjour", "en", "fr", 300.0, None),
    ]
    assert [s.q for s in store.iter(("de", "en"))] == ["Hallo Welt", "Guten Tag"]
    assert [s.q for s in store.iter(("de", "en"), since=150.0)] == ["Guten Tag"]
    assert store.clear(("de", "en")) == 2
    assert [s.q for s in store.iter()] == ["Hello"]
    assert store.clear() == 1
    assert list(store.iter()) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (("", "x", "de", "en"), "missing q"),
        (("x", "   ", "de", "en"), "missing s"),
        (("x", "y", "", "en"), "missing source"),
        (("x", "y", "de", "en; DROP"), "target 'en; DROP' is not a language code"),
        (("x" * 51, "y", "de", "en"), "q (51 characters) exceeds the limit (50)"),
        (("x", "a\x00b", "de", "en"), "s contains a NUL character"),
    ],
)
def test_bad_suggestions_are_refused(tmp_path: Path, fields: tuple, message: str) -> None:
    store = SQLiteSuggestions(tmp_path / "s.db", max_chars=50)
    with pytest.raises(SuggestionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.add(*fields)
    assert list(store.iter()) == []
    store.add("x" * 50, "y", "pt-BR", "zh-Hans")  # at the limit, regional codes
    assert len(list(store.iter())) == 1


def test_sqlite_settings_and_libretranslate_database(tmp_path: Path) -> None:
    path = tmp_path / "suggestions.db"
    lt = sqlite3.connect(path)  # LibreTranslate's own table: four columns, no time
    lt.execute('CREATE TABLE suggestions ("q" TEXT NOT NULL, "s" TEXT NOT NULL, "source" TEXT NOT NULL,'
               ' "target" TEXT NOT NULL)')  # fmt: skip
    lt.execute("INSERT INTO suggestions VALUES ('Hallo', 'Hello', 'de', 'en')")
    lt.commit()
    lt.close()
    store = SQLiteSuggestions(path)
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.add("Tschüss", "Bye", "de", "en", at=5.0)
    assert list(store.iter()) == [
        Suggestion("Hallo", "Hello", "de", "en"),
        Suggestion("Tschüss", "Bye", "de", "en", 5.0),
    ]
    assert [s.q for s in store.iter(since=0.0)] == ["Tschüss"]  # no time: not "since" anything


def test_sqlite_missing_database_not_created_for_readers(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="no suggestions database at"):
        open_suggestions(tmp_path / "nope.db", create=False)
    assert not (tmp_path / "nope.db").exists()


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from serve.store.suggestions import open_suggestions
    store = open_suggestions(sys.argv[1], sys.argv[2] or None)
    for i in range(20):
        store.add(f"satz {i}", f"sentence {i}", "de", "en")
        print(i, flush=True)  # acknowledged
    time.sleep(600)  # the parent kills us
    """
)


def _write_then_sigkill(db: str, shared: str) -> list[str]:
    """A child adds 20 suggestions, acknowledging each on stdout; SIGKILL right after the last ack."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db, shared], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    acked = []
    for line in child.stdout:
        acked.append(line.strip())
        if len(acked) == 20:
            child.kill()
            break
    child.wait(10)
    assert child.returncode == -9
    return acked


def test_sqlite_acknowledged_write_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "db" / "suggestions.db"
    assert len(_write_then_sigkill(str(db), "")) == 20
    rows = list(SQLiteSuggestions(db).iter())
    assert [s.s for s in rows] == [f"sentence {i}" for i in range(20)]


def test_redis_acknowledged_write_survives_server_crash(tmp_path: Path) -> None:
    """With appendonly yes + appendfsync always, SIGKILLing the writer and then Redis itself loses nothing."""
    server = RedisServer(tmp_path / "r", "--appendonly", "yes", "--appendfsync", "always").start()
    try:
        assert len(_write_then_sigkill("", server.url)) == 20
        server.kill()
        server.start()
        rows = list(RedisSuggestions(server.url).iter())
        assert [s.s for s in rows] == [f"sentence {i}" for i in range(20)]
    finally:
        server.stop()


def test_redis_without_aof_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with RedisServer(tmp_path / "r", "--appendonly", "no") as server:
        RedisSuggestions(server.url).close()
    assert "without appendonly" in caplog.text


def test_unreachable_or_unknown_storage(tmp_path: Path) -> None:
    from redis_server import free_port

    with pytest.raises(StoreUnavailable, match="cannot reach Redis"):
        open_suggestions(None, f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable, match="unsupported shared storage"):
        open_suggestions(None, "postgres://x")
    assert isinstance(open_suggestions(tmp_path / "a.db", "memory://"), SQLiteSuggestions)
