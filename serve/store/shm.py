"""A ``limits`` storage in shared memory, for one server without Redis: the limits library has no
storage shared by several processes of one host (its ``memory://`` counts per process), and
LitServe forks several HTTP processes. The table is made before the fork and counts for them all.

It holds fixed-window counters (what ``FixedWindowRateLimiter`` needs): ``slots`` entries of
(key hash, expiry in ms, count) under one lock, open addressing over ``probes`` neighbours. When
all of them hold other keys' live windows, the key shares its home entry: crowding can make a
limit stricter, never looser.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time

from limits.storage import Storage


class SharedMemoryStorage(Storage):
    """Counters shared by the processes forked after ``__init__``; wall-clock expiry as ``limits``."""

    STORAGE_SCHEME = ["seq2seq-shm"]  # registered with limits; the limiter makes it directly

    def __init__(self, slots: int = 65536, probes: int = 8):
        super().__init__()
        if slots < 1 or probes < 1:
            raise ValueError("slots and probes must be at least 1")
        self.slots, self.probes = slots, min(probes, slots)
        self._table = mp.RawArray("q", 3 * slots)  # zeros: every entry free
        self._lock = mp.Lock()

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return ()  # memory does not fail

    def _find(self, key: str, now_ms: int, claim: bool) -> int | None:
        """Index of ``key``'s live entry; with ``claim``, of a free (or its shared home) entry if none."""
        h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little", signed=True) | 1
        table, home, free = self._table, h % self.slots, None
        for p in range(self.probes):
            i = 3 * ((home + p) % self.slots)
            live = table[i] != 0 and table[i + 1] > now_ms
            if live and table[i] == h:
                return i
            if not live and free is None:
                free = i
        if not claim:
            return None
        if free is None:
            return 3 * home  # crowded: share it
        table[free], table[free + 1], table[free + 2] = h, 0, 0
        return free

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now_ms = int(time.time() * 1000)
        with self._lock:
            i = self._find(key, now_ms, claim=True)
            assert i is not None
            table = self._table
            if table[i + 1] <= now_ms:  # a new window
                table[i + 1], table[i + 2] = now_ms + int(expiry * 1000), 0
            table[i + 2] += amount
            return table[i + 2]

    def get(self, key: str) -> int:
        with self._lock:
            i = self._find(key, int(time.time() * 1000), claim=False)
            return 0 if i is None else self._table[i + 2]

    def get_expiry(self, key: str) -> float:
        now = time.time()
        with self._lock:
            i = self._find(key, int(now * 1000), claim=False)
            return now if i is None else self._table[i + 1] / 1000

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            self._table[:] = [0] * (3 * self.slots)
        return None

    def clear(self, key: str) -> None:
        with self._lock:
            i = self._find(key, int(time.time() * 1000), claim=False)
            if i is not None:
                self._table[i + 1] = 0
