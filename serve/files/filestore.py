"""Translated files awaiting ``GET /download_file/<name>``: a local folder with expiry, or Redis with a TTL.

Names are LibreTranslate's: ``<uuid4>.<secure file name stem>_<target><ext>`` (``3f2a....report_de.docx``),
downloaded as the name without its uuid (``report_de.docx``). Files expire ``ttl`` seconds after they
were stored (LibreTranslate: 30 minutes, swept every 30 minutes). In Redis every replica serves every
download; in a local folder only the replica that made it.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from serve.files.errors import InvalidFileName, StoredFileNotFound

DEFAULT_TTL = 1800.0
REDIS_PREFIX = "seq2seq:file:"
MAX_STEM = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_STORED = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.[A-Za-z0-9_.-]+")
# what ``stored_name`` makes, for the API document (no "..": ``check_name`` refuses it)
NAME_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}(\.[A-Za-z0-9_-]+)+$"


def secure_filename(filename: str) -> str:
    """Werkzeug's ``secure_filename`` (what LibreTranslate applies): ASCII letters, digits, ``_.-``;
    separators and spaces become ``_``; leading and trailing dots and underscores go."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    for sep in (os.sep, os.path.altsep):
        if sep:
            ascii_name = ascii_name.replace(sep, " ")
    return _UNSAFE.sub("", "_".join(ascii_name.split())).strip("._")


def stored_name(filename: str, target: str) -> str:
    """A new store name for the translation into ``target`` of the upload ``filename``."""
    stem, ext = os.path.splitext(secure_filename(filename))
    if not stem or not ext:  # "résumé.txt" is safe as "resume.txt", but "файл.txt" only as "txt"
        safe_ext = secure_filename(os.path.splitext(filename)[1])
        stem, ext = "file", f".{safe_ext}" if safe_ext else ""
    return f"{uuid.uuid4()}.{stem[:MAX_STEM]}_{secure_filename(target)}{ext}"


def download_name(name: str) -> str:
    """The file name a client saves: the store name without its uuid."""
    return name.split(".", 1)[1]


def check_name(name: str) -> str:
    """``name`` if the store could have made it, else InvalidFileName (no ``..``, no separators)."""
    if not _STORED.fullmatch(name) or ".." in name:
        raise InvalidFileName("Invalid filename")
    return name


class FileStore(Protocol):
    """``put`` a translated file under a ``stored_name``; ``get`` it back until it expires."""

    ttl: float

    def put(self, name: str, data: bytes) -> None: ...

    def get(self, name: str) -> bytes: ...


class LocalFileStore:
    """Files in one folder, expired by their stored time (``clock``: injectable for tests)."""

    def __init__(self, directory: str | Path | None = None, ttl: float = DEFAULT_TTL,
                 clock: Callable[[], float] = time.time):  # fmt: skip
        self.directory = Path(directory or Path(tempfile.gettempdir()) / "seq2seq-files")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ttl, self.clock = ttl, clock
        self._next_purge = 0.0

    def put(self, name: str, data: bytes) -> None:
        path = self.directory / check_name(name)
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        now = self.clock()
        os.utime(tmp, (now, now))  # the stored time, on the store's clock
        tmp.replace(path)
        if now >= self._next_purge:  # sweep now and then, not on every upload
            self._next_purge = now + self.ttl / 2
            self.purge()

    def get(self, name: str) -> bytes:
        path = self.directory / check_name(name)
        try:
            if self._expired(path.stat().st_mtime):
                path.unlink(missing_ok=True)
                raise StoredFileNotFound(f"{name} has expired")
            return path.read_bytes()
        except FileNotFoundError:
            raise StoredFileNotFound(f"no file {name}") from None

    def _expired(self, stored: float) -> bool:
        return self.clock() - stored >= self.ttl

    def purge(self) -> int:
        """Delete expired files; returns how many."""
        removed = 0
        for entry in os.scandir(self.directory):
            try:
                if entry.is_file() and self._expired(entry.stat().st_mtime):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:  # another worker swept it first
                pass
        return removed


class RedisFileStore:
    """Files as Redis strings with a TTL: any replica serves any download; Redis expires them."""

    def __init__(self, url: str, ttl: float = DEFAULT_TTL, prefix: str = REDIS_PREFIX, client=None):
        import redis

        self.ttl, self.prefix = ttl, prefix
        self._r = client or redis.Redis.from_url(url, socket_timeout=10)

    def put(self, name: str, data: bytes) -> None:
        self._r.set(self.prefix + check_name(name), data, px=max(1, int(self.ttl * 1000)))

    def get(self, name: str) -> bytes:
        data = self._r.get(self.prefix + check_name(name))
        if data is None:
            raise StoredFileNotFound(f"no file {name} (or it has expired)")
        return data


def open_file_store(
    shared_storage: str | None = None, directory: str | Path | None = None, ttl: float = DEFAULT_TTL
) -> FileStore:
    """Redis when ``shared_storage`` is a ``redis://`` URL (``memory://`` or empty: none), else the folder."""
    if shared_storage and shared_storage.startswith(("redis://", "rediss://", "unix://")):
        return RedisFileStore(shared_storage, ttl)
    if shared_storage and not shared_storage.startswith("memory://"):
        raise ValueError(f"unsupported shared storage {shared_storage!r}: use redis://HOST:PORT")
    return LocalFileStore(directory, ttl)
