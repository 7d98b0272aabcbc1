"""The API key stores: Redis (``--shared-storage``, one ``HGET`` per lookup) and a SQLite file
(``--api-keys-db-path``, ``serve.store.keys_sqlite``); what they share is in ``serve.store.keys_base``."""

from __future__ import annotations

import redis

from serve.store.connection import Breaker, StoreUnavailable, public_url, redis_client
from serve.store.keys_base import (
    DEFAULT_DB_PATH,
    KeyEntry,
    KeyLimits,
    KeyStore,
    decode_entry,
    encode_entry,
    key_digest,
)
from serve.store.keys_sqlite import SqliteKeyStore


class RedisKeyStore(KeyStore):
    """Keys in one Redis hash, ``{namespace}:api-keys``: digest -> JSON. A lookup is one ``HGET``."""

    def __init__(self, client: redis.Redis, namespace: str = "seq2seq", breaker: Breaker | None = None):
        self.client, self.hash = client, f"{namespace}:api-keys"
        kwargs = client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
        self._where = public_url(f"redis://{where}")
        self.breaker = breaker or Breaker(f"the API key store at {self._where}")
        self.warnings: set[str] = set()  # about durability, for seq2seq-keys to print

    @classmethod
    def from_url(cls, url: str, namespace: str = "seq2seq") -> RedisKeyStore:
        return cls(redis_client(url), namespace)

    def lookup(self, key: str) -> KeyLimits | None:
        raw = self.breaker.call(lambda: self.client.hget(self.hash, key_digest(key)))
        return None if raw is None else decode_entry("", raw).limits

    def _put(self, digest: str, entry: KeyEntry) -> None:
        self.breaker.call(lambda: self.client.hset(self.hash, digest, encode_entry(entry)))
        self._on_disk()

    def _delete(self, digest: str) -> bool:
        removed = bool(self.breaker.call(lambda: self.client.hdel(self.hash, digest)))
        self._on_disk()
        return removed

    def _on_disk(self) -> None:
        """Wait until Redis has the write in its append-only file (``WAITAOF``, Redis >= 7.2), so an
        acknowledged key survives a crash; where Redis cannot tell, say so in ``warnings``."""
        try:
            local, _ = self.breaker.call(lambda: self.client.execute_command("WAITAOF", 1, 0, 5000))
        except StoreUnavailable as e:
            cause = str(e.__cause__ or e)
            if "appendonly is disabled" in cause:
                self.warnings.add(f"Redis at {self._where} keeps no append-only file: its keys are lost "
                                  "when it restarts (run it with --appendonly yes)")  # fmt: skip
            elif "unknown command" in cause.lower():
                self.warnings.add(f"Redis at {self._where} is older than 7.2 and cannot confirm that a "
                                  "write is on disk: run it with --appendfsync always")  # fmt: skip
            else:
                raise
            self.breaker.reset()
            return
        if local < 1:
            raise StoreUnavailable(f"Redis at {self._where} did not write the change to disk within 5 s")

    def _all(self) -> dict[str, KeyEntry]:
        raw = self.breaker.call(lambda: self.client.hgetall(self.hash))
        return {d.decode(): decode_entry(d.decode(), v) for d, v in raw.items()}

    def ping(self) -> None:
        self.breaker.call(self.client.ping)

    def describe(self) -> str:
        return self._where

    def close(self) -> None:
        self.client.close()


def open_key_store(shared_storage: str | None, db_path: str = DEFAULT_DB_PATH) -> KeyStore:
    """Redis when ``shared_storage`` (``--shared-storage``) is given, else the SQLite file. Neither
    connects here: a server starts while its store is still coming up."""
    if shared_storage:
        return RedisKeyStore.from_url(shared_storage)
    return SqliteKeyStore(db_path)


__all__ = ["DEFAULT_DB_PATH", "KeyEntry", "KeyLimits", "KeyStore", "RedisKeyStore", "SqliteKeyStore",
           "StoreUnavailable",
           "key_digest", "open_key_store"]  # fmt: skip
