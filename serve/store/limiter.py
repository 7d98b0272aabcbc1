"""Rate limits as LibreTranslate has them, with the ``limits`` library: ``--req-limit`` per minute,
``--hourly-req-limit`` and ``--daily-req-limit``, per API key when one is sent, else per client
address. A key's own ``req_limit`` replaces the per-minute limit, and the hourly and daily windows
(when on) scale from it x60 and x1440. A request costs its number of texts.

Counters live in Redis with ``--shared-storage`` (one ``EVALSHA`` per window), else in this host's
shared memory (``serve.store.shm``), counted over every HTTP process. Fixed windows, the cheapest
strategy: one counter per client and window. If Redis cannot be reached the request goes through
(fail open): a warning in the log, ``fail_open_total`` and the ``on_fail_open`` hook count it.
``FloodGuard`` is ``--req-flood-threshold``: bans after repeated 429s, in the same storage.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from serve.store.connection import Breaker, StoreUnavailable, public_url
from serve.store.shm import SharedMemoryStorage

logger = logging.getLogger(__name__)
HOURLY, DAILY = 60, 1440  # a key's req_limit per minute, scaled to the hour and the day (LibreTranslate's)


@dataclass(frozen=True)
class Verdict:
    """A request's fate. Refused: ``retry_after`` seconds (for ``Retry-After``) and the limit hit, as
    LibreTranslate words it ("3 per 1 minute"). ``checked`` False: let through unchecked (fail open)."""

    allowed: bool
    retry_after: int = 0
    limit: str = ""
    checked: bool = True


def client_id(address: str, api_key: str | None) -> str:
    """Who is counted: the key (by digest, so no key is written to the store) or the address."""
    if api_key:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:32]
    return "addr:" + address


class Counters:
    """A ``limits`` fixed-window limiter on Redis or shared memory, behind a fail-open breaker."""

    def __init__(self, client: redis.Redis | None, namespace: str = "seq2seq", slots: int = 65536,
                 on_fail_open: Callable[[str], None] | None = None):  # fmt: skip
        self.storage: Storage
        if client is None:
            self.storage, self.where = SharedMemoryStorage(slots), "this host's shared memory"
        else:  # the client's pool: one set of connections for keys, limits and cache
            kwargs = client.connection_pool.connection_kwargs
            self.where = public_url(
                f"redis://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
            )
            self.storage = RedisStorage("redis://", connection_pool=client.connection_pool,
                                        key_prefix=f"{namespace}:limits", wrap_exceptions=True)  # fmt: skip
        self.strategy = FixedWindowRateLimiter(self.storage)
        self.breaker = Breaker(f"the rate-limit store at {self.where}", errors=(StorageError,))
        self.on_fail_open = on_fail_open
        self.fail_open_total = 0  # requests let through unchecked by this process
        self._warned_at = -math.inf

    def call(self, fn: Callable[[], object]) -> object:
        return self.breaker.call(fn)

    def failed_open(self, error: StoreUnavailable) -> None:
        self.fail_open_total += 1
        if self.on_fail_open is not None:
            self.on_fail_open(str(error))
        if time.monotonic() - self._warned_at >= 10:  # one line per 10 s, not one per request
            self._warned_at = time.monotonic()
            logger.warning("rate limits not applied (%d requests so far): %s", self.fail_open_total, error)


class RequestLimiter:
    """``hit`` before a translation; limits <= 0 are off (LibreTranslate's -1)."""

    def __init__(self, counters: Counters, req_limit: int = -1, hourly_req_limit: int = -1,
                 daily_req_limit: int = -1):  # fmt: skip
        self.counters = counters
        self.req_limit, self.hourly, self.daily = req_limit, hourly_req_limit, daily_req_limit

    @property
    def fail_open_total(self) -> int:
        return self.counters.fail_open_total

    @functools.lru_cache(maxsize=1024)  # noqa: B019 (a few distinct key limits; the limiter lives as long as the server)
    def windows(self, key_req_limit: int | None = None) -> tuple[RateLimitItem, ...]:
        """The limits that apply: the global ones, or those scaled from a key's own ``req_limit``."""
        per_minute = key_req_limit if key_req_limit else self.req_limit
        hourly = (key_req_limit * HOURLY if key_req_limit else self.hourly) if self.hourly > 0 else 0
        daily = (key_req_limit * DAILY if key_req_limit else self.daily) if self.daily > 0 else 0
        items = [RateLimitItemPerMinute(per_minute, namespace="req")] if per_minute > 0 else []
        items += [RateLimitItemPerHour(hourly, namespace="req")] if hourly > 0 else []
        return tuple(items + ([RateLimitItemPerDay(daily, namespace="req")] if daily > 0 else []))

    def hit(self, address: str, api_key: str | None = None, key_req_limit: int | None = None,
            cost: int = 1) -> Verdict:  # fmt: skip
        """Count ``cost`` requests of the client; refused at the first window that is full (the
        windows before it keep the count, as flask-limiter does)."""
        items = self.windows(key_req_limit)
        if not items:
            return Verdict(True)
        who, strategy = client_id(address, api_key), self.counters.strategy
        try:
            for item in items:
                if not self.counters.call(lambda item=item: strategy.hit(item, who, cost=cost)):
                    reset = self.counters.call(
                        lambda item=item: strategy.storage.get_expiry(item.key_for(who))
                    )
                    return Verdict(False, max(1, math.ceil(float(reset) - time.time())), str(item))
        except StoreUnavailable as e:
            self.counters.failed_open(e)
            return Verdict(True, checked=False)
        return Verdict(True)


class FloodGuard:
    """``--req-flood-threshold``: an address refused 429 ``threshold`` times within a 10-minute window
    is banned (LibreTranslate's 403 "Too many request limits violations") until the window ends.
    LibreTranslate lets bans decay in a scheduled job; a window needs no job and no ``--secondary``."""

    MESSAGE = "Too many request limits violations"

    def __init__(self, counters: Counters, threshold: int, minutes: int = 10):
        if threshold < 1:
            raise ValueError("--req-flood-threshold must be at least 1")
        self.counters, self.item = counters, RateLimitItemPerMinute(threshold, minutes, namespace="flood")

    def banned(self, address: str) -> bool:
        """True when the address has reached the threshold; False (fail open) when the store is down."""
        who, strategy = "addr:" + address, self.counters.strategy
        try:
            return not self.counters.call(lambda: strategy.test(self.item, who))
        except StoreUnavailable as e:
            self.counters.failed_open(e)
            return False

    def report(self, address: str) -> None:
        """Count one 429 answered to the address."""
        try:
            self.counters.call(lambda: self.counters.strategy.hit(self.item, "addr:" + address))
        except StoreUnavailable as e:
            self.counters.failed_open(e)
