"""``--req-limit`` on one server without Redis (the counters in shared memory, ``serve.store.shm``;
their own tests are in test_store.py): two HTTP processes, both APIs, the API key, a second client
address, an ``X-Forwarded-For`` not believed, and the libretranslatepy client."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.error import HTTPError

import httpx
import pytest
from libretranslatepy import LibreTranslateAPI
from prometheus_client.parser import text_string_to_metric_families
from test_serve import Server, descendants, start_server

from serve.options import parse_args

KEY = "k3y"
LIMIT = 3
SLOWDOWN = {"error": "Slowdown: 3 per 1 minute"}  # LibreTranslate's 429 body (flask-limiter's wording)


def test_option_and_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert parse_args(["--checkpoint", "m.ckpt"]).req_limit == -1  # LibreTranslate's default: none
    monkeypatch.setenv("SEQ2SEQ_REQ_LIMIT", "7")
    assert parse_args(["--checkpoint", "m.ckpt"]).req_limit == 7
    assert parse_args(["--checkpoint", "m.ckpt", "--req-limit", "0"]).req_limit == 0
    for bad, message in (
        ("-2", "--req-limit must be at least 1, or -1 or 0 for none"),
        ("x", "invalid int value"),
    ):
        with pytest.raises(SystemExit) as stop:
            parse_args(["--checkpoint", "m.ckpt", "--req-limit", bad])
        assert stop.value.code == 2 and message in capsys.readouterr().err


# -- a real server: 2 HTTP processes, an API key ------------------------------------------------
@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    s = start_server(tiny_checkpoint, tmp_path_factory.mktemp("ratelimit"), "--workers", "2", "--threads",
                     "1", "--req-limit", str(LIMIT), "--api-key", KEY)  # fmt: skip
    yield s
    s.stop()


def handler_pid(server: Server, response: httpx.Response) -> int:
    """The server process holding the connection that answered (its socket inode, from /proc)."""
    sock: socket.socket = response.extensions["network_stream"].get_extra_info("socket")
    address, port = sock.getsockname()
    client = f"{int.from_bytes(socket.inet_aton(address), 'little'):08X}:{port:04X}"
    inodes = {
        line.split()[9]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[2] == client and line.split()[1].endswith(f":{server.port:04X}")
    }
    for pid in descendants(server.proc.pid):
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            return pid
    pytest.fail(f"no server process holds the connection from {client}")


def post(server: Server, path: str, body: dict, address: str = "127.0.0.1") -> tuple[httpx.Response, int]:
    """One request on a fresh connection from ``address``, and the server process that answered."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, timeout=60, headers={"X-API-Key": KEY}) as client:
        r = client.post(server.url + path, json=body)
        return r, handler_pid(server, r)


NATIVE = ("/translate", {"text": "twelve"})
LIBRE = [
    ("/translate", {"q": "twelve", "source": "en", "target": "fr"}),  # at the root, by its body
    ("/libretranslate/translate", {"q": "twelve", "source": "en", "target": "fr"}),
    ("/detect", {"q": "twelve"}),
    ("/libretranslate/detect", {"q": "twelve", "api_key": KEY}),
]


def test_limit_counts_over_both_http_processes_and_both_apis(server: Server) -> None:
    calls = [NATIVE, LIBRE[0], LIBRE[3]] + [NATIVE, *LIBRE] * 4
    answers = [post(server, path, body) for path, body in calls]
    assert [r.status_code for r, _ in answers] == [200] * LIMIT + [429] * (len(calls) - LIMIT)
    assert len({pid for _, pid in answers}) == 2  # both HTTP processes answered, and counted together
    for (path, body), (r, _) in zip(calls[LIMIT:], answers[LIMIT:], strict=True):
        assert 1 <= int(r.headers["retry-after"]) <= 60
        if "q" in body:
            assert r.json() == SLOWDOWN, path
        else:
            assert r.json() == {
                "detail": "too many requests: the limit is 3 per 1 minute per client address; "
                f"retry in {r.headers['retry-after']} s"
            }
    for path in ("/health", "/languages", "/libretranslate/languages", "/info", "/docs", "/"):
        assert httpx.get(server.url + path, headers={"X-API-Key": KEY}).status_code == 200, path
    # another address has its own 3 requests
    other = [post(server, *NATIVE, address="127.0.0.2")[0].status_code for _ in range(LIMIT + 1)]
    assert other == [200] * LIMIT + [429]
    # without --trust-forwarded-for no X-Forwarded-For is believed, not even from this host
    proxied = {"X-API-Key": KEY, "X-Forwarded-For": "203.0.113.7"}
    r = httpx.post(f"{server.url}/translate", json=NATIVE[1], headers=proxied, timeout=60)
    assert r.status_code == 429, r.text
    # the real client sees LibreTranslate's error
    client = LibreTranslateAPI(server.url, api_key=KEY)
    with pytest.raises(HTTPError) as error:
        client.translate("twelve", "en", "fr")
    assert error.value.code == 429 and json.loads(error.value.read()) == SLOWDOWN
    assert client.languages()[0]["code"] == "en"
    # the metrics count the 429s under their routes
    metrics = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": KEY}).text
    limited = {
        s.labels["path"]: s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "seq2seq_http_requests_total" and s.labels["status"] == "429"
    }
    # 4 native + 1 from 127.0.0.2 + 1 with X-Forwarded-For; 8 LibreTranslate (root and prefix) + 1
    # from libretranslatepy
    assert limited == {
        "/translate": 6,
        "/libretranslate/translate": 9,
        "/detect": 4,
        "/libretranslate/detect": 4,
    }


def test_openapi_documents_the_429(server: Server) -> None:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    limited = {path for path, ops in paths.items() if any("429" in op["responses"] for op in ops.values())}
    # /translate_file too (its copy under the prefix is not listed), not /suggest: it is off here
    assert limited == {
        "/translate",
        "/detect",
        "/libretranslate/translate",
        "/libretranslate/detect",
        "/translate_file",
    }
    for path in limited:
        assert "Retry-After" in paths[path]["post"]["responses"]["429"]["headers"]
    root = paths["/translate"]["post"]["responses"]["429"]["content"]["application/json"]["schema"]
    assert len(root["anyOf"]) == 2  # ours ({"detail": ...}) or LibreTranslate's ({"error": ...})
