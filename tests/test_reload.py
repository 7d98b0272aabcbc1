"""Reloading checkpoints with no dropped request: SIGHUP and ``POST /admin/reload`` on a real server
while clients keep sending; a corrupt file leaves the old model serving; ``/info`` and ``/metrics``
show which checkpoint each model serves."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
from pathlib import Path

import httpx
import pytest
import torch
from test_serve import MAX_LENGTH, same, start_server
from test_serve_ops import scrape, wait_for, worker_pids

from seq2seq.translator import Translator

TEXTS = ["the cat sleeps .", "a dog runs in the park .", "the man reads a book ."]


class ClientLoop:
    """Clients that send ``/translate`` and ``/health`` until stopped, keeping every status and error."""

    def __init__(self, url: str, clients: int = 2, texts: list[str] = TEXTS) -> None:
        self.url, self.texts = url, texts
        self.statuses: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> ClientLoop:
        for t in self._threads:
            t.start()
        wait_for(lambda: len(self.statuses) >= 4, "the clients' first answers")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def _run(self, i: int) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(
                        f"{self.url}/translate", json={"texts": [self.texts[i % len(self.texts)]]}
                    )
                    self.statuses.append(("translate", r.status_code))
                    self.statuses.append(("health", client.get(f"{self.url}/health").status_code))
                except httpx.HTTPError as e:
                    self.errors.append(repr(e))

    def refused(self) -> list:
        return self.errors + [s for s in self.statuses if s[1] != 200]


def perturbed(checkpoint: Path, out: Path, seed: int = 0) -> Path:
    """The same model with noise on every weight: same languages and vocabulary, other translations."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(seed)
    for tensor in ckpt["state_dict"].values():
        if tensor.is_floating_point():
            tensor.add_(torch.randn(tensor.shape, generator=gen) * tensor.std().clamp(min=1e-3))
    torch.save(ckpt, out)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def put(source: Path, served: Path) -> None:
    """Replace the served file as an operator should: a complete file renamed over the old one."""
    tmp = served.with_name(served.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, served)


def info_models(url: str, **headers: str) -> dict:
    return {
        m["key"]: m for m in httpx.get(f"{url}/info", headers=headers, timeout=30).json()["model"]["models"]
    }


def check_serves(url: str, checkpoint: Path) -> None:
    r = httpx.post(f"{url}/translate", json={"texts": TEXTS, "beam_size": 3}, timeout=60)
    assert r.status_code == 200, r.text
    reference = Translator.from_checkpoint(checkpoint).translate(TEXTS, beam_size=3, max_length=MAX_LENGTH)
    for got, ref in zip(r.json()["translations"], reference, strict=True):
        same(got, ref)


@pytest.fixture(scope="module")
def other_model(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = perturbed(tiny_checkpoint, tmp_path_factory.mktemp("other") / "other.ckpt")
    old = Translator.from_checkpoint(tiny_checkpoint).translate(TEXTS, max_length=MAX_LENGTH)
    new = Translator.from_checkpoint(path).translate(TEXTS, max_length=MAX_LENGTH)
    assert [t.hypotheses[0].text for t in old] != [t.hypotheses[0].text for t in new]
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_while_clients_see_only_200s(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path, workers: int
) -> None:
    served = tmp_path / "model.ckpt"
    shutil.copyfile(tiny_checkpoint, served)
    server = start_server(served, tmp_path, "--workers", str(workers), "--threads", "1")
    try:
        before = info_models(server.url)["en-fr"]
        assert before["sha256"] == sha256(tiny_checkpoint) and before["checkpoint"] == "model.ckpt"
        old_pids = worker_pids(server)
        with ClientLoop(server.url, clients=2) as clients:
            put(other_model, served)
            server.proc.send_signal(signal.SIGHUP)
            after = wait_for(
                lambda: (m := info_models(server.url)["en-fr"])["sha256"] == sha256(other_model) and m,
                "the reload",
                180,
            )
            reload = httpx.get(f"{server.url}/info").json()["model"]["reload"]
            assert reload["ok"] is True and "reloaded" in reload["message"], reload
            seen = len(clients.statuses)
            wait_for(lambda: len(clients.statuses) >= seen + 4, "answers after the reload")
        assert clients.refused() == [], clients.refused()[:5]
        assert after["loaded_at"] > before["loaded_at"]
        new_pids = wait_for(lambda: len(p := worker_pids(server)) == workers and p, "the old workers to exit")
        assert not set(new_pids) & set(old_pids)
        check_serves(server.url, other_model)
        samples = scrape(server)
        info = {
            dict(labels)["sha256"] for (name, labels), v in samples.items() if name == "seq2seq_model_info"
        }
        assert info == {sha256(other_model)}
        assert samples[("seq2seq_reloads_total", (("outcome", "ok"),))] == 1.0
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=60) == 0, server.stderr()
    finally:
        server.stop()


def test_a_corrupt_checkpoint_keeps_the_old_model_and_says_why(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path
) -> None:
    served = tmp_path / "model.ckpt"
    shutil.copyfile(tiny_checkpoint, served)
    token = "admin-secret"
    server = start_server(served, tmp_path, "--threads", "1", "--admin-token", token, "--log-level", "info")
    auth = {"Authorization": f"Bearer {token}"}
    try:
        assert httpx.post(f"{server.url}/admin/reload", timeout=30).status_code == 401
        wrong = httpx.post(f"{server.url}/admin/reload", headers={"Authorization": "Bearer nope"}, timeout=30)
        assert wrong.status_code == 401 and "admin token" in wrong.json()["detail"]
        (pid,) = worker_pids(server)
        with ClientLoop(server.url, clients=1) as clients:
            served.write_bytes(b"PK\x03\x04 this is not a checkpoint")
            r = httpx.post(f"{server.url}/admin/reload", headers=auth, timeout=300)
        assert r.status_code == 422, r.text
        assert r.json()["ok"] is False and "previous checkpoints still serve" in r.json()["message"]
        assert clients.refused() == [], clients.refused()[:5]
        assert "reload refused" in server.stderr() and "model.ckpt" in server.stderr()
        assert worker_pids(server) == [pid]
        assert info_models(server.url)["en-fr"]["sha256"] == sha256(tiny_checkpoint)
        check_serves(server.url, tiny_checkpoint)
        # the admin route's answer is the reload it asked for: a good file now goes live
        put(other_model, served)
        r = httpx.post(f"{server.url}/admin/reload", headers=auth, timeout=300)
        assert r.status_code == 200 and r.json()["ok"] is True, r.text
        assert {m["key"]: m["sha256"] for m in r.json()["models"]} == {"en-fr": sha256(other_model)}
        check_serves(server.url, other_model)
    finally:
        server.stop()


def test_the_admin_route_is_off_without_a_token(tiny_checkpoint: Path, tmp_path: Path) -> None:
    server = start_server(tiny_checkpoint, tmp_path, "--threads", "1")
    try:
        r = httpx.post(f"{server.url}/admin/reload", headers={"Authorization": "Bearer x"}, timeout=30)
        assert r.status_code == 404
    finally:
        server.stop()
