"""API keys in a SQLite file (``--api-keys-db-path``), for one host without Redis.

Every HTTP process opens its own connection (a connection must not cross a fork) and reads the file
on every lookup, so a key added or removed by ``seq2seq-keys`` counts at once. WAL mode lets them
read while the command writes; a write is committed (synchronous=FULL) before the command returns.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from serve.store.connection import StoreUnavailable
from serve.store.keys_base import ID_LENGTH, KeyEntry, KeyLimits, KeyStore, key_digest

SCHEMA = """CREATE TABLE IF NOT EXISTS seq2seq_api_keys (
    key_sha256 TEXT PRIMARY KEY,
    req_limit INTEGER NOT NULL,
    char_limit INTEGER DEFAULT NULL,
    hint TEXT NOT NULL,
    created REAL NOT NULL
)"""


class SqliteKeyStore(KeyStore):
    """Keys in the table ``seq2seq_api_keys`` of ``path`` (created with its folder when missing)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "api_keys" in tables and "seq2seq_api_keys" not in tables:
                conn.close()
                raise ValueError(
                    f"{self.path} is a LibreTranslate key file (keys in clear): import it with "
                    f"`seq2seq-keys import-libretranslate {self.path}` into a file of its own"
                )
            conn.execute(SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            with self._lock:
                cursor = self._connection().execute(sql, args)
                return cursor.fetchall() if sql.lstrip().startswith("SELECT") else [(cursor.rowcount,)]
        except (sqlite3.Error, OSError) as e:
            self._conn = None  # open it again next time: the file may come back
            raise StoreUnavailable(f"the API key file {self.path} cannot be used: {e}") from e

    def lookup(self, key: str) -> KeyLimits | None:
        rows = self._run("SELECT req_limit, char_limit FROM seq2seq_api_keys WHERE key_sha256 = ?",
                         (key_digest(key),))  # fmt: skip
        return KeyLimits(rows[0][0], rows[0][1]) if rows else None

    def _put(self, digest: str, entry: KeyEntry) -> None:
        self._run(
            "INSERT OR REPLACE INTO seq2seq_api_keys VALUES (?, ?, ?, ?, ?)",
            (digest, entry.limits.req_limit, entry.limits.char_limit, entry.hint, entry.created),
        )

    def _delete(self, digest: str) -> bool:
        return self._run("DELETE FROM seq2seq_api_keys WHERE key_sha256 = ?", (digest,))[0][0] > 0

    def _all(self) -> dict[str, KeyEntry]:
        rows = self._run("SELECT key_sha256, req_limit, char_limit, hint, created FROM seq2seq_api_keys")
        return {d: KeyEntry(d[:ID_LENGTH], hint, KeyLimits(r, c), t) for d, r, c, hint, t in rows}

    def ping(self) -> None:
        self._run("SELECT count(*) FROM seq2seq_api_keys")

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


def read_libretranslate(path: str | os.PathLike[str]) -> list[tuple[str, int, int | None]]:
    """(key, req_limit, char_limit) of every key in a LibreTranslate ``api_keys.db``; ValueError
    naming the file when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(api_keys)")}
            if not {"api_key", "req_limit"} <= columns:
                raise ValueError(
                    f"{p}: not a LibreTranslate key file (no table api_keys(api_key, req_limit))"
                )
            char = "char_limit" if "char_limit" in columns else "NULL"  # older files lack the column
            return [tuple(r) for r in conn.execute(f"SELECT api_key, req_limit, {char} FROM api_keys")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{p}: not a SQLite file ({e})") from e
