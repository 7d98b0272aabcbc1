"""Operating the server: dead workers, /metrics, JSON logs, the OpenAPI document, timeouts, SIGTERM.

Two real ``python -m serve`` processes serve all the checks in order (the last checks stop them).
Requests are held in flight by stopping the inference worker (SIGSTOP), never by sleeping.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_serve import (
    MAX_LENGTH,
    Server,
    alive,
    check_concurrent_translations,
    descendants,
    same,
    start_server,
)

from seq2seq.corpus import generate_pairs
from seq2seq.translator import Translator

SMALL_LIMITS = {"max_chars": 64, "max_texts": 4, "max_beam": 3, "max_length": 32}  # quick schemathesis cases
TIMEOUT_S = 3.0  # --timeout of the small server


# -- helpers -------------------------------------------------------------------------------------
def wait_for(condition: Callable[[], object], what: str, deadline_s: float = 60.0) -> object:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out after {deadline_s} s waiting for {what}")


def worker_pids(server: Server) -> list[int]:
    """The live inference workers: the spawned children (the resource tracker is not spawn_main)."""
    pids = []
    for pid in descendants(server.proc.pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes() and alive(pid):
                pids.append(pid)
        except OSError:
            continue
    return sorted(pids)


def scrape(server: Server) -> dict[tuple, float]:
    """``/metrics`` parsed by prometheus_client: {(sample name, sorted labels): value}."""
    r = httpx.get(f"{server.url}/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(metrics: dict[tuple, float], name: str, **labels: str) -> float:
    """The sum of the samples ``name`` with these labels (whatever their other labels)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in metrics.items() if n == name and wanted <= set(have))


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        os.kill(pid, sig)


def in_background(server: Server, payloads: list[dict]) -> list[Future]:
    """POST each payload to /translate from its own thread: futures of (response, when answered)."""

    def post(payload: dict) -> tuple[httpx.Response, float]:
        r = httpx.post(f"{server.url}/translate", json=payload, timeout=90)
        return r, time.monotonic()

    pool = ThreadPoolExecutor(len(payloads))
    futures = [pool.submit(post, p) for p in payloads]
    pool.shutdown(wait=False)
    return futures


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return list(dict.fromkeys(src for src, _ in generate_pairs("en", "fr", 300, seed=5)))[:96]


@pytest.fixture(scope="module")
def model_copy(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy the last check may break, to make a restart impossible."""
    path = tmp_path_factory.mktemp("model") / "model.ckpt"
    shutil.copyfile(tiny_checkpoint, path)
    return path


@pytest.fixture(scope="module")
def ops_server(model_copy: Path, tmp_path_factory: pytest.TempPathFactory):
    s = start_server(
        model_copy, tmp_path_factory.mktemp("ops"), "--workers", "2", "--threads", "1",
        "--log-format", "json", "--log-level", "info",
    )  # fmt: skip
    yield s
    s.stop()


@pytest.fixture(scope="module")
def small_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    limits = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL_LIMITS.items()]
    s = start_server(
        tiny_checkpoint,
        tmp_path_factory.mktemp("small"),
        "--threads",
        "1",
        "--timeout",
        str(TIMEOUT_S),
        *limits,
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def traffic(ops_server: Server, translator: Translator, sentences) -> dict:
    """Known requests, each on a new connection (so both HTTP processes serve some), and the
    metrics before and after them."""
    url = ops_server.url
    before = scrape(ops_server)
    sizes = [1, 2, 3, 4]
    batches = [sentences[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(len(sizes))]
    for texts in batches:
        r = httpx.post(f"{url}/translate", json={"texts": texts, "beam_size": 2}, timeout=60)
        assert r.status_code == 200, r.text
    for _ in range(3):
        assert httpx.post(f"{url}/translate", json={}).status_code == 422
    for _ in range(2):
        assert httpx.post(f"{url}/translate", content=b'{"text": "one"}').status_code == 415
    assert httpx.get(f"{url}/info").status_code == 200
    assert httpx.get(f"{url}/no-such-page").status_code == 404
    libre = httpx.post(f"{url}/translate", json={"q": "seven", "source": "en", "target": "fr"}, timeout=60)
    assert libre.status_code == 200, libre.text  # LibreTranslate's request: its own route, same workers
    posts = ("POST", "/translate")
    after = wait_for(
        lambda: (
            (m := scrape(ops_server))
            and delta(
                before, m, "seq2seq_http_request_duration_seconds_count", method=posts[0], path=posts[1]
            )
            == 9
            and m
        ),
        "the HTTP metrics of 9 POST /translate",
    )
    reference = [translator.translate(texts, beam_size=2, max_length=MAX_LENGTH) for texts in batches]
    reference.append(translator.translate(["seven"], beam_size=5, max_length=MAX_LENGTH))  # LibreTranslate's
    assert libre.json()["translatedText"] == reference[-1][0].text
    return {"before": before, "after": after, "sizes": sizes, "reference": reference}


# -- the ops server: 2 workers, JSON logs ---------------------------------------------------------
def test_two_workers_translate_correctly_under_load(ops_server: Server, translator: Translator, sentences):
    """64 simultaneous requests with mixed options over 2 workers: each gets its own translation."""
    check_concurrent_translations(ops_server, translator, sentences[:64])


def test_metrics_count_known_traffic(traffic: dict) -> None:
    before, after = traffic["before"], traffic["after"]
    expected = {
        ("POST", "/translate", "200"): 4,
        ("POST", "/translate", "422"): 3,
        ("POST", "/translate", "415"): 2,
        ("GET", "/info", "200"): 1,
        ("GET", "unmatched", "404"): 1,
        ("POST", "/libretranslate/translate", "200"): 1,  # a route added after the metrics, counted too
    }
    for (method, path, status), count in expected.items():
        got = delta(before, after, "seq2seq_http_requests_total", method=method, path=path, status=status)
        assert got == count, (method, path, status)
    translations = [t for batch in traffic["reference"] for t in batch]
    requests, texts = len(traffic["reference"]), sum(traffic["sizes"]) + 1  # + LibreTranslate's
    assert delta(before, after, "seq2seq_texts_translated_total") == len(translations) == texts
    source = sum(len(t.source_tokens) for t in translations)
    target = sum(len(t.hypotheses[0].tokens) for t in translations)
    assert delta(before, after, "seq2seq_texts_translated_total", model="en-fr") == len(translations)
    assert delta(before, after, "seq2seq_tokens_translated_total", side="source") == source
    assert delta(before, after, "seq2seq_tokens_translated_total", side="target") == target
    assert delta(before, after, "seq2seq_queue_wait_seconds_count") == requests  # one per translated request
    assert delta(before, after, "seq2seq_batch_requests_sum") == requests
    assert delta(before, after, "seq2seq_batch_texts_sum") == texts
    assert delta(before, after, "seq2seq_batch_duration_seconds_count") == delta(
        before, after, "seq2seq_batch_requests_count"
    )
    # the histogram's buckets are cumulative and end with every request
    post = {"method": "POST", "path": "/translate"}
    assert value(after, "seq2seq_http_request_duration_seconds_bucket", **post, le="+Inf") == value(
        after, "seq2seq_http_request_duration_seconds_count", **post
    )
    assert value(after, "seq2seq_worker_restarts_total") == 0
    assert value(after, "seq2seq_http_requests_in_progress") == 0


def test_json_log_has_one_line_per_request(ops_server: Server, traffic: dict) -> None:
    lines = [json.loads(line) for line in ops_server.log.read_text().splitlines() if line.startswith("{")]
    requests = [e for e in lines if e["logger"] == "serve.access"]
    translated = sorted(e["texts"] for e in requests if e["path"] == "/translate" and e["status"] == 200)
    assert set(traffic["sizes"]) <= set(translated)
    assert (
        sum(1 for e in requests if e["path"] == "/translate" and e["status"] == 422 and e["texts"] is None)
        >= 3
    )
    (libre,) = [e for e in requests if e["path"] == "/libretranslate/translate"]
    assert (libre["status"], libre["texts"]) == (200, 1)
    (missing,) = [e for e in requests if e["path"] == "/no-such-page"]
    assert (missing["method"], missing["status"]) == ("GET", 404)
    assert all(isinstance(e["duration_ms"], float) and e["duration_ms"] >= 0 for e in requests)
    assert all(e["level"] in ("info", "warning", "error") for e in lines)  # uvicorn's lines too


def test_dead_workers_are_restarted_and_their_requests_get_503(
    ops_server: Server, translator: Translator, sentences
) -> None:
    """SIGKILL both workers (as the OOM killer would) while they translate 8 requests."""
    # the tiny model repeats itself up to max_length on this: about a second per request
    slow = {"texts": ["hello there " * 80] * 2, "beam_size": 10}
    pids = worker_pids(ops_server)
    assert len(pids) == 2
    before = scrape(ops_server)
    pending = in_background(ops_server, [slow] * 8)
    wait_for(
        lambda: delta(before, scrape(ops_server), "seq2seq_queue_wait_seconds_count") == 8,
        "the workers to take all 8 requests",
    )
    signal_all(pids, signal.SIGSTOP)  # freeze them mid-batch, to count what they had finished
    finished = delta(before, scrape(ops_server), "seq2seq_batch_requests_sum")
    signal_all(pids, signal.SIGKILL)
    killed = time.monotonic()
    health: list[int] = []
    wait_for(
        lambda: (
            health.append(httpx.get(f"{ops_server.url}/health").status_code)
            or health[-1] == 200
            and 503 in health
        ),
        "/health to answer 503 and then 200",
        120,
    )
    answers = [f.result(timeout=60) for f in pending]
    died = [(r, at) for r, at in answers if r.status_code != 200]
    assert len(died) >= max(1, 8 - finished), [r.status_code for r, _ in answers]  # the last taken, at least
    for r, answered in died:
        assert r.status_code == 503, r.text
        assert "worker died" in r.json()["detail"] and r.headers["retry-after"] == "5"
        assert answered - killed < 5.0  # at once, not after the 30 s timeout
    assert all(at < killed for r, at in answers if r.status_code == 200)  # finished before the kill
    new_pids = worker_pids(ops_server)
    assert len(new_pids) == 2 and not set(new_pids) & set(pids)
    r = httpx.post(f"{ops_server.url}/translate", json={"texts": sentences[:3], "beam_size": 3}, timeout=60)
    assert r.status_code == 200
    reference = translator.translate(sentences[:3], beam_size=3, max_length=MAX_LENGTH)
    for served, ref in zip(r.json()["translations"], reference, strict=True):
        same(served, ref)
    assert value(scrape(ops_server), "seq2seq_worker_restarts_total") == 2
    assert "Traceback" not in ops_server.stderr()


def test_a_worker_that_cannot_restart_stops_the_server_with_one_line(ops_server: Server, model_copy: Path):
    model_copy.write_bytes(b"not a checkpoint any more")
    family = descendants(ops_server.proc.pid)
    os.kill(worker_pids(ops_server)[0], signal.SIGKILL)
    assert ops_server.proc.wait(timeout=120) == 1, ops_server.stderr()
    last = ops_server.stderr().strip().splitlines()[-1]
    assert last.startswith("seq2seq-serve: error: inference worker") and "giving up" in last, last
    assert "EOFError" not in ops_server.stderr()
    wait_for(lambda: not [p for p in family if alive(p)], "the server's processes to exit", 30)


# -- the small server: 1 worker, --timeout 3, small limits -----------------------------------------
def test_openapi_documents_what_the_server_answers(small_server: Server) -> None:
    doc = httpx.get(f"{small_server.url}/openapi.json").json()
    translate = doc["paths"]["/translate"]["post"]["responses"]
    assert set(translate) == {"200", "400", "413", "415", "422", "503", "504"}  # no key set: no 401
    assert translate["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationErrors")
    for path in ("/health", "/metrics"):
        for response in doc["paths"][path]["get"]["responses"].values():
            assert next(iter(response["content"])).startswith("text/plain"), path
    request = doc["components"]["schemas"]["TranslateRequest"]
    assert request["properties"]["beam_size"]["maximum"] == SMALL_LIMITS["max_beam"]
    assert [b["required"] for b in request["allOf"][0]["oneOf"]] == [["text"], ["texts"]]
    assert httpx.get(f"{small_server.url}/health").headers["content-type"].startswith("text/plain")


def test_schemathesis_finds_no_failures(small_server: Server, tmp_path: Path) -> None:
    """Every check, on generated valid and invalid requests for every documented route."""
    cli = Path(sys.executable).with_name("schemathesis")
    # a schema-valid upload can still be no document of its format (its bytes are not in any schema): 400
    (tmp_path / "schemathesis.toml").write_text(
        '[[operations]]\ninclude-path = "/translate_file"\n'
        'checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "403", "404", "409", "429", "5xx"]\n'
        "warnings = false\n"  # "mostly rejected": random bytes are rarely a .docx
        '[[operations]]\ninclude-path = "/download_file/{name}"\nwarnings = false\n'  # only uploads make names
    )
    # LibreTranslate's routes too (JSON and form bodies), and the root /translate that takes both APIs
    cmd = [str(cli), "run", f"{small_server.url}/openapi.json", "--checks", "all", "--max-examples", "60",
           "--seed", "1", "--no-color",
           "--request-timeout", "30", "--generation-database", "none"]  # fmt: skip
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout


def test_queue_timeout_answers_504_json(small_server: Server) -> None:
    (worker,) = worker_pids(small_server)
    os.kill(worker, signal.SIGSTOP)  # nobody takes the request off the queue
    try:
        (pending,) = in_background(small_server, [{"text": "seven", "beam_size": 1}])
        wait_for(lambda: value(scrape(small_server), "seq2seq_http_requests_in_progress") == 1, "the request")
        time.sleep(TIMEOUT_S + 0.2)  # the condition under test: it outwaits --timeout in the queue
    finally:
        os.kill(worker, signal.SIGCONT)
    r, _ = pending.result(timeout=60)
    assert r.status_code == 504 and r.headers["content-type"] == "application/json"
    assert "--timeout" in r.json()["detail"]
    assert httpx.post(f"{small_server.url}/translate", json={"text": "seven"}, timeout=60).status_code == 200


def test_sigterm_lets_accepted_requests_finish(small_server: Server, translator: Translator, sentences):
    texts = [t for t in sentences if len(t) <= SMALL_LIMITS["max_chars"]][:8]
    (worker,) = worker_pids(small_server)
    family = descendants(small_server.proc.pid)
    os.kill(worker, signal.SIGSTOP)  # hold all 8 in flight
    try:
        pending = in_background(small_server, [{"text": t, "beam_size": 2} for t in texts])
        wait_for(lambda: value(scrape(small_server), "seq2seq_http_requests_in_progress") == 8, "8 requests")
        small_server.proc.send_signal(signal.SIGTERM)
    finally:
        os.kill(worker, signal.SIGCONT)
    reference = translator.translate(texts, beam_size=2, max_length=SMALL_LIMITS["max_length"])
    for (r, _), ref in zip((f.result(timeout=60) for f in pending), reference, strict=True):
        assert r.status_code == 200, r.text
        same(r.json()["translations"][0], ref)
    assert small_server.proc.wait(timeout=60) == 0, small_server.stderr()
    wait_for(lambda: not [p for p in family if alive(p)], "the server's processes to exit", 30)
    assert "Traceback" not in small_server.stderr()
