"""What HTTP costs over calling the model in-process, measured side by side in one run.

    python bench/serve_overhead.py --checkpoint model.ckpt [--beams 1 5] [--rounds 3]

Starts ``python -m serve`` (as ``bench/load.py`` does) and loads the same checkpoint here with the
worker's thread count. Each round and beam size measures, on the same Multi30k test sentences:

1. in-process ``Translator.translate([s])``, one sentence at a time, alternating with one HTTP
   client sending the same sentence: the p50 difference is the **HTTP overhead** (also given
   paired: the median over sentences of each one's HTTP time minus its in-process time). Two
   clients send each sentence, each right after its own in-process translate: httpx, and the
   standard library's ``http.client``, which itself costs about 1 ms less per request here
   (``bench/http_path.py``);
2. in-process ``translate`` of the same sentences in batches of 16 (before and after), and 16
   concurrent HTTP clients (``bench/load.py``'s load) between: requests/s over the mean
   in-process sentences/s is the **16-client ratio**.

The clients run in this process and share the cores with the server; the CPU they use is
printed (cores = CPU seconds / wall seconds). Medians over the rounds come last.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import statistics
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import torch
from load import DEFAULT_DATA, load, read_sentences, start_server, tree

from seq2seq.translator import Translator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--beams", type=int, nargs="+", default=[1, 5], help="beam sizes (1 = greedy)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--singles", type=int, default=100, help="sentences sent one at a time per round")
    p.add_argument("--batched", type=int, default=320, help="sentences for the batch-16 / 16-client part")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=6.0, help="length of each 16-client load")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    p.add_argument("--workers", type=int, default=1, help="server option")
    p.add_argument(
        "--threads", type=int, default=0, help="server and in-process threads (0: cores // workers)"
    )
    p.add_argument(
        "--reference-threads",
        type=int,
        default=0,
        help="in-process threads (0: as each server worker), e.g. 2 beside --workers 2 --threads 1",
    )
    p.add_argument("--max-batch-size", type=int, default=16, help="server option")
    p.add_argument("--batch-timeout", type=float, default=0.0, help="server option")
    p.add_argument("--continuous", action=argparse.BooleanOptionalAction, default=True, help="server option")
    p.add_argument("--pin-cpus", action="store_true", help="server option: each worker on cores of its own")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    args.quantize, args.api_key = "none", None  # what load.py's start_server and load expect
    return args


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes, from /proc (vanished ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def batch_totals(url: str) -> dict[str, float]:
    """The workers' batch counters from ``/metrics``: batches, requests in them, seconds translating."""
    names = (
        "seq2seq_batch_requests_count",
        "seq2seq_batch_requests_sum",
        "seq2seq_batch_duration_seconds_sum",
    )
    totals = dict.fromkeys(names, 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        if name in totals:
            totals[name] += float(value)
    return totals


def stdlib_client(url: str) -> http.client.HTTPConnection:
    """A keep-alive connection of the standard library's client to the server at ``url``."""
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)


def p50_ms(times: list[float]) -> float:
    return round(1000 * statistics.median(times), 2)


def one_round(translator: Translator, url: str, server_pid: int, texts: list[str], beam: int, args) -> dict:
    opts = {"beam_size": beam, "max_length": 256}  # the server's default max_length
    singles, batched = texts[: args.singles], texts[: args.batched]
    health = []
    remote: dict[str, list[float]] = {"httpx": [], "http.client": []}
    local: dict[str, list[float]] = {client: [] for client in remote}  # the translate before each request
    with httpx.Client(base_url=url, timeout=120) as http, closing(stdlib_client(url)) as conn:

        def send(client: str, text: str) -> None:
            body = {"text": text, "beam_size": beam}
            if client == "httpx":
                http.post("/translate", json=body).raise_for_status()
                return
            conn.request("POST", "/translate", json.dumps(body), {"Content-Type": "application/json"})
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 200, answer.status

        for client in remote:  # warm-up: both connections open
            send(client, singles[0])
        for i, text in enumerate(singles):  # alternating, so that all see the same load on a shared machine
            for client in list(remote)[:: 1 if i % 2 else -1]:  # each client first in turn
                t0 = time.perf_counter()  # each request right after its own in-process translate
                translator.translate([text], **opts)
                local[client].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                send(client, text)
                remote[client].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            http.get("/health").raise_for_status()  # a round trip that never reaches the worker
            health.append(time.perf_counter() - t0)

    def batches_of_16() -> float:
        t0 = time.perf_counter()
        for i in range(0, len(batched), 16):
            translator.translate(batched[i : i + 16], **opts)
        return len(batched) / (time.perf_counter() - t0)

    before = batches_of_16()  # in-process before and after the HTTP load, to see the same machine
    server_pids = tree(server_pid)
    batches0 = batch_totals(url)
    cpu0, server0, wall0 = time.process_time(), cpu_seconds(server_pids), time.perf_counter()
    loaded = asyncio.run(load(url, {}, batched, argparse.Namespace(**{**vars(args), "beam_size": beam})))
    wall = time.perf_counter() - wall0
    client_cores = round((time.process_time() - cpu0) / wall, 2)
    server_cores = round((cpu_seconds(server_pids) - server0) / wall, 2)
    batches = {k: v - batches0[k] for k, v in batch_totals(url).items()}  # includes load()'s warm-up request
    count = max(1.0, batches["seq2seq_batch_requests_count"])
    local_sps = (before + batches_of_16()) / 2
    row = {
        "beam": beam,
        "inprocess_p50_ms": p50_ms(local["httpx"] + local["http.client"]),
        "http_p50_ms": p50_ms(remote["httpx"]),
        "overhead_ms": round(p50_ms(remote["httpx"]) - p50_ms(local["httpx"]), 2),
        # the same, sentence by sentence: steadier when the machine's speed drifts between rounds
        "paired_overhead_ms": p50_ms([h - i for h, i in zip(remote["httpx"], local["httpx"], strict=True)]),
        # the standard library's client: what the server costs with a client that costs little itself
        "stdlib_http_p50_ms": p50_ms(remote["http.client"]),
        "stdlib_overhead_ms": round(p50_ms(remote["http.client"]) - p50_ms(local["http.client"]), 2),
        "stdlib_paired_overhead_ms": p50_ms(
            [h - i for h, i in zip(remote["http.client"], local["http.client"], strict=True)]
        ),
        "health_p50_ms": p50_ms(health),
        "inprocess_batch16_per_s": round(local_sps, 1),
        "http_clients_per_s": loaded["requests_per_s"],
        "ratio": round(loaded["requests_per_s"] / local_sps, 3),
        "errors": loaded["errors"],
        "http_clients_p50_ms": loaded["p50_ms"],
        "client_cores": client_cores,
        "server_cores": server_cores,
        "mean_batch": round(batches["seq2seq_batch_requests_sum"] / count, 1),
        "worker_busy": round(batches["seq2seq_batch_duration_seconds_sum"] / (wall * args.workers), 2),
    }
    return row


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    threads = args.threads or max(1, cores // args.workers)  # what each server worker uses
    torch.set_num_threads(args.reference_threads or threads)
    translator = Translator.from_checkpoint(args.checkpoint)
    texts = read_sentences(args.data, translator.src_lang)
    for beam in args.beams:  # warm-up: allocator, threads, caches
        translator.translate(texts[:32], beam_size=beam)
    load_before = os.getloadavg()
    proc, url = start_server(args)
    rows = []
    try:
        for r in range(args.rounds):
            for beam in args.beams:
                row = one_round(translator, url, proc.pid, texts, beam, args)
                rows.append({"round": r + 1, **row})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    load_after = os.getloadavg()

    print(f"\n{cores} cores, {torch.get_num_threads()} torch threads in-process, {threads} per server worker, "
          f"{args.workers} worker(s), "
          f"{args.clients} clients; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")  # fmt: skip
    print(f"{'beam':>4} {'in-proc p50':>11} {'client':>11} {'HTTP p50':>9} {'overhead':>9} {'paired':>7} "
          f"{'batch-16/s':>10} {f'{args.clients} clients/s':>13} {'ratio':>6} {'errors':>6} {'client cores':>12} "
          f"{'/health p50':>11}")  # fmt: skip
    summary = []
    for beam in args.beams:
        mine = [r for r in rows if r["beam"] == beam]
        med = {k: statistics.median(r[k] for r in mine) for k in mine[0] if k not in ("round", "beam")}
        med["errors"] = sum(r["errors"] for r in mine)
        summary.append({"beam": beam, **med})
        for client, prefix in (("httpx", ""), ("http.client", "stdlib_")):
            http_p50, overhead, paired = (
                med[prefix + k] for k in ("http_p50_ms", "overhead_ms", "paired_overhead_ms")
            )
            print(f"{beam:>4} {med['inprocess_p50_ms']:>9.1f}ms {client:>11} {http_p50:>7.1f}ms {overhead:>7.1f}ms "
                  f"{paired:>5.1f}ms {med['inprocess_batch16_per_s']:>10.1f} {med['http_clients_per_s']:>13.1f} "
                  f"{med['ratio']:>6.2f} {med['errors']:>6} {med['client_cores']:>12.2f} {med['health_p50_ms']:>9.2f}ms")  # fmt: skip
    print(f"medians over {args.rounds} rounds; overhead = HTTP p50 - in-process p50 (one client, httpx or the "
          "standard library's http.client, alternating), paired = median of each sentence's HTTP - in-process "
          f"time; ratio = {args.clients}-client requests/s / in-process batch-16 sentences/s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
