"""Redis connections for the shared store: short timeouts, one retry (which also reconnects after a
Redis restart), and a breaker so that an unreachable Redis costs one timeout a second, not one per
request. Own breaker, not pybreaker: that one opens only after several failures, each a timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

T = TypeVar("T")
SCHEMES = ("redis", "rediss", "unix")


class StoreUnavailable(RuntimeError):
    """The shared store cannot be reached. Key checks raise it (the server answers 503, never lets a
    key pass unchecked); the limiter catches it and lets the request through."""


def check_url(url: str) -> str:
    """``url`` if it names a Redis server, else ``ValueError`` saying what is accepted."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or (parts.scheme != "unix" and not parts.hostname):
        raise ValueError(
            f"--shared-storage must be redis://host:port/db (or rediss://, unix://), not {url!r}"
        )
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
        db = parts.path.strip("/")
        if parts.scheme != "unix" and db and not db.isdigit():
            raise ValueError
    except ValueError:
        raise ValueError(f"--shared-storage {url!r}: the port and the database must be numbers") from None
    return url


def public_url(url: str) -> str:
    """The URL without its password, for logs and ``/info``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{netloc}").geturl()


def redis_client(url: str, timeout_s: float = 0.5) -> redis.Redis:
    """A client whose pool reconnects by itself; it connects on first use, so a replica starts while
    Redis is still coming up. The pool is safe to share with processes forked later (redis-py
    opens new connections in a child)."""
    return redis.Redis.from_url(
        check_url(url),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
    )


class Breaker:
    """Calls fail at once with ``StoreUnavailable`` for ``pause_s`` after a store error."""

    def __init__(self, what: str, pause_s: float = 1.0, errors: tuple[type[BaseException], ...] = ()):
        self.what, self.pause_s = what, pause_s
        self.errors = (redis.RedisError, OSError, *errors)
        self.last_error: str | None = None  # why the store was last unreachable (for /info)
        self.last_error_at = 0.0  # time.time() of that error
        self._closed_until = 0.0  # time.monotonic()

    def call(self, fn: Callable[[], T]) -> T:
        if time.monotonic() < self._closed_until:
            raise StoreUnavailable(f"{self.what} unreachable: {self.last_error}")
        try:
            return fn()
        except self.errors as e:
            self.last_error, self.last_error_at = f"{type(e).__name__}: {e}", time.time()
            self._closed_until = time.monotonic() + self.pause_s
            raise StoreUnavailable(f"{self.what} unreachable: {self.last_error}") from e

    def reset(self) -> None:
        """Forget an error that said nothing about reachability (an answer that was an error)."""
        self._closed_until = 0.0

    @property
    def healthy(self) -> bool:
        """False while the breaker holds calls back after an error."""
        return time.monotonic() >= self._closed_until
