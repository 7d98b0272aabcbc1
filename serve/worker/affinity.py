"""``--pin-cpus``: each inference worker gets cores of its own, the HTTP processes the others.

A worker decoding with one torch thread wants one core, all of the time; the HTTP processes, the
Manager and the clients wake up for every request. Left to the scheduler, the worker moves between
cores as they do and starts cold on each: with 16 clients on 2 cores (greedy, one server,
affinities set with ``taskset`` between 10-s loads), pinning only the worker to one core raised
throughput from 128-131 to 156-158 requests/s, pinning only the other processes away from it
lowered it to 110-112, both 152-155 (bench/HISTORY.md). Pinning the worker is what counts; the
rest get the other cores so that they never wait behind it.
LitServe has no affinity setting, hence this module (``os.sched_setaffinity``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuPlan:
    """Which cores each worker (by LitServe worker id) and the server's other processes run on."""

    workers: tuple[tuple[int, ...], ...]
    rest: tuple[int, ...]

    @classmethod
    def make(cls, workers: int, threads: int | None, cores: list[int] | None = None) -> CpuPlan:
        """``threads`` cores per worker (None: share all but one core between the workers), the
        cores left over for the rest; ValueError when no core would be left."""
        if not hasattr(os, "sched_setaffinity"):
            raise ValueError("--pin-cpus needs Linux (os.sched_setaffinity)")
        cores = sorted(os.sched_getaffinity(0)) if cores is None else cores
        threads = threads or max(1, (len(cores) - 1) // workers)
        need = workers * threads
        if need >= len(cores):
            raise ValueError(
                f"--pin-cpus: {workers} worker(s) x {threads} thread(s) leave none of the {len(cores)} "
                "cores for the HTTP processes; use fewer --workers or --threads"
            )
        groups = tuple(tuple(cores[i * threads : (i + 1) * threads]) for i in range(workers))
        return cls(groups, tuple(cores[need:]))

    def threads(self) -> int:
        return len(self.workers[0])

    def pin_rest(self) -> None:
        """Pin this process (before it starts the workers and HTTP processes, which inherit it)."""
        os.sched_setaffinity(0, self.rest)

    def pin_worker(self) -> None:
        """In a worker, before torch starts threads: its own cores (LitServe sets the worker id)."""
        worker = int(os.environ.get("LITSERVE_WORKER_ID", "0"))
        os.sched_setaffinity(0, self.workers[worker % len(self.workers)])
