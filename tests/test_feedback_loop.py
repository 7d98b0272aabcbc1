"""The loop end to end on the built-in task: users correct translations through ``/suggest``, the
corrections are exported, a fine-tune starts from the served checkpoint, and SIGHUP puts it live
while clients keep sending: afterwards the server returns most corrections, held-out accuracy holds,
and the clients saw only 200s."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, tiny_train_args
from test_reload import ClientLoop, info_models, put, sha256
from test_serve import start_server
from test_serve_ops import wait_for

from seq2seq.corpus import build_builtin_corpus

SIZES = "[8000, 60, 500]"  # train, validation, test: 3 epochs of this make a model right ~85% of the time
CORRECTIONS = 20
BEAM = 5


def run(*cmd: str, cwd: Path = ROOT) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def translate(url: str, texts: list[str]) -> list[str]:
    out = []
    for i in range(0, len(texts), 50):
        body = {"texts": texts[i : i + 50], "source": "en", "target": "fr", "beam_size": BEAM}
        r = httpx.post(f"{url}/translate", json=body, timeout=300)
        assert r.status_code == 200, r.text
        out += [t["text"] for t in r.json()["translations"]]
    return out


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model of the built-in en->fr task that still makes mistakes for users to correct."""
    from seq2seq.cli import train_main

    workdir = tmp_path_factory.mktemp("base")
    train_main(
        tiny_train_args(
            workdir,
            f"--data.builtin_sizes={SIZES}",
            "--data.spm_vocab_size=300",
            "--model.emb_dim=64",
            "--model.enc_hidden=64",
            "--model.dec_hidden=128",
            "--trainer.max_epochs=3",
        )  # fmt: skip
    )
    (last,) = workdir.rglob("last.ckpt")
    return last


def test_suggestions_become_a_fine_tune_that_goes_live_without_a_dropped_request(
    base_model: Path, tmp_path: Path
) -> None:
    test = build_builtin_corpus("en", "fr", 10, 60, 500)["test"]
    sources, references = list(test["en"]), list(test["fr"])
    served = tmp_path / "models" / "en-fr.ckpt"
    served.parent.mkdir()
    shutil.copyfile(base_model, served)
    db = tmp_path / "db" / "suggestions.db"
    server = start_server(
        served, tmp_path, "--threads", "1", "--suggestions", "--suggestions-db-path", str(db)
    )
    try:
        before = translate(server.url, sources)
        wrong = [i for i, (out, ref) in enumerate(zip(before, references, strict=True)) if out != ref]
        assert len(wrong) >= CORRECTIONS, f"the base model is right too often: {len(wrong)} mistakes"
        corrected = wrong[:CORRECTIONS]
        held_out = [i for i in range(len(sources)) if i not in set(corrected)]
        for i in corrected:  # as LibreTranslate's web page sends a correction
            r = httpx.post(
                f"{server.url}/suggest",
                data={"q": sources[i], "s": references[i], "source": "en", "target": "fr"},
                timeout=30,
            )
            assert r.status_code == 200 and r.json() == {"success": True}, r.text

        corpus = tmp_path / "corrections"
        run(sys.executable, "-m", "serve.store.suggestions_cli", "export", str(corpus), "--pair", "en-fr",
            "--format", "tsv", "--validation-fraction", "0", "--suggestions-db-path", str(db))  # fmt: skip
        assert len((corpus / "train.tsv").read_text().splitlines()) == CORRECTIONS + 1  # and the header

        runs = tmp_path / "finetune"
        run(
            sys.executable, "scripts/train.py", "fit", "--config", "configs/finetune.yaml",
            f"--model.init_from={served}", "--data.src_lang=en", "--data.tgt_lang=fr",
            f"--data.source={corpus}/{{split}}.tsv", "--data.mix_with=builtin",
            f"--data.builtin_sizes={SIZES}", "--data.mix_ratio=5", "--trainer.max_steps=120",
            "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={runs}", f"--trainer.logger.init_args.save_dir={runs}",
            f"--data.cache_dir={tmp_path}/cache",
        )  # fmt: skip
        (tuned,) = runs.rglob("last.ckpt")

        with ClientLoop(server.url, clients=2, texts=sources[:8]) as clients:
            put(tuned, served)
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: info_models(server.url)["en-fr"]["sha256"] == sha256(tuned), "the reload", 300)
        assert clients.refused() == [], clients.refused()[:5]
        assert len(clients.statuses) >= 8

        after = translate(server.url, sources)
        fixed = sum(after[i] == references[i] for i in corrected)
        assert fixed > CORRECTIONS // 2, f"{fixed} of {CORRECTIONS} corrections learnt"

        def accuracy(outputs: list[str]) -> float:
            return sum(outputs[i] == references[i] for i in held_out) / len(held_out)

        assert accuracy(after) >= accuracy(before) - 0.02, (accuracy(before), accuracy(after))
    finally:
        server.stop()
