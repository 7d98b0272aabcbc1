"""Shared fixtures: a tiny real model trained on the built-in corpus, once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models gain nothing from threads

import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
# Multi30k (scripts/download_multi30k.py); .ci/run points this at a copy outside the repository
MULTI30K = Path(os.environ.get("SEQ2SEQ_MULTI30K_DIR", ROOT / "data" / "multi30k"))


def tiny_train_args(workdir: Path, *extra: str) -> list[str]:
    """CLI arguments for a seconds-long fit on a small built-in en->fr corpus."""
    return [
        "fit",
        "--seed_everything=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.max_epochs=3",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={workdir}",
        f"--trainer.logger.init_args.save_dir={workdir}/runs",
        "--data.source=builtin",
        "--data.src_lang=en",
        "--data.tgt_lang=fr",
        "--data.builtin_sizes=[1500, 60, 60]",
        "--data.spm_vocab_size=200",
        "--data.max_tokens=3000",
        f"--data.cache_dir={workdir}/cache",
        "--model.emb_dim=32",
        "--model.enc_hidden=32",
        "--model.dec_hidden=64",
        "--model.dropout=0.0",
        "--model.lr=0.005",
        "--checkpoint.save_top_k=1",
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a ``last.ckpt`` of a tiny en->fr model (trained through the real CLI)."""
    from seq2seq.cli import train_main

    workdir = tmp_path_factory.mktemp("tiny")
    train_main(tiny_train_args(workdir))
    ckpts = sorted(workdir.rglob("last.ckpt"))
    assert ckpts, "training wrote no last.ckpt"
    return ckpts[0]


@pytest.fixture(scope="session")
def tiny_checkpoints(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny models for a multi-model server: en->fr (``tiny_checkpoint``), fr->en and en->de
    (so that fr->de pivots through English)."""
    from seq2seq.cli import train_main

    found = {"en-fr": tiny_checkpoint}
    for src, tgt in (("fr", "en"), ("en", "de")):
        workdir = tmp_path_factory.mktemp(f"tiny-{src}-{tgt}")
        train_main(tiny_train_args(workdir, f"--data.src_lang={src}", f"--data.tgt_lang={tgt}"))
        (found[f"{src}-{tgt}"],) = sorted(workdir.rglob("last.ckpt"))
    return found
