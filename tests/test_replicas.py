"""Two real replicas sharing one real redis-server (``--shared-storage``), and a real nginx in front of
them: one shared ``--req-limit``, keys added and removed with ``seq2seq-keys`` on both at once, a
key's own limits, the client address behind the proxy, Redis killed and back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from redis_fixture import RedisServer, free_port, require_redis
from test_serve import ROOT, Server, start_server

LIMIT = 4
TRUSTED = "127.0.0.1/32"  # nginx connects from here; every other peer is untrusted


def lt_body(text: str = "twelve", **extra) -> dict:
    return {"q": text, "source": "en", "target": "fr", **extra}


def post(url: str, body: dict, address: str, headers: dict | None = None) -> httpx.Response:
    """One request from ``address`` (a local address of its own: a client of its own)."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=60) as client:
        return client.post(url, json=body, headers=headers or {})


def keys_cli(url: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "serve.store.keys_cli", "--shared-storage", url, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def start_nginx(tmp: Path, ports: list[int]) -> tuple[subprocess.Popen, str]:
    """deploy/nginx.conf with the two replicas as its upstream, on a free port."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text().replace("/tmp/", f"{tmp}/")
    port = free_port()
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    for name, p in zip(("seq2seq-1", "seq2seq-2"), ports, strict=True):
        conf = conf.replace(f"server {name}:8000", f"server 127.0.0.1:{p}")
    (tmp / "nginx.conf").write_text(conf)
    args = ["nginx", "-p", str(tmp), "-e", "stderr", "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/nginx-health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "nginx did not start"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    require_redis()
    redis = RedisServer(tmp_path_factory.mktemp("redis")).start()
    logs = tmp_path_factory.mktemp("replicas")
    args = ("--threads", "1", "--shared-storage", redis.url, "--api-keys", "--req-limit", str(LIMIT),
            "--trust-forwarded-for", "--forwarded-allow-ips", TRUSTED)  # fmt: skip
    replicas: list[Server] = []
    proxy = None
    try:
        replicas = [start_server(tiny_checkpoint, logs, *args) for _ in range(2)]
        if __import__("shutil").which("nginx"):
            proxy = start_nginx(tmp_path_factory.mktemp("nginx"), [r.port for r in replicas])
        yield redis, replicas, proxy
    finally:
        if proxy is not None:
            proxy[0].terminate()
            proxy[0].wait(timeout=10)
        for r in replicas:
            r.stop()
        redis.kill()


def test_one_limit_over_both_replicas(cluster) -> None:
    _, (a, b), _ = cluster
    codes = [post(f"{(a, b)[i % 2].url}/translate", lt_body(), "127.0.0.11") for i in range(LIMIT + 1)]
    assert [r.status_code for r in codes] == [200] * LIMIT + [429]
    assert codes[-1].json() == {"error": f"Slowdown: {LIMIT} per 1 minute"}
    assert 1 <= int(codes[-1].headers["retry-after"]) <= 60
    # a batch of 3 texts costs 3: with one more text the next request is refused, in the native shape
    batch = post(f"{a.url}/translate", {"texts": ["twelve", "one", "two"]}, "127.0.0.12")
    assert batch.status_code == 200, batch.text
    assert post(f"{b.url}/translate", {"text": "twelve"}, "127.0.0.12").status_code == 200
    refused = post(f"{b.url}/translate", {"text": "twelve"}, "127.0.0.12")
    assert refused.status_code == 429 and refused.json()["detail"].startswith(
        f"too many requests: the limit is {LIMIT} per 1 minute per client address"
    )


def test_keys_added_and_removed_with_seq2seq_keys(cluster) -> None:
    redis, (a, b), _ = cluster
    key = keys_cli(redis.url, "add", "3", "--char-limit", "8")
    # its own char_limit (8, not the server's 1000), on both replicas
    long = post(f"{a.url}/translate", lt_body("twelve twelve", api_key=key), "127.0.0.13")
    assert long.status_code == 400 and "the limit is 8" in long.json()["error"], long.text
    # counted per key, whatever the address: 3 per minute (its req_limit, not --req-limit 4)
    assert post(f"{b.url}/translate", lt_body(), "127.0.0.14", {"X-API-Key": key}).status_code == 200
    native = post(f"{a.url}/translate", {"text": "twelve"}, "127.0.0.15", {"X-API-Key": key})
    assert native.status_code == 200, native.text
    over = post(f"{b.url}/translate", lt_body(api_key=key), "127.0.0.16")
    assert over.status_code == 429 and over.json() == {"error": "Slowdown: 3 per 1 minute"}
    other = keys_cli(redis.url, "add", "100")
    for r in (a, b):
        assert post(f"{r.url}/translate", lt_body(api_key="not-a-key"), "127.0.0.17").json() == {
            "error": "Invalid API key"
        }
        assert post(f"{r.url}/translate", lt_body(api_key=other), "127.0.0.17").status_code == 200
    keys_cli(redis.url, "remove", other)
    removed_at = time.monotonic()
    for r in (a, b):
        while (code := post(f"{r.url}/translate", lt_body(api_key=other), "127.0.0.17").status_code) != 403:
            assert code == 200 and time.monotonic() - removed_at < 5, code
            time.sleep(0.1)
    assert time.monotonic() - removed_at < 5


def test_behind_nginx_the_client_address_counts(cluster) -> None:
    _, (a, b), proxy = cluster
    if proxy is None:
        pytest.skip("nginx is missing (Debian package nginx)")
    _, url = proxy
    # through nginx: the real client address, whatever X-Forwarded-For the client made up
    spoofed = [post(f"{url}/translate", lt_body(), "127.0.0.21", {"X-Forwarded-For": f"203.0.113.{i}"})
               for i in range(LIMIT + 1)]  # fmt: skip
    assert [r.status_code for r in spoofed] == [200] * LIMIT + [429]
    assert post(f"{url}/translate", lt_body(), "127.0.0.22").status_code == 200  # another client
    # straight to a replica from an untrusted peer: its X-Forwarded-For is ignored (127.0.0.21 is
    # over its limit; believed, the header would make this a 429)
    direct = [post(f"{(a, b)[i % 2].url}/translate", lt_body(), "127.0.0.23", {"X-Forwarded-For": "127.0.0.21"})
              for i in range(LIMIT + 1)]  # fmt: skip
    assert [r.status_code for r in direct] == [200] * LIMIT + [429]


def test_redis_killed_then_back(cluster) -> None:
    redis, (a, b), proxy = cluster
    key = keys_cli(redis.url, "add", "100")
    assert post(f"{a.url}/translate", lt_body(api_key=key), "127.0.0.31").status_code == 200
    redis.kill()
    for r in (a, b):  # key checks fail closed, in both shapes
        lt = post(f"{r.url}/translate", lt_body(api_key=key), "127.0.0.31")
        assert lt.status_code == 503 and "cannot be checked" in lt.json()["error"], lt.text
        native = post(f"{r.url}/translate", {"text": "twelve"}, "127.0.0.31", {"X-API-Key": key})
        assert native.status_code == 503 and "cannot be checked" in native.json()["detail"], native.text
    # without a key, translations go on (limits fail open: more than LIMIT pass), and stay ready
    keyless = [post(f"{(a, b)[i % 2].url}/translate", lt_body(), "127.0.0.32") for i in range(LIMIT + 2)]
    assert [r.status_code for r in keyless] == [200] * (LIMIT + 2)
    for r in (a, b):
        assert httpx.get(f"{r.url}/health").status_code == 200
        store = httpx.get(f"{r.url}/info").json()["store"]
        assert store["api_keys"]["healthy"] is False and "unreachable" in store["api_keys"]["reason"]
        assert store["rate_limits"]["healthy"] is False
        metrics = httpx.get(f"{r.url}/metrics").text
        (line,) = [x for x in metrics.splitlines() if x.startswith("seq2seq_rate_limit_fail_open_total")]
        assert float(line.split()[-1]) >= 1
    redis.start()  # same port, same append-only file: the key is still there
    deadline = time.monotonic() + 10
    for r in (a, b):
        while (code := post(f"{r.url}/translate", lt_body(api_key=key), "127.0.0.31").status_code) != 200:
            assert code == 503 and time.monotonic() < deadline, code
            time.sleep(0.2)
        assert httpx.get(f"{r.url}/info").json()["store"]["api_keys"]["healthy"] is True
    counted = [post(f"{(a, b)[i % 2].url}/translate", lt_body(), "127.0.0.33") for i in range(LIMIT + 1)]
    assert [r.status_code for r in counted] == [200] * LIMIT + [429]  # limits count again
