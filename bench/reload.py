"""Latency while a checkpoint reloads, against the same load without one.

    python bench/reload.py --checkpoint model.ckpt --clients 4 --rounds 3 [--workers 1]

Starts ``python -m serve`` on the checkpoint; N clients send one Multi30k test_2016_flickr source
sentence per request, back to back. Each round times a quiet window of ``--seconds``, then a window
of the same length that starts with SIGHUP to the server (a reload of the same file), alternating.
Prints, per window, requests/s, latency p50/p99 and errors, how long each reload took (from SIGHUP
to the new ``loaded_at`` in ``/info``), then the medians and ranges over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import httpx
from load import DEFAULT_DATA, free_port, launch, percentile_ms, read_sentences


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0, help="length of each window")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=1, help="server option")
    p.add_argument("--threads", type=int, default=0, help="server option (0: cores // workers)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    args = p.parse_args(argv)
    if min(args.clients, args.rounds, args.workers) < 1 or args.seconds <= 0:
        p.error("--clients, --rounds and --workers must be >= 1, --seconds > 0")
    return args


def loaded_at(url: str) -> float:
    return max(m["loaded_at"] for m in httpx.get(f"{url}/info", timeout=30).json()["model"]["models"])


async def window(
    url: str, sentences: list[str], clients: int, seconds: float, reload_pid: int | None
) -> dict:
    """One window of closed-loop load; with ``reload_pid``, SIGHUP at its start and the reload's time."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(10**12))

    async def client(http: httpx.AsyncClient, stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                r = await http.post("/translate", json={"text": sentences[next(counter) % len(sentences)]})
                why = None if r.status_code == 200 else str(r.status_code)
            except httpx.HTTPError as e:
                why = type(e).__name__
            if why is None:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[why] = errors.get(why, 0) + 1

    async def watch_reload(before: float, sent: float) -> float | None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while time.perf_counter() < sent + 600:
                models = (await http.get("/info")).json()["model"]["models"]
                if max(m["loaded_at"] for m in models) > before:
                    return time.perf_counter() - sent
                await asyncio.sleep(0.1)
        return None

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        start = time.perf_counter()
        tasks = [client(http, start + seconds) for _ in range(clients)]
        took = None
        if reload_pid is not None:
            before = loaded_at(url)
            os.kill(reload_pid, signal.SIGHUP)
            tasks.append(watch_reload(before, time.perf_counter()))
        results = await asyncio.gather(*tasks)
        if reload_pid is not None:
            took = results[-1]
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile_ms(latencies, 0.50),
        "p99_ms": percentile_ms(latencies, 0.99),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "reload_s": took,
    }


def summary(name: str, values: list[float]) -> str:
    return f"{name} {statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    port = free_port()
    cmd = [sys.executable, "-m", "serve", "--checkpoint", args.checkpoint, "--port", str(port),
           "--workers", str(args.workers), "--threads", str(args.threads), "--log-level", "warning"]  # fmt: skip
    proc, url = launch(cmd, port, name="reload.py")
    try:
        src = httpx.get(f"{url}/info", timeout=30).json()["model"]["models"][0]["src_lang"]
        sentences = read_sentences(args.data, src)
        httpx.post(f"{url}/translate", json={"text": sentences[0]}, timeout=120).raise_for_status()
        quiet, reloading = [], []
        for k in range(args.rounds):
            for name, pid, out in (("quiet", None, quiet), ("reload", proc.pid, reloading)):
                w = asyncio.run(window(url, sentences, args.clients, args.seconds, pid))
                out.append(w)
                took = f", reload took {w['reload_s']:.1f} s" if w["reload_s"] is not None else ""
                print(f"round {k + 1} {name:6}: {w['requests_per_s']:.1f} requests/s, p50 {w['p50_ms']:.1f} ms, "
                      f"p99 {w['p99_ms']:.1f} ms, errors {w['errors']} {w['error_kinds'] or ''}{took}")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    for name, ws in (("quiet", quiet), ("reload", reloading)):
        print(
            f"{name:6} over {args.rounds} rounds ({args.clients} clients, {args.workers} worker(s)): "
            + ", ".join(summary(k, [w[k] for w in ws]) for k in ("requests_per_s", "p50_ms", "p99_ms"))
            + f", errors {sum(w['errors'] for w in ws)}"
        )
    print(summary("reload took (s)", [w["reload_s"] for w in reloading if w["reload_s"] is not None]))


if __name__ == "__main__":
    main()
