"""A real ``redis-server`` for tests: started on a free 127.0.0.1 port in its own directory, polled
with PING until it answers, stopped (or killed, to test durability) by the test.

    with RedisServer(tmp_path, "--appendonly", "yes") as server:
        client = redis.Redis.from_url(server.url)

Tests skip when ``redis-server`` is not installed, unless ``SEQ2SEQ_REQUIRE_REDIS=1`` (then they fail).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_redis_server() -> str:
    """Path of ``redis-server``, or skip (fail when SEQ2SEQ_REQUIRE_REDIS=1) naming what is missing."""
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("SEQ2SEQ_REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


class RedisServer:
    """One redis-server process; ``args`` are extra server options (``"--appendonly", "yes"``)."""

    def __init__(self, directory: Path, *args: str, port: int | None = None):
        self.binary = require_redis_server()
        self.directory, self.args = Path(directory), args
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> RedisServer:
        cmd = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory),
               "--save", "", "--daemonize", "no", "--protected-mode", "no", *self.args]  # fmt: skip
        with open(self.directory / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}): {self.log()[-2000:]}")
            if self.ping():
                return self
            time.sleep(0.02)  # polling the port, not waiting blind
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} within {timeout}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log(self) -> str:
        return (self.directory / "redis.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown save, what a crash leaves."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
