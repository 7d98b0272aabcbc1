"""API keys as LibreTranslate has them (each with its own ``req_limit`` per minute and an optional
``char_limit``), in Redis (``--shared-storage``) or a SQLite file (``--api-keys-db-path``).

Keys are stored as their SHA-256 digest and looked up by it: keys are random tokens (a uuid4 has
122 bits), so a slow password hash would add only latency per request, and an unsalted digest is
what makes a lookup by key possible. Digests are compared by the store's own index, never byte by
byte in Python, so the time a lookup takes tells nothing about a key. There is no cache: a lookup is
one Redis ``HGET`` or one SQLite ``SELECT`` (tens of microseconds), so a key added or removed takes
effect on every replica at once. When the store cannot be read, ``lookup`` raises
``StoreUnavailable``: a key is never let through unchecked. The stores: ``serve.store.keys``.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

DEFAULT_DB_PATH = "db/api_keys.db"  # LibreTranslate's default
ID_LENGTH = 12  # hex digits of the digest that name a key in listings


@dataclass(frozen=True)
class KeyLimits:
    """What a key may do: requests per minute (hourly and daily windows scale from it), and the
    characters per text (None: the server's ``--char-limit``)."""

    req_limit: int
    char_limit: int | None = None


@dataclass(frozen=True)
class KeyEntry:
    """A stored key as listings show it: never the key itself."""

    key_id: str  # the first ID_LENGTH hex digits of its digest
    hint: str  # its first 4 characters
    limits: KeyLimits
    created: float  # time.time()


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_limits(req_limit: int, char_limit: int | None) -> KeyLimits:
    """LibreTranslate's rules: ``char_limit`` 0 or None means the server's limit."""
    if req_limit < 1:
        raise ValueError(f"req_limit must be at least 1 request per minute, not {req_limit}")
    if char_limit is not None and char_limit < 0:
        raise ValueError(f"char_limit must be at least 1 (or 0 for the server's limit), not {char_limit}")
    return KeyLimits(req_limit, char_limit or None)


class KeyStore(ABC):
    """The interface the server and ``seq2seq-keys`` use; every method may raise ``StoreUnavailable``."""

    @abstractmethod
    def lookup(self, key: str) -> KeyLimits | None:
        """The key's limits, or None for an unknown key."""

    @abstractmethod
    def _put(self, digest: str, entry: KeyEntry) -> None: ...

    @abstractmethod
    def _delete(self, digest: str) -> bool: ...

    @abstractmethod
    def _all(self) -> dict[str, KeyEntry]:
        """Every key by digest."""

    @abstractmethod
    def ping(self) -> None:
        """Raise ``StoreUnavailable`` (or ``ValueError`` for a wrong file) unless the store answers:
        for a start-up check that logs, since a server starts while its store is still coming up."""

    @abstractmethod
    def describe(self) -> str:
        """Where the keys are (no password), for logs and ``/info``."""

    def add(self, req_limit: int, char_limit: int | None = None, key: str | None = None) -> str:
        """Store a key (a new uuid4 unless given; an existing key gets the new limits) and return it."""
        limits = check_limits(req_limit, char_limit)
        key = key or str(uuid.uuid4())
        if not key.strip() or key != key.strip():
            raise ValueError("a key must not be empty or start or end with a space")
        digest = key_digest(key)
        self._put(digest, KeyEntry(digest[:ID_LENGTH], key[:4], limits, time.time()))
        return key

    def remove(self, key_or_id: str) -> bool:
        """Remove a key, given in full or by the id ``entries`` shows; False if there is none."""
        if self._delete(key_digest(key_or_id)):
            return True
        if len(key_or_id) == ID_LENGTH:
            matches = [d for d in self._all() if d.startswith(key_or_id.lower())]
            if len(matches) == 1:
                return self._delete(matches[0])
        return False

    def entries(self) -> list[KeyEntry]:
        return sorted(self._all().values(), key=lambda e: (e.created, e.key_id))

    def close(self) -> None:  # noqa: B027 (only some stores hold a connection)
        """Release connections."""


def encode_entry(entry: KeyEntry) -> str:
    limits = entry.limits
    return json.dumps({"req_limit": limits.req_limit, "char_limit": limits.char_limit,
                       "hint": entry.hint, "created": entry.created})  # fmt: skip


def decode_entry(digest: str, raw: bytes | str) -> KeyEntry:
    d = json.loads(raw)
    return KeyEntry(digest[:ID_LENGTH], d["hint"], KeyLimits(d["req_limit"], d["char_limit"]), d["created"])
