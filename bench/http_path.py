"""The server's own cost per request, with decoding kept to one step, side by side with another checkout.

    python bench/http_path.py --checkpoint model.ckpt [--compare /path/to/other/checkout] [--requests 300]

``bench/serve_overhead.py`` measures HTTP against in-process on real sentences; there each
request leaves the client and the HTTP process idle for the 25-50 ms of decoding, and on a
virtual machine a process woken after such a wait answers slower (printed below: ``/health``
hot and after a 25 ms sleep). Here one short request (``max_length`` 1: encoder and one decoder
step) follows the same ``translate`` in-process, in turn for this checkout's server and, with
``--compare``, a server started from another checkout, so two versions of the server meet the same
machine; httpx and the standard library's ``http.client`` both send it. Each figure is the median
over requests of that request's time minus the in-process time just before it (paired).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import statistics
import sys
import time
from pathlib import Path

import httpx
import torch
from load import ROOT, free_port, launch

from seq2seq.translator import Translator

TEXT = "Ein Mann fährt Fahrrad."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--compare", type=Path, help="also start the server of this checkout (its own code)")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--beam-size", type=int, default=1)
    p.add_argument("--pin-cpus", action="store_true", help="server option")
    return p.parse_args(argv)


def start(root: Path, args: argparse.Namespace) -> tuple:
    """``python -m serve`` from ``root``: one worker with one thread."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "serve", "--checkpoint", args.checkpoint, "--port", str(port),
        "--threads", "1", "--log-level", "warning", *(["--pin-cpus"] if args.pin_cpus else []),
    ]  # fmt: skip
    return (*launch(cmd, port, name="http_path.py", root=root), port)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    translator = Translator.from_checkpoint(args.checkpoint)
    body = json.dumps({"text": TEXT, "max_length": 1, "beam_size": args.beam_size}).encode()
    headers = {"Content-Type": "application/json"}
    servers = {"this checkout": start(ROOT, args)}
    if args.compare:
        servers[f"{args.compare}"] = start(args.compare.resolve(), args)
    try:
        clients = {}
        for name, (_, url, port) in servers.items():
            clients[name] = (
                httpx.Client(base_url=url, timeout=60),
                http.client.HTTPConnection("127.0.0.1", port),
            )

        def via_httpx(name: str) -> None:
            clients[name][0].post("/translate", content=body, headers=headers).raise_for_status()

        def via_stdlib(name: str, path: str = "/translate") -> None:
            conn = clients[name][1]
            if path == "/translate":
                conn.request("POST", path, body=body, headers=headers)
            else:
                conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status

        def local() -> None:
            translator.translate([TEXT], beam_size=args.beam_size, max_length=1)

        times: dict[tuple[str, str], list[float]] = {}
        in_process: list[float] = []
        pairs = [(name, client) for name in servers for client in ("httpx", "http.client")]
        for i in range(args.requests + 20):  # the first 20: warm-up
            for name, client in pairs[i % len(pairs) :] + pairs[: i % len(pairs)]:  # each in turn first
                t0 = time.perf_counter()
                local()
                spent = time.perf_counter() - t0
                t0 = time.perf_counter()
                (via_httpx if client == "httpx" else via_stdlib)(name)
                if i >= 20:
                    times.setdefault((name, client), []).append(time.perf_counter() - t0 - spent)
                    in_process.append(spent)
        health: dict[str, dict[str, list[float]]] = {}
        for _ in range(100):  # the machine's wake-up cost: /health hot, and after 25 ms asleep
            for name in servers:
                for label, nap in (("hot", 0.0), ("after 25 ms idle", 0.025)):
                    time.sleep(nap)
                    t0 = time.perf_counter()
                    via_stdlib(name, "/health")
                    health.setdefault(name, {}).setdefault(label, []).append(time.perf_counter() - t0)
    finally:
        for proc, _, _ in servers.values():
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)

    def ms(values: list[float]) -> str:
        return f"{1000 * statistics.median(values):.2f} ms"

    print(f"in-process translate (max_length 1, beam {args.beam_size}): p50 {ms(in_process)}")
    print("per-request HTTP cost (request time - the in-process translate just before it), median of "
          f"{args.requests}; /health with http.client:")  # fmt: skip
    for name in servers:
        got = {client: ms(times[(name, client)]) for client in ("httpx", "http.client")}
        hot = health[name]
        print(f"  {name}: httpx {got['httpx']}, http.client {got['http.client']}; "
              f"/health hot {ms(hot['hot'])}, after 25 ms idle {ms(hot['after 25 ms idle'])}")  # fmt: skip


if __name__ == "__main__":
    main()
