"""``--pin-cpus`` (serve/worker/affinity.py): the worker runs on cores of its own, every other process of
the server on the rest, read back from the kernel; translations unchanged; impossible plans refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_serve import MAX_LENGTH, ROOT, free_port, same, start_server

from seq2seq.translator import Translator
from serve.worker.affinity import CpuPlan

CORES = sorted(os.sched_getaffinity(0))


def test_plan_gives_each_worker_its_threads_and_the_rest_to_http() -> None:
    plan = CpuPlan.make(2, 3, cores=[0, 1, 2, 3, 4, 5, 6, 7])
    assert plan.workers == ((0, 1, 2), (3, 4, 5)) and plan.rest == (6, 7) and plan.threads() == 3
    assert CpuPlan.make(3, None, cores=[2, 4, 6, 8]).workers == ((2,), (4,), (6,))  # 1 thread each
    with pytest.raises(ValueError, match="leave none of the 4 cores"):
        CpuPlan.make(2, 2, cores=[0, 1, 2, 3])


def allowed(pid: int) -> set[int]:
    """The cores the kernel lets a process run on (its main thread's mask)."""
    return set(os.sched_getaffinity(pid))


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            kids = (task / "children").read_text().split()
            found += [int(k) for k in kids]
            todo += [int(k) for k in kids]
    return found


@pytest.mark.skipif(len(CORES) < 2, reason="pinning needs two cores")
def test_pinned_worker_has_its_core_and_translates_as_before(tiny_checkpoint: Path, tmp_path: Path) -> None:
    server = start_server(tiny_checkpoint, tmp_path, "--pin-cpus", "--threads", "1")
    try:
        texts = ["one two three", "four five", "seven eight nine ten"]
        reference = Translator.from_checkpoint(tiny_checkpoint).translate(
            texts, beam_size=2, max_length=MAX_LENGTH
        )
        for text, want in zip(texts, reference, strict=True):
            r = httpx.post(f"{server.url}/translate", json={"text": text, "beam_size": 2}, timeout=60)
            same(r.json()["translations"][0], want)
        masks = {pid: allowed(pid) for pid in [server.proc.pid, *descendants(server.proc.pid)]}
        workers = [pid for pid in masks if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        workers = [pid for pid in workers if masks[pid] == {CORES[0]}]
        assert len(workers) == 1, masks  # the inference worker, alone on the first core
        worker = workers[0]
        threads = [int(t.name) for t in Path(f"/proc/{worker}/task").iterdir()]
        # its other threads too (torch's, when it has more than one)
        assert threads and all(allowed(t) == {CORES[0]} for t in threads)
        others = {pid: mask for pid, mask in masks.items() if pid != worker}
        named = {pid: (mask, Path(f"/proc/{pid}/cmdline").read_text()[:90]) for pid, mask in others.items()}
        assert len(others) >= 3 and all(mask == set(CORES[1:]) for mask in others.values()), named
    finally:
        server.stop()


def test_a_plan_without_a_core_for_http_is_refused() -> None:
    threads = str(len(CORES))  # one worker with every core: none left
    port = str(free_port())
    args = ["--checkpoint", "x.ckpt", "--port", port, "--pin-cpus", "--threads", threads]
    run = subprocess.run(
        [sys.executable, "-m", "serve", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0
    assert "--pin-cpus" in run.stderr and f"leave none of the {len(CORES)} cores" in run.stderr, run.stderr
