"""The HTTP service end to end: real ``python -m serve`` processes, a real tiny model, httpx."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from seq2seq.corpus import generate_pairs
from seq2seq.tokenizer import EOS_ID
from seq2seq.translator import CheckpointError, Translator
from serve.catalog import Catalog
from serve.native.schemas import TranslateRequest
from serve.worker.api import TranslatorAPI
from serve.worker.checkpoint import check_checkpoint
from serve.worker.jobs import DecodeOptions, Job

ROOT = Path(__file__).resolve().parents[1]
START_DEADLINE = 240.0  # seconds; start-up is ~5 s idle, far more on a busy 2-core machine
JSON = {"content-type": "application/json"}
MAX_LENGTH = 256  # the server's default --max-length, used for the reference translations


# -- helpers: processes, ports, /proc -------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process just exited
            continue
        kids.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return kids


def descendants(pid: int) -> set[int]:
    kids, found, todo = children_map(), set(), [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie runs nothing and holds no port


def listen_address(port: int) -> str | None:
    """IPv4 address a socket listens on for ``port``, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":
            return socket.inet_ntoa(bytes.fromhex(addr)[::-1])
    return None


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for pid in descendants(self.proc.pid):
                os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            return self.proc.wait()


def start_server(checkpoint: Path | None, log_dir: Path, *args: str, env: dict | None = None) -> Server:
    """Run ``python -m serve`` on a free port and poll ``/health`` until it answers 200."""
    port = free_port()
    log = log_dir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "serve", "--port", str(port), "--log-level", "warning", *args]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    server = Server(proc, port, log)
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode} during start-up:\n{server.stderr()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop(signal.SIGKILL)
    pytest.fail(f"server not healthy after {START_DEADLINE} s:\n{server.stderr()}")


def failed_starts(runs: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
    """Start ``python -m serve`` with each set of arguments at once; (exit code, stderr) of each."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "serve", "--port", str(free_port()), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name, args in runs.items()
    }
    return {name: (p.wait(timeout=180), p.communicate()[1]) for name, p in procs.items()}


def same(served: dict, reference, n_best: int = 1) -> None:
    """A served translation equals the Translator's: text, n-best texts, tokens and scores."""
    assert served["text"] == reference.text
    assert served["tokens"] == reference.hypotheses[0].tokens
    assert served["score"] == pytest.approx(reference.score, abs=1e-3)
    assert [h["text"] for h in served["n_best"]] == [h.text for h in reference.hypotheses]
    assert len(served["n_best"]) == n_best


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    # one torch thread: the same arithmetic as the reference Translator here, and no thread
    # oversubscription on a busy machine
    s = start_server(tiny_checkpoint, tmp_path_factory.mktemp("serve"), "--threads", "1")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    texts = list(dict.fromkeys(src for src, _ in generate_pairs("en", "fr", 200, seed=11)))
    assert len(texts) >= 64
    return texts[:64]


# -- translations ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {"beam_size": 1},
        {"beam_size": 5},
        {"beam_size": 4, "n_best": 3, "length_penalty": 0.6},
    ],
    ids=["greedy", "beam5", "beam4-nbest3"],
)
def test_translations_match_translator(server: Server, translator: Translator, sentences, options) -> None:
    texts = sentences[:5]
    r = httpx.post(f"{server.url}/translate", json={"texts": texts, **options}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["src_lang"], body["tgt_lang"]) == ("en", "fr")
    reference = translator.translate(texts, max_length=MAX_LENGTH, **options)
    assert len(body["translations"]) == len(texts)
    for served, ref in zip(body["translations"], reference, strict=True):
        same(served, ref, options.get("n_best", 1))
        assert served["attention"] is None and served["source_tokens"] is None

    single = httpx.post(f"{server.url}/translate", json={"text": texts[0], **options}, timeout=60)
    assert single.status_code == 200
    same(single.json()["translations"][0], reference[0], options.get("n_best", 1))


def test_attention_is_returned_on_request(server: Server, translator: Translator, sentences) -> None:
    r = httpx.post(
        f"{server.url}/translate",
        json={"text": sentences[1], "beam_size": 3, "return_attention": True},
    )
    assert r.status_code == 200, r.text
    out = r.json()["translations"][0]
    ref = translator.translate([sentences[1]], beam_size=3, max_length=MAX_LENGTH, return_attention=True)[0]
    assert out["source_tokens"] == ref.source_tokens
    att = torch.tensor(out["attention"])
    assert att.shape == (len(out["tokens"]) + 1, len(out["source_tokens"]) + 1)
    assert torch.allclose(att.sum(dim=1), torch.ones(att.shape[0]), atol=1e-4)  # each row a distribution
    assert torch.allclose(att, torch.tensor(ref.hypotheses[0].attention), atol=1e-4)


def check_concurrent_translations(server: Server, translator: Translator, texts: list[str]) -> None:
    """One simultaneous request per text, three option sets mixed: each answer belongs to its request."""
    option_sets = [
        {"beam_size": 1},
        {"beam_size": 3, "n_best": 2},
        {"beam_size": 2, "length_penalty": 1.0},
    ]
    jobs = list(zip(texts, itertools.cycle(range(len(option_sets)))))
    reference = {}
    for k, options in enumerate(option_sets):
        mine = [text for text, j in jobs if j == k]
        for text, ref in zip(mine, translator.translate(mine, max_length=MAX_LENGTH, **options), strict=True):
            reference[text] = ref

    async def run_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            return await asyncio.gather(
                *(client.post("/translate", json={"text": text, **option_sets[k]}) for text, k in jobs)
            )

    responses = asyncio.run(run_all())
    assert [r.status_code for r in responses] == [200] * len(jobs)
    for (text, k), r in zip(jobs, responses, strict=True):
        same(r.json()["translations"][0], reference[text], option_sets[k].get("n_best", 1))


def test_concurrent_requests_get_their_own_translations(
    server: Server, translator: Translator, sentences
) -> None:
    check_concurrent_translations(server, translator, sentences)


def test_predict_groups_requests_by_options(tiny_checkpoint: Path, translator: Translator, sentences) -> None:
    """In-process: one translate call per distinct options, each job gets its own results."""
    catalog = Catalog.from_metadata([check_checkpoint(str(tiny_checkpoint))])
    api = TranslatorAPI(catalog, threads=1)  # setup() sets this process's torch threads: keep conftest's 1
    api.setup("cpu")
    calls: list[int] = []
    (model,) = api.translators.values()
    real_translate = model.translate

    def counting_translate(texts, **kwargs):
        calls.append(len(texts))
        return real_translate(texts, **kwargs)

    model.translate = counting_translate
    greedy = DecodeOptions(1, 1, MAX_LENGTH, 0.0, False)
    beam = DecodeOptions(3, 2, MAX_LENGTH, 0.0, False)
    route = catalog.route()
    jobs = [
        Job(sentences[0:3], greedy, route),
        Job(sentences[3:4], beam, route),
        Job(sentences[4:6], greedy, route),
        Job(sentences[6:8], beam, route),
    ]
    results = api.predict(jobs)
    assert sorted(calls) == [3, 5]  # two option sets, all their texts in one call each
    for job, result in zip(jobs, results, strict=True):
        ref = translator.translate(
            job.texts,
            beam_size=job.options.beam_size,
            n_best=job.options.n_best,
            max_length=MAX_LENGTH,
        )
        assert [t.source for t in result.translations] == job.texts
        assert [[h.text for h in t.hypotheses] for t in result.translations] == [
            [h.text for h in t.hypotheses] for t in ref
        ]
    assert api.predict(jobs[1:2])[0].translations[0].source == sentences[3]


# -- languages and pairs ---------------------------------------------------------------------
def test_languages_and_source_target(server: Server, translator: Translator, sentences) -> None:
    """``GET /languages`` in LibreTranslate's shape; ``source``/``target`` name the pair or get a 422."""
    assert httpx.get(f"{server.url}/languages").json() == [
        {"code": "en", "name": "English", "targets": ["fr"]}
    ]
    reference = translator.translate(sentences[:2], beam_size=2, max_length=MAX_LENGTH)
    for pair in ({"source": "en", "target": "fr"}, {"target": "fr"}, {"source": "en"}):
        r = httpx.post(f"{server.url}/translate", json={"texts": sentences[:2], "beam_size": 2, **pair})
        assert r.status_code == 200, r.text
        assert (r.json()["src_lang"], r.json()["tgt_lang"], r.json()["pivot"]) == ("en", "fr", None)
        for served, ref in zip(r.json()["translations"], reference, strict=True):
            same(served, ref)
    for pair in ({"source": "de", "target": "fr"}, {"target": "en"}, {"source": "fr"}):
        r = httpx.post(f"{server.url}/translate", json={"text": "nine", **pair})
        assert r.status_code == 422, r.text
        assert "pairs available: en->fr" in r.json()["message"]


def test_a_text_never_gets_an_empty_translation(tiny_checkpoint: Path, tmp_path: Path, sentences) -> None:
    """A model that ranks end of sentence first everywhere: a text by default, "" only with
    ``min_length=0``; the server's workers decode with the same default."""
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    ckpt["state_dict"]["model.output.bias"][EOS_ID] += 100.0
    path = tmp_path / "eos-first.ckpt"
    torch.save(ckpt, path)
    translator = Translator.from_checkpoint(path)
    assert {t.text for t in translator.translate(sentences[:4], beam_size=3, min_length=0)} == {""}
    for t in translator.translate(sentences[:4], beam_size=3, n_best=3) + translator.translate(sentences[:4]):
        assert all(h.text.strip() for h in t.hypotheses), t  # a lone "▁" does not count
    api = TranslatorAPI(Catalog.from_metadata([check_checkpoint(str(path))]), threads=1)
    api.setup("cpu")
    job = api.decode_request(TranslateRequest(texts=sentences[:4], beam_size=3))
    served = api.encode_response(api.predict([job])[0])
    assert [t.text for t in served.translations] == [
        t.text for t in translator.translate(sentences[:4], beam_size=3)
    ]


# -- bad input: 4xx with JSON naming the problem, and the server keeps serving ----------------
BAD_INPUTS = {
    "invalid-json": ({"content": b'{"text": "one"', "headers": JSON}, 422, "invalid JSON"),
    "json-array": ({"json": ["one"]}, 422, "valid dictionary"),
    "json-number": ({"json": 42}, 422, "valid dictionary"),
    "form-encoded": (
        {
            "content": b'{"text": "one"}',
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        415,
        "application/json",
    ),  # fmt: skip
    "form-fields": ({"data": {"text": "one"}}, 415, "application/json"),
    "no-content-type": ({"content": b'{"text": "one"}'}, 415, "application/json"),
    "text-not-string": ({"json": {"text": 5}}, 422, "valid string"),
    "beam-as-string": ({"json": {"text": "one", "beam_size": "5"}}, 422, "beam_size"),
    "flag-as-int": ({"json": {"text": "one", "return_attention": 1}}, 422, "return_attention"),
    "missing-text": ({"json": {"beam_size": 2}}, 422, "exactly one of 'text'"),
    "text-and-texts": ({"json": {"text": "one", "texts": ["two"]}}, 422, "exactly one of 'text'"),
    "empty-text": ({"json": {"text": ""}}, 422, "must not be empty"),
    "blank-in-list": ({"json": {"texts": ["one", " \t"]}}, 422, "texts[1]"),
    "empty-list": ({"json": {"texts": []}}, 422, "at least one"),
    "text-too-long": ({"json": {"text": "a" * 1001}}, 422, "limit is 1000"),
    "too-many-texts": ({"json": {"texts": ["one"] * 65}}, 422, "limit is 64"),
    "beam-over-limit": ({"json": {"text": "one", "beam_size": 11}}, 422, "limit of 10"),
    "beam-zero": ({"json": {"text": "one", "beam_size": 0}}, 422, "beam_size"),
    "n-best-over-beam": (
        {"json": {"text": "one", "beam_size": 2, "n_best": 3}},
        422,
        "n_best (3) cannot exceed",
    ),  # fmt: skip
    "max-length-over-limit": ({"json": {"text": "one", "max_length": 257}}, 422, "limit of 256"),
    "unknown-option": ({"json": {"text": "one", "temperature": 0.7}}, 422, "temperature"),
    "nan-penalty": (
        {"content": b'{"text": "one", "length_penalty": NaN}', "headers": JSON},
        422,
        "finite",
    ),
    "lone-surrogate": (
        {"content": b'{"text": "\\ud800"}', "headers": JSON},
        422,
        "not valid Unicode",
    ),
    "non-utf8-bytes": ({"content": b'{"text": "\xff\xfe"}', "headers": JSON}, 400, "UTF-8"),
    "deep-list": ({"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON}, 422, "nested more than 200"),
    "deep-object": (
        {"content": b'{"a": ' * 5000 + b"1" + b"}" * 5000, "headers": JSON},
        422,
        "nested more than 200",
    ),
    "oversize-body": (
        {"content": b'{"text": "' + b"a" * 600_000 + b'"}', "headers": JSON},
        413,
        "too large",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_4xx_json(server: Server, case: str) -> None:
    request, status, words = BAD_INPUTS[case]
    r = httpx.post(f"{server.url}/translate", timeout=30, **request)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert words in json.dumps(r.json(), ensure_ascii=False), r.text
    good = httpx.post(f"{server.url}/translate", json={"text": "twelve", "beam_size": 1}, timeout=30)
    assert good.status_code == 200 and good.json()["translations"][0]["text"]


def test_a_too_deep_body_is_counted_as_a_4xx(server: Server) -> None:
    """The deep body reaches the route (no 500 from a middleware), so /metrics counts its 422."""

    def count() -> float:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        line = 'seq2seq_http_requests_total{method="POST",path="/translate",status="422"}'
        return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))

    before = count()
    for _ in range(2):
        r = httpx.post(f"{server.url}/translate", content=b"[" * 100_000, headers=JSON, timeout=30)
        assert r.status_code == 422 and "nested" in r.json()["message"], r.text
    assert count() == before + 2


def test_a_body_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dispatch middleware's look at the body is the parse the native route uses."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from serve.libretranslate.fields import LibreTranslateDispatch
    from serve.native import body

    calls = []
    parse = body.pydantic_core.from_json
    monkeypatch.setattr(body.pydantic_core, "from_json", lambda raw: calls.append(raw) or parse(raw))
    app = FastAPI()
    app.router.route_class = body.JSONRoute

    @app.post("/translate")
    async def native(request: TranslateRequest) -> dict:
        return {"texts": request.all_texts()}

    app.add_middleware(LibreTranslateDispatch, max_body=10_000)
    with TestClient(app) as client:
        r = client.post("/translate", json={"texts": ["one", "two"]})
    assert r.json() == {"texts": ["one", "two"]} and len(calls) == 1


# -- metadata endpoints ----------------------------------------------------------------------
def test_info_health_and_openapi(server: Server, translator: Translator) -> None:
    assert httpx.get(f"{server.url}/health").text == "ok"
    info = httpx.get(f"{server.url}/info").json()["model"]
    (model,) = info["models"]
    assert (model["src_lang"], model["tgt_lang"], model["data"]) == ("en", "fr", "builtin")
    assert model["src_vocab_size"] == translator.src_tokenizer.vocab_size
    assert model["tgt_vocab_size"] == translator.tgt_tokenizer.vocab_size
    assert model["parameters"] == sum(p.numel() for p in translator.model.parameters())
    assert model["architecture"]["dec_hidden"] == 64 and model["quantize"] == "none"
    assert info["limits"] == {
        "max_chars": 1000,
        "max_texts": 64,
        "max_beam": 10,
        "max_length": 256,
    }
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"TranslateRequest", "TranslateResponse"} <= set(schema["components"]["schemas"])
    assert httpx.get(f"{server.url}/docs").status_code == 200
    assert listen_address(server.port) == "127.0.0.1"  # not exposed beyond this machine by default


# -- API key, int8, settings from the environment --------------------------------------------
@pytest.fixture(scope="module")
def keyed_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    env = {"SEQ2SEQ_CHECKPOINT": str(tiny_checkpoint), "SEQ2SEQ_API_KEY": "s3cret"}
    s = start_server(
        None,
        tmp_path_factory.mktemp("keyed"),
        "--quantize",
        "int8",
        "--max-beam",
        "3",
        "--threads",
        "1",
        env=env,
    )
    yield s
    s.stop()


def test_api_key_is_required_when_set(keyed_server: Server) -> None:
    url, payload = f"{keyed_server.url}/translate", {"text": "twelve", "beam_size": 1}
    for headers in ({}, {"X-API-Key": "wrong"}):
        r = httpx.post(url, json=payload, headers=headers)
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
    assert httpx.get(f"{keyed_server.url}/info").status_code == 401
    assert httpx.get(f"{keyed_server.url}/health").status_code == 200  # probes need no key
    assert httpx.get(f"{keyed_server.url}/languages").status_code == 200  # LibreTranslate clients ask without
    ok = httpx.post(url, json=payload, headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200 and ok.json()["translations"][0]["text"]
    # /metrics is behind the key too, and the OpenAPI document says which routes answer 401
    assert httpx.get(f"{keyed_server.url}/metrics").status_code == 401
    assert httpx.get(f"{keyed_server.url}/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
    paths = httpx.get(f"{keyed_server.url}/openapi.json", headers={"X-API-Key": "s3cret"}).json()["paths"]
    assert (
        "401" in paths["/translate"]["post"]["responses"] and "401" in paths["/metrics"]["get"]["responses"]
    )
    assert "401" not in paths["/health"]["get"]["responses"]


def test_int8_server_translates_like_int8_translator(
    keyed_server: Server, tiny_checkpoint: Path, sentences
) -> None:
    key = {"X-API-Key": "s3cret"}
    info = httpx.get(f"{keyed_server.url}/info", headers=key).json()["model"]
    assert info["models"][0]["quantize"] == "int8" and info["limits"]["max_beam"] == 3
    over = httpx.post(f"{keyed_server.url}/translate", json={"text": "one", "beam_size": 4}, headers=key)
    assert over.status_code == 422 and "limit of 3" in over.text  # --max-beam reaches the API process
    r = httpx.post(
        f"{keyed_server.url}/translate", json={"texts": sentences[:4], "beam_size": 3}, headers=key
    )
    assert r.status_code == 200, r.text
    reference = Translator.from_checkpoint(tiny_checkpoint, quantize="int8").translate(
        sentences[:4], beam_size=3, max_length=MAX_LENGTH
    )
    for served, ref in zip(r.json()["translations"], reference, strict=True):
        same(served, ref)


def test_no_key_needed_when_none_set(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/translate",
        json={"text": "seven", "beam_size": 1},
        headers={"X-API-Key": "x"},
    )
    assert r.status_code == 200


def test_a_utf8_bom_changes_nothing(server: Server, keyed_server: Server, sentences) -> None:
    """A UTF-8 BOM before the JSON (pydantic-core's parser refuses it, the body reader falls back
    to json's, which skips it): status, headers and body bytes are the same as without."""
    cases = [
        (server, {"text": sentences[0], "beam_size": 1}, {}),
        (server, {"texts": sentences[1:4], "beam_size": 3, "n_best": 2, "length_penalty": 0.6}, {}),
        (server, {"text": sentences[4], "beam_size": 2, "return_attention": True}, {}),
        (server, {"text": "élève « ça » 東京 😀", "max_length": 5}, {}),
        (server, {"text": "one", "beam_size": 99}, {}),  # 422 either way
        (keyed_server, {"text": "twelve", "beam_size": 1}, {"X-API-Key": "s3cret"}),
        (keyed_server, {"text": "twelve", "beam_size": 1}, {"X-API-Key": "wrong"}),  # 401
    ]
    statuses = []
    for target, payload, headers in cases:
        body = json.dumps(payload, ensure_ascii=False).encode()
        answers = []
        for prefix in (b"", b"\xef\xbb\xbf"):
            r = httpx.post(
                f"{target.url}/translate",
                content=prefix + body,
                headers={"Content-Type": "application/json", **headers},
                timeout=60,
            )
            answers.append((r.status_code, {k: v for k, v in r.headers.items() if k != "date"}, r.content))
        assert answers[0] == answers[1], payload
        statuses.append(answers[0][0])
    assert statuses == [200, 200, 200, 200, 422, 200, 401]


# -- start-up refuses bad checkpoints --------------------------------------------------------
class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def bad_checkpoint_runs(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Start ``python -m serve`` on each bad file at once; collect exit codes and stderr."""
    d = tmp_path_factory.mktemp("bad")
    corrupt = d / "corrupt.ckpt"
    corrupt.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    evil, marker = d / "evil.ckpt", d / "pwned"
    torch.save({"seq2seq": Evil(marker), "state_dict": {}}, evil)
    probe = d / "probe"  # prove the payload is real: an unsafe load does run it
    torch.save(Evil(probe), d / "probe.ckpt")
    torch.load(d / "probe.ckpt", weights_only=False)
    assert probe.exists()
    files = {"missing": d / "nope.ckpt", "corrupt": corrupt, "evil": evil}
    results = failed_starts({name: ["--checkpoint", str(path)] for name, path in files.items()})
    return {"results": results, "marker": marker}


@pytest.mark.parametrize(
    "name, words",
    [
        ("missing", ("nope.ckpt", "does not exist")),
        ("corrupt", ("corrupt.ckpt", "checkpoint")),
        ("evil", ("evil.ckpt", "GLOBAL posix.system")),
    ],
)
def test_bad_checkpoint_stops_startup(bad_checkpoint_runs: dict, name: str, words: tuple) -> None:
    code, stderr = bad_checkpoint_runs["results"][name]
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seq2seq-serve: error:"), stderr
    assert all(w in lines[0] for w in words), stderr
    assert not bad_checkpoint_runs["marker"].exists()  # the pickle's code never ran


@pytest.mark.parametrize("kind", ["foreign", "damaged-zip"])
def test_unusable_checkpoint_is_refused(tiny_checkpoint: Path, tmp_path: Path, kind: str) -> None:
    """In-process, the check start-up runs: a torch file that is not ours, a damaged zip."""
    path = tmp_path / f"{kind}.ckpt"
    if kind == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 1}, path)
    else:
        data = bytearray(tiny_checkpoint.read_bytes())
        data[len(data) // 3 : len(data) // 3 + 2000] = bytes(2000)  # zero a stretch of tensor data
        path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as e:
        check_checkpoint(str(path))
    assert str(path) in str(e.value)
    if kind == "foreign":
        assert "not a seq2seq checkpoint" in str(e.value)


# -- shutdown: the process, its workers and the port are all released -----------------------
@pytest.mark.parametrize("sig, workers", [(signal.SIGTERM, 2), (signal.SIGINT, 1)], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_down_cleanly(tiny_checkpoint: Path, tmp_path: Path, sig: int, workers: int) -> None:
    s = start_server(tiny_checkpoint, tmp_path, "--workers", str(workers))
    family = descendants(s.proc.pid)
    # inference workers and API processes (one each per worker), the manager, the resource tracker
    assert len(family) >= 2 * workers + 1, family
    s.proc.send_signal(sig)
    assert s.proc.wait(timeout=60) == 0, s.stderr()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (any(alive(p) for p in family) or not port_free(s.port)):
        time.sleep(0.1)
    assert not [p for p in family if alive(p)], f"orphans left:\n{s.stderr()}"
    assert port_free(s.port)
    assert "Traceback" not in s.stderr()
