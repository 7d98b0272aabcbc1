"""Bounded load test of the translation server.

    python bench/load.py --checkpoint model.ckpt --clients 16 --seconds 10 [--beam-size 5]
    python bench/load.py --url http://127.0.0.1:8000 --clients 4 --seconds 10 [--server-pid PID]

Starts ``python -m serve`` itself unless ``--url`` is given, then N concurrent clients each send
one Multi30k test_2016_flickr source sentence per request, back to back, for T seconds. Prints
requests/s, latency percentiles, errors, the resident memory of the server's process tree and its
CPU time per request, split between the inference workers and the rest (HTTP, LitServe's manager):
CPU time, unlike throughput, holds when other jobs share the cores.
The clients run in this process and share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# Multi30k, as scripts/download_multi30k.py writes it (or $SEQ2SEQ_MULTI30K_DIR)
DEFAULT_DATA = Path(os.environ.get("SEQ2SEQ_MULTI30K_DIR", ROOT / "data" / "multi30k"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="start a server on this checkpoint")
    p.add_argument("--url", help="use a running server instead, e.g. http://127.0.0.1:8000")
    p.add_argument("--server-pid", type=int, help="with --url: measure this process tree's memory")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--beam-size", type=int, default=1)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    p.add_argument("--api-key", default=os.environ.get("SEQ2SEQ_API_KEY"))
    p.add_argument("--workers", type=int, default=1, help="server option (when started here)")
    p.add_argument("--threads", type=int, default=0, help="server option (0: cores // workers)")
    p.add_argument("--max-batch-size", type=int, default=16, help="server option")
    p.add_argument("--batch-timeout", type=float, default=0.0, help="server option")
    p.add_argument("--continuous", action=argparse.BooleanOptionalAction, default=True, help="server option")
    p.add_argument("--pin-cpus", action="store_true", help="server option: each worker on cores of its own")
    p.add_argument("--quantize", choices=("none", "int8"), default="none", help="server option")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if (args.checkpoint is None) == (args.url is None):
        p.error("give exactly one of --checkpoint (start a server) or --url (use a running one)")
    if args.clients < 1 or args.seconds <= 0:
        p.error("--clients must be >= 1 and --seconds > 0")
    return args


# -- memory of a process tree, from /proc ----------------------------------------------------
def tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [pid], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) summed over ``pid`` and its descendants. RSS counts pages a forked process
    shares with its parent in both; PSS splits shared pages between their users."""
    rss_kb = pss_kb = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss_kb += int(line.split()[1])
        except OSError:
            continue
    return rss_kb / 1024, pss_kb / 1024


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time (user + system) used so far by the inference workers and by the rest of the tree."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"worker": 0.0, "other": 0.0}
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        worker = b"spawn_main" in cmdline and b"resource_tracker" not in cmdline
        used["worker" if worker else "other"] += (int(fields[11]) + int(fields[12])) / tick
    return used


class MemorySampler(threading.Thread):
    """Peak of ``memory_mb`` sampled twice a second while the load runs."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, (0.0, 0.0), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss, pss = memory_mb(self.pid)
            self.peak = (max(self.peak[0], rss), max(self.peak[1], pss))
            self.stop.wait(0.5)


# -- server ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "serve", "--checkpoint", args.checkpoint, "--port", str(port),
        "--workers", str(args.workers), "--threads", str(args.threads),
        "--max-batch-size", str(args.max_batch_size),
        "--batch-timeout", str(args.batch_timeout), "--quantize", args.quantize,
        "--continuous" if args.continuous else "--no-continuous",
        *(["--pin-cpus"] if args.pin_cpus else []),
        "--log-level", "warning",
    ]  # fmt: skip
    return launch(cmd, port)


def launch(
    cmd: list[str], port: int, name: str = "load.py", root: Path = ROOT
) -> tuple[subprocess.Popen, str]:
    """Run the server command in ``root`` (its code first on the path) and wait until ``/health``
    answers 200; exit with a message if not."""
    env = {**os.environ, "PYTHONPATH": str(root)} if root != ROOT else None
    proc = subprocess.Popen(cmd, cwd=root, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name}: the server exited with code {proc.returncode} during start-up")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit(f"{name}: the server did not become healthy within 300 s")


def read_sentences(data: Path, lang: str) -> list[str]:
    path = data / f"test_2016_flickr.{lang}.gz"
    if not path.is_file():
        sys.exit(f"load.py: {path} not found (use --data to point at the Multi30k directory)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


# -- load ------------------------------------------------------------------------------------
def percentile_ms(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted latencies in seconds, in milliseconds (nan when there are none)."""
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def load(url: str, headers: dict, sentences: list[str], args: argparse.Namespace) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(10**12))

    async def client(http: httpx.AsyncClient, stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            text = sentences[next(counter) % len(sentences)]
            t0 = time.perf_counter()
            try:
                r = await http.post("/translate", json={"text": text, "beam_size": args.beam_size})
                ok, why = r.status_code == 200, str(r.status_code)
            except httpx.HTTPError as e:
                ok, why = False, type(e).__name__
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[why] = errors.get(why, 0) + 1

    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:
        warm = await http.post("/translate", json={"text": sentences[0], "beam_size": args.beam_size})
        warm.raise_for_status()
        start = time.perf_counter()
        await asyncio.gather(*(client(http, start + args.seconds) for _ in range(args.clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return percentile_ms(latencies, q)

    return {
        "clients": args.clients, "beam_size": args.beam_size, "seconds": round(elapsed, 2),
        "requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(pct(0.50), 1), "p95_ms": round(pct(0.95), 1), "p99_ms": round(pct(0.99), 1),
        "errors": sum(errors.values()), "error_kinds": errors,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    proc, url = start_server(args) if args.checkpoint else (None, args.url.rstrip("/"))
    pid = proc.pid if proc else args.server_pid
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    try:
        info = httpx.get(f"{url}/info", headers=headers, timeout=10)
        info.raise_for_status()
        model = info.json()["model"]["models"][0]  # the first model's language pair
        sentences = read_sentences(args.data, model["src_lang"])
        sampler = MemorySampler(pid) if pid else None
        if sampler:
            sampler.start()
        cpu_before = cpu_seconds(pid) if pid else None
        result = asyncio.run(load(url, headers, sentences, args))
        if cpu_before is not None:
            cpu_after = cpu_seconds(pid)
            result["server_cpu_ms_per_request"] = {
                k: round(1000 * (cpu_after[k] - cpu_before[k]) / max(1, result["requests"]), 2)
                for k in cpu_after
            }
        if sampler:
            sampler.stop.set()
            sampler.join()
            result["server_rss_mb_peak"] = round(sampler.peak[0], 1)
            result["server_pss_mb_peak"] = round(sampler.peak[1], 1)
            result["server_processes"] = len(tree(pid))
        result["model"] = {k: model.get(k) for k in ("src_lang", "tgt_lang", "parameters", "quantize")}
    finally:
        if proc:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    print(f"{result['clients']} clients, beam {result['beam_size']}, {result['seconds']} s: "
          f"{result['requests_per_s']} requests/s ({result['requests']} requests), "
          f"latency p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms, "
          f"errors {result['errors']} {result['error_kinds'] or ''}")  # fmt: skip
    if "server_rss_mb_peak" in result:
        print(f"server memory, summed over {result['server_processes']} processes: peak RSS "
              f"{result['server_rss_mb_peak']} MB, peak PSS {result['server_pss_mb_peak']} MB")  # fmt: skip
    if "server_cpu_ms_per_request" in result:
        cpu = result["server_cpu_ms_per_request"]
        print(f"server CPU per request: workers {cpu['worker']} ms, the rest {cpu['other']} ms")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
