"""One real server with LibreTranslate's proxy-side options: ``--url-prefix``, ``--disable-web-ui``,
CORS, ``--metrics-auth-token``, the probes, ``--translation-cache``, ``--req-flood-threshold``,
keys in the SQLite file with ``--api-keys-required``, and the drain on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_serve import ROOT, Server, start_server

PREFIX = "/lt"
ORIGIN = "https://app.example"
TOKEN = "metrics-t0ken"
DELAY = 3.0  # --shutdown-delay


def lt_body(text: str = "twelve", **extra) -> dict:
    return {"q": text, "source": "en", "target": "fr", **extra}


def post(url: str, body: dict, address: str, headers: dict | None = None) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=60) as client:
        return client.post(url, json=body, headers=headers or {})


def texts_translated(server: Server) -> float:
    metrics = httpx.get(f"{server.url}{PREFIX}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    return sum(
        float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("seq2seq_texts_translated_total")
    )


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("proxy")
    db = tmp / "keys.db"
    add = [sys.executable, "-m", "serve.store.keys_cli", "--api-keys-db-path", str(db), "add", "100"]
    key = subprocess.run(add, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    env = {"SEQ2SEQ_URL_PREFIX": PREFIX, "SEQ2SEQ_DISABLE_WEB_UI": "true", "SEQ2SEQ_CORS_ORIGINS": ORIGIN,
           "SEQ2SEQ_METRICS_AUTH_TOKEN": TOKEN, "SEQ2SEQ_API_KEYS_DB_PATH": str(db),
           "SEQ2SEQ_UNDER_ATTACK": "true"}  # fmt: skip
    s = start_server(tiny_checkpoint, tmp, "--threads", "1", "--req-limit", "2", "--req-flood-threshold", "2",
                     "--translation-cache", "all", "--shutdown-delay", str(DELAY), env=env)  # fmt: skip
    s.key = key
    yield s
    s.stop()


def test_prefix_page_probes_and_metrics_token(server: Server) -> None:
    url = server.url
    assert httpx.get(f"{url}/languages").status_code == 404  # every route is under the prefix
    assert httpx.get(f"{url}{PREFIX}/languages").json()[0]["code"] == "en"
    assert httpx.get(f"{url}{PREFIX}/").status_code == 404  # --disable-web-ui
    assert httpx.get(f"{url}{PREFIX}/docs").status_code == 200  # the API's docs stay
    for path in ("/livez", "/readyz", "/health", f"{PREFIX}/livez", f"{PREFIX}/readyz"):
        assert httpx.get(url + path).status_code == 200, path
    assert httpx.get(f"{url}{PREFIX}/metrics").status_code == 401
    wrong = httpx.get(f"{url}{PREFIX}/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert (
        "seq2seq_http_requests_total"
        in httpx.get(f"{url}{PREFIX}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    )


def test_file_download_links_carry_the_prefix(server: Server) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.45")
    with httpx.Client(transport=transport, timeout=60) as client:
        r = client.post(
            f"{server.url}{PREFIX}/translate_file",
            data={"source": "en", "target": "fr", "api_key": server.key},
            files={"file": ("notes.txt", b"twelve\n", "text/plain")},
        )
        assert r.status_code == 200, r.text
        link = r.json()["translatedFileUrl"]
        assert link.startswith(f"{server.url}{PREFIX}/download_file/") and link.endswith("notes_fr.txt")
        got = client.get(link)
    assert (
        got.status_code == 200 and got.headers["content-disposition"] == "attachment; filename=notes_fr.txt"
    )
    expected = post(f"{server.url}{PREFIX}/translate", lt_body(api_key=server.key), "127.0.0.45")
    assert got.text == expected.json()["translatedText"] + "\n"


def test_cors_preflight_and_headers(server: Server) -> None:
    ask = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "content-type,x-api-key"}  # fmt: skip
    r = httpx.options(f"{server.url}{PREFIX}/translate", headers=ask)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
    other = httpx.options(
        f"{server.url}{PREFIX}/translate", headers={**ask, "Origin": "https://evil.example"}
    )
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    got = httpx.get(f"{server.url}{PREFIX}/languages", headers={"Origin": ORIGIN})
    assert got.headers["access-control-allow-origin"] == ORIGIN


def test_required_keys_from_the_sqlite_file(server: Server) -> None:
    url = f"{server.url}{PREFIX}/translate"
    r = post(url, lt_body(), "127.0.0.41")
    assert r.status_code == 400 and r.json() == {
        "error": "Please contact the server operator to get an API key"
    }
    native = post(url, {"text": "twelve"}, "127.0.0.41")
    assert native.status_code == 401 and "API key is required" in native.json()["detail"]
    assert post(url, lt_body(api_key="wrong"), "127.0.0.41").status_code == 403
    assert post(url, lt_body("one", api_key=server.key), "127.0.0.41").status_code == 200
    info = httpx.get(f"{server.url}{PREFIX}/info").json()["store"]
    assert info["shared_storage"] is None and info["api_keys"]["healthy"] is True


def test_translation_cache_answers_repeats(server: Server) -> None:
    url = f"{server.url}{PREFIX}/translate"
    body = lt_body("two twelve", api_key=server.key)
    before = texts_translated(server)
    first = post(url, body, "127.0.0.42")
    assert first.status_code == 200
    middle = texts_translated(server)
    assert middle == before + 1
    again = post(url, body, "127.0.0.42")
    assert again.json() == first.json() and texts_translated(server) == middle  # no worker involved


def test_flood_threshold_bans_an_address(server: Server) -> None:
    url = f"{server.url}{PREFIX}/translate"
    anon_key = {"X-API-Key": server.key}
    # the key has 100 per minute of its own; the flood guard counts the address's 429s: use the
    # limit of another key with a small req_limit
    add = [sys.executable, "-m", "serve.store.keys_cli", "--api-keys-db-path",
           httpx.get(f"{server.url}{PREFIX}/info").json()["store"]["api_keys"]["where"], "add", "1"]  # fmt: skip
    small = subprocess.run(
        add, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    codes = [post(url, lt_body(api_key=small), "127.0.0.43").status_code for _ in range(4)]
    assert codes == [200, 429, 429, 403]  # two 429s: banned
    banned = post(url, lt_body(), "127.0.0.43", anon_key)
    assert banned.status_code == 403 and banned.json() == {"error": "Too many request limits violations"}
    assert post(url, lt_body(), "127.0.0.44", anon_key).status_code == 200  # only that address


def test_sigterm_turns_readiness_503_then_exits(server: Server) -> None:
    sent = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    while httpx.get(f"{server.url}/readyz").status_code != 503:
        assert time.monotonic() - sent < DELAY / 2
        time.sleep(0.05)
    assert httpx.get(f"{server.url}/health").status_code == 503
    assert httpx.get(f"{server.url}/livez").status_code == 200  # alive: no restart
    done: list[int] = []
    request = threading.Thread(
        target=lambda: done.append(
            post(f"{server.url}{PREFIX}/translate", lt_body(api_key=server.key), "127.0.0.45").status_code
        )
    )
    request.start()  # still served while draining
    request.join(timeout=60)
    assert done == [200]
    assert server.proc.wait(timeout=60) == 0
    assert time.monotonic() - sent >= DELAY
