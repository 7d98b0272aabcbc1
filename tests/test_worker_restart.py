"""A worker killed during a burst: every request is answered (200 or 503 with Retry-After) within
10 s, none hangs, the worker is restarted and serves again, and SIGINT still stops the server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from test_serve import MAX_LENGTH, same, start_server
from test_serve_ops import delta, in_background, scrape, wait_for, worker_pids

from seq2seq.translator import Translator

BURST = 32


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "batches"])
def test_sigkill_during_a_burst_answers_every_request(
    tiny_checkpoint: Path, tmp_path: Path, continuous: bool
) -> None:
    flags = ["--threads", "1"] + ([] if continuous else ["--no-continuous"])
    server = start_server(tiny_checkpoint, tmp_path, *flags)
    try:
        # the tiny model repeats itself up to max_length on these: seconds for the whole burst
        body = {"texts": [f"hello there {i} " * 40 for i in range(8)], "beam_size": 5}
        (pid,) = worker_pids(server)
        before = scrape(server)
        pending = in_background(server, [body] * BURST)
        wait_for(
            lambda: delta(before, scrape(server), "seq2seq_queue_wait_seconds_count") >= 2,
            "the worker to take requests",
        )
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        answers = [f.result(timeout=60) for f in pending]
        statuses = sorted(r.status_code for r, _ in answers)
        assert set(statuses) <= {200, 503} and 503 in statuses, statuses
        for r, answered in answers:
            assert answered - killed < 10.0, (r.status_code, answered - killed)
            if r.status_code == 503:
                assert r.headers["retry-after"] == "5" and "worker died" in r.json()["detail"]
        wait_for(lambda: httpx.get(f"{server.url}/health").status_code == 200, "the restarted worker", 120)
        (new_pid,) = worker_pids(server)
        assert new_pid != pid
        texts = ["the cat sleeps .", "a dog runs in the park ."]
        r = httpx.post(f"{server.url}/translate", json={"texts": texts, "beam_size": 3}, timeout=60)
        assert r.status_code == 200, r.text
        reference = Translator.from_checkpoint(tiny_checkpoint).translate(
            texts, beam_size=3, max_length=MAX_LENGTH
        )
        for served, ref in zip(r.json()["translations"], reference, strict=True):
            same(served, ref)
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=30) == 0, server.stderr()
    finally:
        server.stop()
