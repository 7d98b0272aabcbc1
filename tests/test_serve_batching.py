"""Adaptive and continuous batching (serve/worker/loop.py, serve/worker/streams.py) and the --device
option, on the tiny real model."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Queue

import httpx
import pytest
import torch
from litserve import LitAPI
from litserve.loops.base import _SENTINEL_VALUE
from prometheus_client.parser import text_string_to_metric_families
from test_serve import MAX_LENGTH, ROOT, free_port, same, start_server

from seq2seq import commands
from seq2seq.corpus import generate_pairs
from seq2seq.translator import Translator
from serve.worker.loop import RECENT, StopLoop, TranslationLoop
from serve.worker.streams import StreamedJobs

WINDOW = 0.5  # a batch window far longer than a tiny-model translation


# -- the collection step, on a real queue -------------------------------------------------------
def request(uid: int, age: float = 0.0) -> tuple:
    """A queue item as LitServe's HTTP side puts it: (response_queue_id, uid, enqueued at, body)."""
    return (0, uid, time.monotonic() - age, f"body {uid}")


def collect(loop: TranslationLoop, api: LitAPI, queue: Queue) -> tuple[list, list, float]:
    t0 = time.monotonic()
    taken, timed_out = loop.collect(api, queue, transport=None)  # no START notices without restarts
    return [ticket[1] for ticket, _ in taken], [t[1] for t in timed_out], time.monotonic() - t0


@pytest.fixture
def api() -> LitAPI:
    api = LitAPI(max_batch_size=4, batch_timeout=WINDOW)
    api.request_timeout = 30.0  # what LitServer sets from its timeout
    return api


def test_lone_request_goes_at_once_and_queued_ones_batch_together(api: LitAPI) -> None:
    loop, queue = TranslationLoop(), Queue()
    queue.put(request(1))
    uids, _, took = collect(loop, api, queue)
    assert uids == [1] and took < WINDOW / 5  # LitServe's own collection waits the whole window

    for uid in range(2, 8):  # arrived while the worker was busy: no waiting, up to max_batch_size
        queue.put(request(uid))
    uids, _, took = collect(loop, api, queue)
    assert uids == [2, 3, 4, 5] and took < WINDOW / 5
    uids, _, _ = collect(loop, api, queue)
    assert uids == [6, 7]


def test_window_waits_for_as_many_as_the_largest_recent_batch(api: LitAPI) -> None:
    loop, queue = TranslationLoop(), Queue()
    for uid in range(3):
        queue.put(request(uid))
    assert collect(loop, api, queue)[0] == [0, 1, 2]  # three clients are being served

    def come_back(uids: tuple[int, ...], first: int) -> tuple[list, float]:
        """``first`` is queued now, the others 0.1 s later: clients whose answers went out."""
        queue.put(request(first))
        later = threading.Timer(0.1, lambda: [queue.put(request(uid)) for uid in uids])
        later.start()
        uids_got, _, took = collect(loop, api, queue)
        later.join()
        return uids_got, took

    uids, took = come_back((4, 5), first=3)
    assert uids == [3, 4, 5] and 0.09 < took < WINDOW  # waited for the two, not the window
    queue.put(request(30, age=WINDOW))  # queued while the last batch ran: the window starts now,
    uids, took = come_back((32,), first=31)  # so the batch still waits for the third
    assert uids == [30, 31, 32] and 0.09 < took < WINDOW

    queue.put(request(6))  # a slow round trip: the window closes with one
    uids, _, took = collect(loop, api, queue)
    assert uids == [6] and WINDOW * 0.9 < took < WINDOW * 2
    uids, took = come_back((8, 9), first=7)  # one short batch does not lower the target
    assert uids == [7, 8, 9] and 0.09 < took < WINDOW

    api.batch_timeout = 0.05  # the clients leave: lone requests wait until the short batches are all
    took = []  # that the target remembers, then go at once again
    for uid in range(10, 10 + RECENT + 2):
        queue.put(request(uid))
        got, _, t = collect(loop, api, queue)
        assert got == [uid]
        took.append(t)
    assert all(0.045 < t < 0.5 for t in took[:RECENT]), took
    assert all(t < 0.02 for t in took[RECENT:]), took


def test_stale_requests_time_out_and_the_sentinel_stops(api: LitAPI) -> None:
    loop, queue = TranslationLoop(), Queue()
    queue.put(request(1, age=60.0))  # waited longer than the request timeout
    queue.put(request(2))
    assert collect(loop, api, queue)[:2] == ([2], [1])
    queue.put(_SENTINEL_VALUE)
    with pytest.raises(StopLoop):
        collect(loop, api, queue)


# -- end to end: a server with a long window ----------------------------------------------------
@pytest.fixture(scope="module")
def texts() -> list[str]:
    return list(dict.fromkeys(src for src, _ in generate_pairs("en", "fr", 60, seed=5)))[:12]


@pytest.fixture(scope="module")
def slow_window_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    s = start_server(
        tiny_checkpoint, tmp_path_factory.mktemp("window"),
        "--threads", "1", "--batch-timeout", str(WINDOW), "--device", "cpu",
    )  # fmt: skip
    yield s
    s.stop()


def test_lone_requests_are_not_held_and_concurrent_ones_are_answered_alike(
    slow_window_server, tiny_checkpoint: Path, texts: list[str]
) -> None:
    url = slow_window_server.url
    reference = Translator.from_checkpoint(tiny_checkpoint).translate(
        texts, beam_size=2, max_length=MAX_LENGTH
    )
    lone, took = {}, []
    with httpx.Client(base_url=url, timeout=60) as http:
        http.post("/translate", json={"text": texts[0]}).raise_for_status()  # warm-up
        for text in texts[:6]:
            t0 = time.perf_counter()
            r = http.post("/translate", json={"text": text, "beam_size": 2})
            took.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            lone[text] = r.json()["translations"][0]
    assert statistics.median(took) < WINDOW / 2, took

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await asyncio.gather(
                *(http.post("/translate", json={"text": t, "beam_size": 2}) for t in texts)
            )

    responses = asyncio.run(together())
    assert [r.status_code for r in responses] == [200] * len(texts)
    for text, r, ref in zip(texts, responses, reference, strict=True):
        served = r.json()["translations"][0]
        same(served, ref)
        if text in lone:  # batched with others, the same answer as alone (padding moves the last digits)
            assert served["tokens"] == lone[text]["tokens"]
            assert served["score"] == pytest.approx(lone[text]["score"], abs=1e-3)


def test_streamed_and_batched_requests_sent_together_each_get_their_own_answer(
    slow_window_server, tiny_checkpoint: Path, texts: list[str]
) -> None:
    """Continuous batching (serve/worker/loop.py): greedy and beam requests of every shape, sent
    together with requests that take the batch path (attention), each get what translate() gives."""
    translator = Translator.from_checkpoint(tiny_checkpoint)
    bodies = (
        [{"text": t, "beam_size": 1} for t in texts[:4]]
        + [
            {"texts": texts[6:9], "beam_size": 1, "max_length": 4},  # one request, three sentences, short
            {"texts": [texts[9]] * 2, "beam_size": 1},
            {"text": texts[4], "beam_size": 2, "n_best": 2},  # beam streams: one per beam, n-best, alpha
            {"texts": texts[5:7], "beam_size": 2, "n_best": 2},
            {"text": texts[3], "beam_size": 3, "max_length": 5},
            {"text": texts[10], "beam_size": 3, "n_best": 3, "length_penalty": 2.0},  # alpha reorders these
            {"text": texts[11], "beam_size": 1, "return_attention": True},  # attention: the batch path
            {"text": texts[2], "beam_size": 2, "return_attention": True},
        ]
    )

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=slow_window_server.url, timeout=60) as http:
            return await asyncio.gather(*(http.post("/translate", json=body) for body in bodies))

    before = metric_sums(slow_window_server.url, *COUNTED)
    responses = asyncio.run(together())
    assert [r.status_code for r in responses] == [200] * len(bodies), [r.text for r in responses]
    for body, r in zip(bodies, responses, strict=True):
        options = {k: v for k, v in body.items() if k not in ("text", "texts")}
        options.setdefault("max_length", MAX_LENGTH)
        reference = translator.translate(body.get("texts") or [body["text"]], **options)
        served = r.json()["translations"]
        assert len(served) == len(reference)
        for got, want in zip(served, reference, strict=True):
            same(got, want, n_best=options.get("n_best", 1))
            assert (got["attention"] is not None) == bool(body.get("return_attention"))
    texts_sent = sum(len(body.get("texts") or [body["text"]]) for body in bodies)
    assert [a - b for a, b in zip(metric_sums(slow_window_server.url, *COUNTED), before, strict=True)] == [
        texts_sent
    ] * 2


COUNTED = ("seq2seq_texts_translated_total", "seq2seq_batch_texts_sum")  # texts translated, texts batched


def metric_sums(url: str, *names: str) -> list[float]:
    """The server's ``/metrics`` samples of each name, summed over their labels."""
    found = dict.fromkeys(names, 0.0)
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name] += sample.value
    return [found[name] for name in names]


class ThreadsSeen:
    """A stream stand-in: records the torch threads each of its steps ran with, ends nothing."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __len__(self) -> int:
        return 1

    def step(self) -> list:
        self.seen.append(torch.get_num_threads())
        return []


@pytest.mark.parametrize(("threads", "greedy"), [(2, 1), (3, 2), (1, 1)])
def test_greedy_steps_leave_a_thread_and_beam_steps_and_batches_get_them_all(
    threads: int, greedy: int
) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        jobs = StreamedJobs({"m": None}, threads)
        greedy_stream, beam_stream = ThreadsSeen(), ThreadsSeen()
        jobs.streams = {("m", 1, 1, 0.0): greedy_stream, ("m", 5, 1, 1.0): beam_stream}
        assert jobs.step() == []
        # after the step, batches (attention, pivots) get every thread again
        assert (greedy_stream.seen, beam_stream.seen, torch.get_num_threads()) == (
            [greedy],
            [threads],
            threads,
        )
    finally:
        torch.set_num_threads(before)


def test_no_continuous_batches_greedy_requests_with_the_same_answers(
    tiny_checkpoint: Path, tmp_path: Path, texts: list[str]
) -> None:
    """``--no-continuous``: every request takes the batch path, with the adaptive window."""
    server = start_server(
        tiny_checkpoint, tmp_path, "--threads", "1", "--no-continuous", "--batch-timeout", "0.05"
    )
    try:
        reference = Translator.from_checkpoint(tiny_checkpoint).translate(
            texts, beam_size=1, max_length=MAX_LENGTH
        )

        async def together() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                return await asyncio.gather(
                    *(http.post("/translate", json={"text": t, "beam_size": 1}) for t in texts)
                )

        responses = asyncio.run(together())
        assert [r.status_code for r in responses] == [200] * len(texts)
        for r, ref in zip(responses, reference, strict=True):
            same(r.json()["translations"][0], ref)
        requests, texts_in_batches = metric_sums(
            server.url, "seq2seq_batch_requests_sum", "seq2seq_batch_texts_sum"
        )
        assert requests == texts_in_batches == len(texts)  # one text per request, each batched once
    finally:
        server.stop()


def test_device_cpu_server_reports_it(slow_window_server) -> None:
    info = httpx.get(f"{slow_window_server.url}/info", timeout=10).json()
    assert [m["device"] for m in info["model"]["models"]] == ["cpu"] and info["server"]["devices"] == ["cpu"]


# -- --device ------------------------------------------------------------------------------------
def test_translator_device_cpu_equals_the_default(tiny_checkpoint: Path, texts: list[str]) -> None:
    default = Translator.from_checkpoint(tiny_checkpoint)
    on_cpu = Translator.from_checkpoint(tiny_checkpoint, device="cpu")
    assert on_cpu.device == torch.device("cpu") == default.device
    for a, b in zip(default.translate(texts, beam_size=3), on_cpu.translate(texts, beam_size=3), strict=True):
        assert (a.text, a.score) == (b.text, b.score)
    auto = Translator.from_checkpoint(tiny_checkpoint, device="auto")
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    int8 = Translator.from_checkpoint(tiny_checkpoint, quantize="int8", device="auto")
    assert int8.device.type == "cpu"  # dynamic int8 runs on the CPU only
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Translator.from_checkpoint(tiny_checkpoint, device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_checkpoint: Path, capsys) -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        Translator.from_checkpoint(tiny_checkpoint, device="cuda")
    with pytest.raises(SystemExit) as exit_info:
        commands.translate_main(["--checkpoint", str(tiny_checkpoint), "--device", "cuda"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: device cuda was asked for, but torch sees no CUDA GPU\n"
    proc = subprocess.run(
        [sys.executable, "-m", "serve", "--checkpoint", str(tiny_checkpoint), "--device", "cuda",
         "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == "seq2seq-serve: error: device cuda was asked for, but torch sees no CUDA GPU\n"
