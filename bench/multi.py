"""Several models in one server: memory, and one-client latency of the LibreTranslate endpoint
next to the native one.

    python bench/multi.py --checkpoint ../models/m30k_de_en.ckpt --checkpoint ../models/m30k_en_de.ckpt

Starts ``python -m serve`` with every checkpoint, reads the summed RSS and PSS of its process
tree once healthy, then one client alternates a native ``POST /translate`` and a LibreTranslate
``POST /translate`` (``q``) for the same Multi30k test sentence, pair after pair, so both APIs
see the same machine load. Both decode with beam 5 (LibreTranslate requests take the default).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from load import DEFAULT_DATA, MemorySampler, launch, memory_mb, read_sentences, tree


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", required=True, help="repeat for each model")
    p.add_argument("--requests", type=int, default=100, help="requests per API and language pair")
    p.add_argument("--threads", type=int, default=0, help="server option (0: all cores)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.requests < 1:
        p.error("--requests must be at least 1")
    return args


def start(checkpoints: list[str], threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "serve",
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--log-level",
        "warning",
    ]
    for ckpt in checkpoints:
        cmd += ["--checkpoint", ckpt]
    return launch(cmd, port, "multi.py")


def has_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def percentiles(latencies: list[float]) -> dict:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "requests": len(ordered),
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "mean_ms": round(1000 * sum(ordered) / len(ordered), 1),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    proc, url = start(args.checkpoint, args.threads)
    try:
        time.sleep(2.0)  # let start-up settle before reading the memory
        rss, pss = memory_mb(proc.pid)
        result: dict = {
            "models": len(args.checkpoint),
            "idle_rss_mb": round(rss, 1),
            "idle_pss_mb": round(pss, 1),
        }
        result["server_processes"] = len(tree(proc.pid))
        result["processes_with_torch"] = sum(map(has_torch, tree(proc.pid)))  # the inference workers only
        languages = httpx.get(f"{url}/languages").json()
        pairs = [(lang["code"], t) for lang in languages for t in lang["targets"]]
        sampler = MemorySampler(proc.pid)
        sampler.start()
        latency: dict[str, list[float]] = {"native": [], "libretranslate": []}
        with httpx.Client(base_url=url, timeout=120) as http:
            for src, tgt in pairs:
                sentences = read_sentences(args.data, src)[: args.requests]
                bodies = {
                    "native": lambda text, s=src, t=tgt: {"text": text, "source": s, "target": t},
                    "libretranslate": lambda text, s=src, t=tgt: {"q": text, "source": s, "target": t},
                }
                for body in bodies.values():  # warm-up
                    http.post("/translate", json=body(sentences[0])).raise_for_status()
                for text in sentences:
                    for name, body in bodies.items():
                        t0 = time.perf_counter()
                        http.post("/translate", json=body(text)).raise_for_status()
                        latency[name].append(time.perf_counter() - t0)
        sampler.stop.set()
        sampler.join()
        result["pairs"] = [f"{s}-{t}" for s, t in pairs]
        result["peak_rss_mb"], result["peak_pss_mb"] = round(sampler.peak[0], 1), round(sampler.peak[1], 1)
        result.update({name: percentiles(values) for name, values in latency.items()})
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    print(f"{result['models']} models, {result['server_processes']} processes "
          f"({result['processes_with_torch']} with torch loaded): idle RSS {result['idle_rss_mb']} MB "
          f"(PSS {result['idle_pss_mb']} MB), peak under load RSS {result['peak_rss_mb']} MB "
          f"(PSS {result['peak_pss_mb']} MB)")  # fmt: skip
    for name in ("native", "libretranslate"):
        r = result[name]
        print(
            f"{name:>14}: {r['requests']} requests, p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, mean {r['mean_ms']} ms"
        )
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
