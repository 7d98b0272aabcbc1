"""A real ``redis-server`` for tests: started on a free 127.0.0.1 port in a temporary folder, ready
when it answers PING, killed at the end. Import the fixture into a test module:
``from redis_fixture import redis_server  # noqa: F401``. Without the Debian package the tests
skip and say why; ``SEQ2SEQ_REQUIRE_REDIS=1`` (set by ``.ci/run``) turns that skip into a failure."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server on ``port``, with an append-only file that survives ``kill`` + ``start``
    (``fsync="always"``: every write on disk before the answer; Redis' default is "everysec")."""

    def __init__(self, workdir: Path, port: int | None = None, fsync: str = "always"):
        self.workdir, self.port, self.fsync = workdir, port or free_port(), fsync
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20.0) -> RedisServer:
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.workdir),
                "--save", "", "--appendonly", "yes", "--appendfsync", self.fsync, "--protected-mode", "no"]  # fmt: skip
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 (the process owns it)
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if probe.ping():
                    break
            except redis.RedisError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not start: {(self.workdir / 'redis.log').read_text()[-2000:]}"
                )
            time.sleep(0.02)
        probe.close()
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash: clients see their connections drop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def commands(self) -> dict[str, int]:
        """Calls per command since start (``INFO commandstats``), e.g. {"hget": 3}."""
        stats = self.client().info("commandstats")
        return {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}


def require_redis() -> None:
    if shutil.which("redis-server") is None:
        reason = "redis-server is missing (Debian package redis-server; make test installs it as root)"
        if os.environ.get("SEQ2SEQ_REQUIRE_REDIS") == "1":
            pytest.fail(reason + ", and SEQ2SEQ_REQUIRE_REDIS=1")
        pytest.skip(reason)


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for one test."""
    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()
