"""The shared store in the server: what ``--shared-storage``, ``--api-keys``, the limits, the flood
threshold and ``--translation-cache`` make, before LitServe forks its HTTP processes, and the
store's health (``Access.status``, shown in ``/info``).

One Redis client (``serve.store.connection``; it connects on first use, so a replica starts while
Redis is still coming up) serves keys, counters, bans and the cache; without ``--shared-storage``
the counters live in this host's shared memory and the keys in the SQLite file.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

from serve.ops import metrics
from serve.ops.ratelimit import AccessMiddleware
from serve.store.cache import TranslationCache
from serve.store.connection import StoreUnavailable, public_url, redis_client
from serve.store.keys import KeyStore, RedisKeyStore, SqliteKeyStore
from serve.store.limiter import Counters, FloodGuard, RequestLimiter

logger = logging.getLogger(__name__)


@dataclass
class Access:
    """The store objects of one server (each None when its option is off)."""

    shared_storage: str | None
    keys: KeyStore | None
    limiter: RequestLimiter | None
    flood: FloodGuard | None
    cache: TranslationCache | None
    keys_required: bool = False

    def middleware(self, native_paths: frozenset[str], libretranslate_paths: frozenset[str]) -> tuple | None:
        """``AccessMiddleware`` with its settings, or None when neither keys nor limits are on."""
        if self.keys is None and self.limiter is None and self.flood is None:
            return None
        return AccessMiddleware, {"native_paths": native_paths, "libretranslate_paths": libretranslate_paths,
                                  "limiter": self.limiter, "keys": self.keys,
                                  "keys_required": self.keys_required, "flood": self.flood}  # fmt: skip

    def status(self) -> dict:
        """Each store part and whether it answers now (a live ping: ``/info`` is rare), with the
        reason when it does not."""
        parts: dict = {}
        if self.keys is not None:
            parts["api_keys"] = _probe(self.keys.describe(), self.keys.ping)
        counters = self.limiter.counters if self.limiter else self.flood.counters if self.flood else None
        if counters is not None:
            state = _probe(counters.where, lambda: counters.call(_checked(counters.storage.check)))
            parts["rate_limits"] = state | {"unchecked_requests": counters.fail_open_total}
        if self.cache is not None:
            parts["translation_cache"] = {"where": "shared storage" if self.cache.client else "this process"}
        storage = public_url(self.shared_storage) if self.shared_storage else None
        return {"shared_storage": storage, **parts}


def _checked(check):
    def run() -> None:
        if not check():
            raise OSError("no answer to PING")

    return run


def _probe(where: str, ping) -> dict:
    try:
        ping()
    except (StoreUnavailable, ValueError) as e:
        return {"where": where, "healthy": False, "reason": str(e)}
    return {"where": where, "healthy": True, "reason": None}


def build_access(args: argparse.Namespace) -> Access:
    """The store objects for the parsed options; nothing connects here."""
    url = args.shared_storage or None
    client = redis_client(url) if url else None
    keys: KeyStore | None = None
    if args.api_keys:
        keys = RedisKeyStore(client) if client is not None else SqliteKeyStore(args.api_keys_db_path)
    windows = (args.req_limit, args.hourly_req_limit, args.daily_req_limit)
    counters = None
    if any(w > 0 for w in windows) or args.req_flood_threshold > 0 or keys is not None:
        counters = Counters(client, on_fail_open=metrics.count_fail_open)
    limiter = None
    if counters is not None and (any(w > 0 for w in windows) or keys is not None):
        limiter = RequestLimiter(counters, *windows)  # a key's own req_limit applies without --req-limit
    flood = FloodGuard(counters, args.req_flood_threshold) if args.req_flood_threshold > 0 else None
    cached = [k for k in args.translation_cache.split(",") if k.strip()]
    cache = TranslationCache(client, cached) if cached else None
    if keys is not None:
        try:
            keys.ping()
        except (StoreUnavailable, ValueError) as e:  # serve anyway: keys fail closed until it answers
            logger.warning("the API key store does not answer yet: %s", e)
    return Access(url, keys, limiter, flood, cache, args.api_keys_required)
