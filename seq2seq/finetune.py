"""Fine-tuning from a trained checkpoint (``--model.init_from CKPT``): its weights, architecture and
SentencePiece models, with a fresh optimizer and schedule; and mixing the new pairs with a sample of
the original training data (``--data.mix_with``), so that the model does not forget what it knew.

``--ckpt_path`` is not that: it resumes a run, optimizer state, schedule and step count included.
A served checkpoint, full or exported (``scripts/export.py``), works as a base.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch

from seq2seq.tokenizer import Tokenizer
from seq2seq.translator import CHECKPOINT_KEY, load_checkpoint

log = logging.getLogger(__name__)

# The hyperparameters that decide the weights' shapes and wiring: a fine-tune takes them from its
# base, whatever the config says (dropout rates, the schedule and decoding stay configurable).
ARCHITECTURE = (
    "src_vocab_size", "tgt_vocab_size", "emb_dim", "enc_hidden", "enc_layers", "dec_hidden",
    "dec_layers", "attention", "input_feeding", "tie_embeddings", "share_embeddings",
)  # fmt: skip


@dataclass
class Base:
    """What a fine-tune takes from its base checkpoint."""

    architecture: dict
    weights: dict[str, torch.Tensor]  # Seq2Seq's state_dict (no "model." prefix)
    src_spm: bytes
    tgt_spm: bytes


def load_base(path: str | Path) -> Base:
    """Read a seq2seq checkpoint (``weights_only=True``) for fine-tuning."""
    ckpt = load_checkpoint(path)  # CheckpointError for a missing, unsafe or foreign file
    hparams = ckpt.get("hyper_parameters", {})
    architecture = {k: hparams[k] for k in ARCHITECTURE if k in hparams}
    weights = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    entry = ckpt[CHECKPOINT_KEY]
    return Base(architecture, weights, bytes(entry["src_spm"]), bytes(entry["tgt_spm"]))


def base_tokenizers(path: str | Path) -> tuple[Tokenizer, Tokenizer]:
    """The base checkpoint's own source and target tokenizers, byte for byte."""
    base = load_base(path)
    return Tokenizer(base.src_spm), Tokenizer(base.tgt_spm)


def mix_training_data(
    corpus: datasets.DatasetDict, original: datasets.DatasetDict, ratio: float, seed: int
) -> datasets.DatasetDict:
    """``corpus`` with ``ratio`` times its number of training pairs drawn from ``original``'s training
    split (without replacement, at most all of it) appended to its training split."""
    if ratio <= 0:
        raise ValueError(f"data.mix_ratio must be positive, got {ratio}")
    new, old = corpus["train"], original["train"]
    n = min(len(old), round(ratio * len(new)))
    picked = np.sort(np.random.default_rng(seed).choice(len(old), size=n, replace=False))
    sample = old.select(picked.tolist()).select_columns(["src", "tgt"]).cast(new.features)
    log.info("training on %d new pairs and %d of %d original ones", len(new), n, len(old))
    return datasets.DatasetDict({**corpus, "train": datasets.concatenate_datasets([new, sample])})
