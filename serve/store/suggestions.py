"""Durable store of users' better translations (``POST /suggest``): SQLite by default, Redis when shared.

SQLite (``db/suggestions.db``, LibreTranslate's path and table, extended with ``time`` and
``client``) runs in WAL mode with ``synchronous=FULL``: ``add`` returns after the commit is
fsynced, so an acknowledged suggestion survives a crash of the process or of the host.

Redis (a ``redis://`` URL) keeps one stream, ``seq2seq:suggestions``, that every replica appends
to. Redis acknowledges a write once it is in memory: for the same guarantee the operator must run
it with ``appendonly yes`` and ``appendfsync always`` (``everysec`` may lose the last second, RDB
snapshots alone everything since the last save). The store logs a warning when AOF is off.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_DB_PATH = "db/suggestions.db"
MAX_CHARS = 10_000  # hard cap on q and s, whatever limit the route applies
MAX_CLIENT_CHARS = 128
REDIS_STREAM = "seq2seq:suggestions"
_LANG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}")


class SuggestionError(ValueError):
    """A suggestion the store refuses (missing field, too long, bad language code): a 400."""


class StoreUnavailable(RuntimeError):
    """The store cannot be opened or reached: the write was not acknowledged (a 500/503)."""


@dataclass(frozen=True)
class Suggestion:
    """One correction: ``s`` is the better translation of ``q`` from ``source`` into ``target``.

    ``time`` is Unix seconds (None for rows written by LibreTranslate, which keeps no time);
    ``client`` identifies the sender (a key's id or an address), never a raw API key."""

    q: str
    s: str
    source: str
    target: str
    time: float | None = None
    client: str | None = None


def validate(
    q: object, s: object, source: object, target: object, client: object = None, max_chars: int = MAX_CHARS
) -> None:
    """Raise SuggestionError naming the first field that is missing, too long or malformed."""
    for name, value in (("q", q), ("s", s)):
        if not isinstance(value, str) or not value.strip():
            raise SuggestionError(f"Invalid request: missing {name} parameter")
        if len(value) > max_chars:
            raise SuggestionError(
                f"Invalid request: {name} ({len(value)} characters) exceeds the limit ({max_chars})"
            )
        if "\x00" in value:
            raise SuggestionError(f"Invalid request: {name} contains a NUL character")
    for name, value in (("source", source), ("target", target)):
        if not isinstance(value, str) or not value:
            raise SuggestionError(f"Invalid request: missing {name} parameter")
        if not _LANG.fullmatch(value):
            raise SuggestionError(f"Invalid request: {name} {value[:40]!r} is not a language code")
    if client is not None and (not isinstance(client, str) or len(client) > MAX_CLIENT_CHARS):
        raise SuggestionError(f"client must be a string of at most {MAX_CLIENT_CHARS} characters")


class SuggestionStore(Protocol):
    """What the ``/suggest`` route and the ``seq2seq-suggestions`` CLI use."""

    def add(self, q: str, s: str, source: str, target: str, client: str | None = None,
            at: float | None = None) -> None: ...  # fmt: skip

    def iter(
        self, pair: tuple[str, str] | None = None, since: float | None = None
    ) -> Iterator[Suggestion]: ...

    def clear(self, pair: tuple[str, str] | None = None) -> int: ...

    def close(self) -> None: ...


def _matches(sug: Suggestion, pair: tuple[str, str] | None, since: float | None) -> bool:
    if pair is not None and (sug.source, sug.target) != pair:
        return False
    return since is None or (sug.time is not None and sug.time >= since)


class SQLiteSuggestions:
    """Suggestions in a SQLite file; safe to share between threads and between processes on one host."""

    def __init__(self, path: str | Path = DEFAULT_DB_PATH, max_chars: int = MAX_CHARS, create: bool = True):
        self.path, self.max_chars = Path(path), max_chars
        if not create and not self.path.is_file():
            raise StoreUnavailable(f"no suggestions database at {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS suggestions (q TEXT NOT NULL, s TEXT NOT NULL,"
                " source TEXT NOT NULL, target TEXT NOT NULL, time REAL, client TEXT)"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(suggestions)")}
            for column, kind in (("time", "REAL"), ("client", "TEXT")):  # a LibreTranslate database
                if column not in columns:
                    self._db.execute(f"ALTER TABLE suggestions ADD COLUMN {column} {kind}")
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open the suggestions database {self.path}: {e}") from e
        self._lock = threading.Lock()

    def add(self, q: str, s: str, source: str, target: str, client: str | None = None,
            at: float | None = None) -> None:  # fmt: skip
        """Store one suggestion; returns once it is on disk."""
        validate(q, s, source, target, client, self.max_chars)
        row = (q, s, source, target, time.time() if at is None else at, client)
        try:
            with self._lock:
                self._db.execute("INSERT INTO suggestions VALUES (?, ?, ?, ?, ?, ?)", row)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot write to {self.path}: {e}") from e

    def iter(self, pair: tuple[str, str] | None = None, since: float | None = None) -> Iterator[Suggestion]:
        """Suggestions in the order they came, optionally of one (source, target) pair and since a time."""
        sql, args = "SELECT q, s, source, target, time, client FROM suggestions WHERE 1", []
        if pair is not None:
            sql, args = sql + " AND source = ? AND target = ?", [*args, *pair]
        if since is not None:
            sql, args = sql + " AND time >= ?", [*args, since]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY rowid", args).fetchall()
        return (Suggestion(*row) for row in rows)

    def clear(self, pair: tuple[str, str] | None = None) -> int:
        """Delete all suggestions, or those of one pair; returns how many went."""
        with self._lock:
            if pair is None:
                return self._db.execute("DELETE FROM suggestions").rowcount
            return self._db.execute("DELETE FROM suggestions WHERE source = ? AND target = ?", pair).rowcount

    def close(self) -> None:
        self._db.close()


class RedisSuggestions:
    """Suggestions in one Redis stream shared by every replica (entry ids order them in time)."""

    def __init__(self, url: str, max_chars: int = MAX_CHARS, key: str = REDIS_STREAM, client=None):
        import redis

        self.max_chars, self.key, self._errors = max_chars, key, redis.RedisError
        self._r = client or redis.Redis.from_url(url, socket_timeout=10, decode_responses=True)
        try:
            appendonly = self._r.config_get("appendonly").get("appendonly")
        except redis.ConnectionError as e:
            raise StoreUnavailable(f"cannot reach Redis for suggestions: {e}") from e
        except redis.RedisError:  # CONFIG disabled (managed Redis): cannot check
            appendonly = None
        if appendonly == "no":
            log.warning("Redis runs without appendonly: a crash loses acknowledged suggestions")

    def add(self, q: str, s: str, source: str, target: str, client: str | None = None,
            at: float | None = None) -> None:  # fmt: skip
        """Append one suggestion to the stream; returns once Redis has it."""
        validate(q, s, source, target, client, self.max_chars)
        fields = {
            "q": q,
            "s": s,
            "source": source,
            "target": target,
            "time": repr(time.time() if at is None else at),
        }
        if client is not None:
            fields["client"] = client
        try:
            self._r.xadd(self.key, fields)
        except self._errors as e:
            raise StoreUnavailable(f"cannot write the suggestion to Redis: {e}") from e

    def _entries(self) -> Iterator[tuple[str, Suggestion]]:
        start = "-"
        while True:
            try:
                chunk = self._r.xrange(self.key, min=start, max="+", count=1000)
            except self._errors as e:
                raise StoreUnavailable(f"cannot read suggestions from Redis: {e}") from e
            for entry_id, f in chunk:
                t = float(f["time"]) if "time" in f else None
                yield entry_id, Suggestion(f["q"], f["s"], f["source"], f["target"], t, f.get("client"))
            if len(chunk) < 1000:
                return
            start = "(" + chunk[-1][0]

    def iter(self, pair: tuple[str, str] | None = None, since: float | None = None) -> Iterator[Suggestion]:
        return (sug for _, sug in self._entries() if _matches(sug, pair, since))

    def clear(self, pair: tuple[str, str] | None = None) -> int:
        try:
            if pair is None:
                return self._r.pipeline().xlen(self.key).delete(self.key).execute()[0]
            ids = [entry_id for entry_id, sug in self._entries() if _matches(sug, pair, None)]
            for i in range(0, len(ids), 1000):
                self._r.xdel(self.key, *ids[i : i + 1000])
            return len(ids)
        except self._errors as e:
            raise StoreUnavailable(f"cannot clear suggestions in Redis: {e}") from e

    def close(self) -> None:
        self._r.close()


def open_suggestions(
    db_path: str | Path | None = None,
    shared_storage: str | None = None,
    max_chars: int = MAX_CHARS,
    create: bool = True,
) -> SuggestionStore:
    """Redis when ``shared_storage`` is a ``redis://`` (or ``rediss://``) URL, else the SQLite file.

    ``memory://`` or an empty value mean "no shared storage", as in LibreTranslate's ``--shared-storage``.
    ``create=False`` refuses to create a missing SQLite file (for read-only tools)."""
    if shared_storage and shared_storage.startswith(("redis://", "rediss://", "unix://")):
        return RedisSuggestions(shared_storage, max_chars)
    if shared_storage and not shared_storage.startswith("memory://"):
        raise StoreUnavailable(f"unsupported shared storage {shared_storage!r}: use redis://HOST:PORT")
    return SQLiteSuggestions(db_path or DEFAULT_DB_PATH, max_chars, create)
