"""A store opened on first use in each process: LitServe forks its HTTP processes from the main one,
and a SQLite connection (or a socket) must not cross a fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``get()`` opens with ``opener`` once per process; a failed open is retried on the next call."""

    def __init__(self, opener: Callable[[], T]) -> None:
        self.opener = opener
        self._pid: int | None = None
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:  # routes call it from the thread pool
            if self._pid != os.getpid():
                self._value, self._pid = self.opener(), os.getpid()
            return self._value  # type: ignore[return-value]
