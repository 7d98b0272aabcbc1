"""The ``redis_server`` fixture: a fresh ``redis-server`` (``redis_server.RedisServer``) with an
append-only file, for one test. Import it into a test module:
``from redis_fixture import redis_server  # noqa: F401``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_server import RedisServer as _RedisServer
from redis_server import free_port, require_redis_server

__all__ = ["RedisServer", "free_port", "redis_server", "require_redis"]


class RedisServer(_RedisServer):
    """A redis-server whose append-only file survives ``kill`` + ``start`` (``fsync="always"``:
    every write on disk before the answer; Redis' default is "everysec")."""

    def __init__(self, workdir: Path, port: int | None = None, fsync: str = "always"):
        super().__init__(workdir, "--appendonly", "yes", "--appendfsync", fsync, port=port)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def commands(self) -> dict[str, int]:
        """Calls per command since start (``INFO commandstats``), e.g. {"hget": 3}."""
        stats = self.client().info("commandstats")
        return {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}


def require_redis() -> None:
    """Skip (fail with SEQ2SEQ_REQUIRE_REDIS=1) without the Debian package redis-server."""
    require_redis_server()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for one test."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()
