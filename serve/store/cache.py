"""``--translation-cache``: answers to repeated requests, for the API keys listed (or ``all``), kept
7 days in Redis (``--shared-storage``) as LibreTranslate keeps them. Without Redis each HTTP process
keeps its own small LRU: a result does not fit the fixed-size shared-memory table of the counters.
A store error is a miss (fail open), counted in ``errors_total``."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable

import redis

from serve.store.connection import Breaker, StoreUnavailable

logger = logging.getLogger(__name__)
WEEK_S = 7 * 24 * 3600


class TranslationCache:
    """``get`` before translating, ``put`` after; ``request`` is every field that changes the answer
    (texts, source, target, format, alternatives, decoding options): its JSON digest is the key."""

    def __init__(self, client: redis.Redis | None, api_keys: Iterable[str], ttl_s: int = WEEK_S,
                 namespace: str = "seq2seq", local_entries: int = 4096):  # fmt: skip
        keys = [k.strip() for k in api_keys if k.strip()]
        self.cache_all = any(k.lower() == "all" for k in keys)
        self.api_keys = frozenset(k for k in keys if k.lower() != "all")
        self.client, self.ttl_s, self.prefix = client, ttl_s, f"{namespace}:tcache:"
        self.breaker = Breaker("the translation cache")
        self.local: OrderedDict[str, bytes] = OrderedDict()
        self.local_entries = local_entries
        self.errors_total = 0  # store errors of this process (each answered as a miss)

    def applies(self, api_key: str | None) -> bool:
        """Whether requests with this key (None: keyless) are cached."""
        return self.cache_all or (api_key is not None and api_key in self.api_keys)

    def _key(self, request: dict) -> str:
        blob = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return self.prefix + hashlib.sha256(blob.encode()).hexdigest()

    def get(self, request: dict) -> dict | None:
        key = self._key(request)
        if self.client is None:
            raw = self.local.get(key)
            if raw is not None:
                self.local.move_to_end(key)
        else:
            try:
                raw = self.breaker.call(lambda: self.client.get(key))
            except StoreUnavailable as e:
                self._failed(e)
                return None
        return None if raw is None else json.loads(gzip.decompress(raw))

    def put(self, request: dict, response: dict) -> None:
        key, raw = self._key(request), gzip.compress(json.dumps(response).encode())
        if self.client is None:
            self.local[key] = raw
            self.local.move_to_end(key)
            while len(self.local) > self.local_entries:
                self.local.popitem(last=False)
            return
        try:
            self.breaker.call(lambda: self.client.set(key, raw, ex=self.ttl_s))
        except StoreUnavailable as e:
            self._failed(e)

    def _failed(self, error: StoreUnavailable) -> None:
        self.errors_total += 1
        if self.errors_total == 1 or self.errors_total % 1000 == 0:
            logger.warning("translation cache skipped (%d times so far): %s", self.errors_total, error)
