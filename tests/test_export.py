"""``scripts/export.py``: a slim checkpoint (weights, hyperparameters, tokenizers) that loads with
``weights_only=True`` and translates exactly as the full one, in-process and in a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch
from conftest import ROOT
from test_serve import MAX_LENGTH, start_server

from seq2seq import Translator
from seq2seq.module import CHECKPOINT_KEY
from serve.worker.checkpoint import check_checkpoint

SENTENCES = ["twenty-one", "three hundred and five", "Monday, December 5, 2050", "seven", "ninety-nine"]


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "slim.ckpt"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), str(tiny_checkpoint), "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file() and str(out) in proc.stdout
    return out


def test_export_keeps_weights_and_tokenizers_only(tiny_checkpoint: Path, exported: Path) -> None:
    full = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    slim = torch.load(exported, map_location="cpu", weights_only=True)
    assert "optimizer_states" in full and "optimizer_states" not in slim
    assert not {"lr_schedulers", "loops", "callbacks"} & set(slim)
    assert slim[CHECKPOINT_KEY] == full[CHECKPOINT_KEY]  # the SentencePiece protos, byte for byte
    assert slim["hyper_parameters"] == full["hyper_parameters"]
    assert slim["state_dict"].keys() == full["state_dict"].keys()
    assert all(torch.equal(slim["state_dict"][k], v) for k, v in full["state_dict"].items())
    assert exported.stat().st_size < 0.6 * tiny_checkpoint.stat().st_size  # AdamW keeps 2 moments


def test_export_translates_as_the_full_checkpoint(tiny_checkpoint: Path, exported: Path) -> None:
    full, slim = Translator.from_checkpoint(tiny_checkpoint), Translator.from_checkpoint(exported)
    for beam in (1, 4):
        a, b = full.translate(SENTENCES, beam_size=beam), slim.translate(SENTENCES, beam_size=beam)
        assert [t.text for t in a] == [t.text for t in b]
        assert [t.score for t in a] == [t.score for t in b]  # the same weights: the same floats
    meta = check_checkpoint(str(exported))  # the server's start-up check
    assert (meta["src_lang"], meta["tgt_lang"]) == ("en", "fr")


def test_a_server_on_the_export_answers_as_the_full_checkpoint(
    tiny_checkpoint: Path, exported: Path, tmp_path: Path
) -> None:
    reference = Translator.from_checkpoint(tiny_checkpoint).translate(
        SENTENCES, beam_size=5, max_length=MAX_LENGTH
    )
    server = start_server(exported, tmp_path, "--threads", "1")
    try:
        r = httpx.post(f"{server.url}/translate", json={"texts": SENTENCES, "beam_size": 5}, timeout=120)
        assert r.status_code == 200, r.text
        served = r.json()["translations"]
        assert [s["text"] for s in served] == [t.text for t in reference]
        assert [s["score"] for s in served] == pytest.approx([t.score for t in reference], abs=1e-4)
    finally:
        assert server.stop() == 0, server.stderr()


def test_export_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), str(bad), "-o", str(tmp_path / "out.ckpt")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad} is not a PyTorch checkpoint (not a zip archive)"
    assert not (tmp_path / "out.ckpt").exists()
