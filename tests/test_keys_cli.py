"""``seq2seq-keys`` as an operator runs it (the installed console script), on Redis and on SQLite."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from redis_fixture import free_port, redis_server  # noqa: F401

from serve.store.keys import KeyLimits, RedisKeyStore, SqliteKeyStore

KEYS = str(Path(sys.executable).with_name("seq2seq-keys"))
# LibreTranslate 1.9's own schema (libretranslate/api_keys.py), keys in clear
LT_SCHEMA = """CREATE TABLE IF NOT EXISTS api_keys ("api_key" TEXT NOT NULL, "req_limit" INTEGER NOT NULL,
    "char_limit" INTEGER DEFAULT NULL, PRIMARY KEY("api_key"))"""


def keys(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEQ2SEQ_")}
    return subprocess.run([KEYS, *args], capture_output=True, text=True, timeout=60, env=clean | (env or {}))


@pytest.fixture(params=["sqlite", "redis"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment variables that point the command (and the server) at one store."""
    if request.param == "sqlite":
        return {"SEQ2SEQ_API_KEYS_DB_PATH": str(tmp_path / "keys.db")}
    return {"SEQ2SEQ_SHARED_STORAGE": request.getfixturevalue("redis_server").url}


def server_store(env: dict[str, str]):
    if "SEQ2SEQ_SHARED_STORAGE" in env:
        return RedisKeyStore.from_url(env["SEQ2SEQ_SHARED_STORAGE"])
    return SqliteKeyStore(env["SEQ2SEQ_API_KEYS_DB_PATH"])


def test_add_list_remove(store_env: dict[str, str]) -> None:
    store = server_store(store_env)
    added = keys("add", "120", "--char-limit", "300", env=store_env)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert len(key) == 36 and store.lookup(key) == KeyLimits(120, 300)  # the server sees it at once
    mine = keys("add", "5", "--key", "team-blue-2026", env=store_env)
    assert mine.stdout == "team-blue-2026\n" and store.lookup("team-blue-2026") == KeyLimits(5, None)
    listed = keys("list", env=store_env)
    lines = listed.stdout.splitlines()
    assert listed.returncode == 0 and len(lines) == 2
    assert key not in listed.stdout and "team-blue-2026" not in listed.stdout
    assert "req_limit=120/min  char_limit=300" in lines[0] and lines[0].split()[1] == key[:4] + "..."
    assert "req_limit=5/min  char_limit=server" in lines[1]
    key_id = lines[1].split()[0]
    assert keys("remove", key, env=store_env).returncode == 0 and store.lookup(key) is None
    assert keys("remove", key_id, env=store_env).returncode == 0 and store.lookup("team-blue-2026") is None
    gone = keys("remove", key, env=store_env)
    assert gone.returncode == 1 and "no such key" in gone.stderr
    empty = keys("list", env=store_env)
    assert empty.returncode == 0 and empty.stdout == "" and "no API keys" in empty.stderr


def test_options_win_over_the_environment(tmp_path: Path) -> None:
    env = {"SEQ2SEQ_API_KEYS_DB_PATH": str(tmp_path / "env.db")}
    key = keys("--api-keys-db-path", str(tmp_path / "flag.db"), "add", "3", env=env).stdout.strip()
    assert SqliteKeyStore(tmp_path / "flag.db").lookup(key) == KeyLimits(3, None)
    assert SqliteKeyStore(tmp_path / "env.db").lookup(key) is None


def test_import_libretranslate(store_env: dict[str, str], tmp_path: Path) -> None:
    lt = tmp_path / "api_keys.db"
    with sqlite3.connect(lt) as c:
        c.execute(LT_SCHEMA)
        c.executemany("INSERT INTO api_keys VALUES (?, ?, ?)",
                      [("0f8e2c1a-lt-key-one", 80, None), ("lt-key-two", 10, 2000)])  # fmt: skip
    done = keys("import-libretranslate", str(lt), env=store_env)
    assert done.returncode == 0 and "imported 2 keys" in done.stderr, done.stderr
    store = server_store(store_env)  # clients keep their keys: the same strings work
    assert store.lookup("0f8e2c1a-lt-key-one") == KeyLimits(80, None)
    assert store.lookup("lt-key-two") == KeyLimits(10, 2000)
    old = tmp_path / "old.db"  # before LibreTranslate added char_limit
    with sqlite3.connect(old) as c:
        c.execute('CREATE TABLE api_keys ("api_key" TEXT NOT NULL PRIMARY KEY, "req_limit" INTEGER NOT NULL)')
        c.execute("INSERT INTO api_keys VALUES ('old-key', 7)")
    assert keys("import-libretranslate", str(old), env=store_env).returncode == 0
    assert store.lookup("old-key") == KeyLimits(7, None)


def test_clear_errors(tmp_path: Path) -> None:
    db = {"SEQ2SEQ_API_KEYS_DB_PATH": str(tmp_path / "k.db")}
    cases = [
        (["add", "0"], db, 2, "req_limit must be at least 1"),
        (["add", "ten"], db, 2, "invalid int value: 'ten'"),
        (["import-libretranslate", str(tmp_path / "missing.db")], db, 2, "missing.db: no such file"),
        (["--shared-storage", "http://x:1", "list"], {}, 2, "--shared-storage must be redis://"),
        (["--shared-storage", f"redis://127.0.0.1:{free_port()}/0", "list"], {}, 1, "Connection refused"),
        ([], db, 2, "required: COMMAND"),
    ]
    not_sqlite = tmp_path / "text.db"
    not_sqlite.write_text("hello\n" * 1000)
    cases.append((["import-libretranslate", str(not_sqlite)], db, 2, "text.db: not a SQLite file"))
    lt = tmp_path / "api_keys.db"
    with sqlite3.connect(lt) as c:
        c.execute(LT_SCHEMA)
    cases.append((["--api-keys-db-path", str(lt), "list"], {}, 2, "is a LibreTranslate key file"))
    for args, env, code, message in cases:
        run = keys(*args, env=env)
        assert (run.returncode, run.stdout) == (code, ""), (args, run.stderr)
        last = run.stderr.splitlines()[-1]  # argparse prints its usage above
        assert last.startswith("seq2seq-keys") and ": error: " in last and message in last, (args, run.stderr)


def test_a_key_write_waits_for_the_disk_or_says_it_cannot(redis_server) -> None:
    env = {"SEQ2SEQ_SHARED_STORAGE": redis_server.url}
    version = tuple(int(x) for x in redis_server.client().info("server")["redis_version"].split(".")[:2])
    added = keys("add", "3", env=env)
    assert added.returncode == 0
    if version < (7, 2):  # no WAITAOF: the operator is told how to make writes durable
        assert "older than 7.2" in added.stderr and "--appendfsync always" in added.stderr
        return
    assert "warning" not in added.stderr
    redis_server.client().config_set("appendonly", "no")
    added = keys("add", "3", env=env)
    assert added.returncode == 0 and "keeps no append-only file" in added.stderr
