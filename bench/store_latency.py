"""What a key check and the rate limiter cost per request, on a local redis-server and on this
host's SQLite file and shared memory.

    python bench/store_latency.py [--n 5000]

Starts ``redis-server`` on a free 127.0.0.1 port (tests/redis_fixture.py), adds one key, then times
``n`` calls of each: ``KeyStore.lookup``, ``RequestLimiter.hit`` with the per-minute, hourly and
daily windows on, and ``FloodGuard.banned``. Prints p50 and p99 in microseconds, one client, one
thread: the numbers are round trips to Redis over loopback plus redis-py's own time. Redis runs
with its default ``appendfsync everysec``; with ``always`` each counter write waits for the disk.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from redis_fixture import RedisServer  # noqa: E402

from serve.store.connection import redis_client  # noqa: E402
from serve.store.keys import RedisKeyStore, SqliteKeyStore  # noqa: E402
from serve.store.limiter import Counters, FloodGuard, RequestLimiter  # noqa: E402


def timed(fn, n: int) -> tuple[float, float]:
    for _ in range(100):
        fn()
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * len(samples))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000)
    n = p.parse_args().n
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), fsync="everysec").start()  # Redis' default
        try:
            client = redis_client(server.url)
            rows = []
            for name, store, counters in (
                ("redis", RedisKeyStore(client), Counters(client)),
                ("local", SqliteKeyStore(Path(tmp) / "keys.db"), Counters(None)),
            ):
                key = store.add(10**6)
                limiter = RequestLimiter(counters, 10**6, 10**7, 10**8)
                flood = FloodGuard(counters, 5)
                rows.append((f"{name} key lookup", *timed(lambda s=store, k=key: s.lookup(k), n)))
                rows.append((f"{name} limiter, 3 windows", *timed(lambda li=limiter: li.hit("10.0.0.1"), n)))
                rows.append((f"{name} flood check", *timed(lambda f=flood: f.banned("10.0.0.1"), n)))
        finally:
            server.kill()
    print(f"{'what':30} {'p50 us':>8} {'p99 us':>8}")
    for what, p50, p99 in rows:
        print(f"{what:30} {p50:8.1f} {p99:8.1f}")


if __name__ == "__main__":
    main()
