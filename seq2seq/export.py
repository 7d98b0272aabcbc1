"""Slim serving checkpoints: the weights, hyperparameters and tokenizers of a training checkpoint,
without the optimizer state, schedule, loops and callbacks (about a third of ``last.ckpt``'s size).

The result loads wherever the full checkpoint does with ``weights_only=True``: ``Translator``, the
server, ``--model.init_from`` and ``scripts/train.py test --ckpt_path``. It cannot resume training.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from seq2seq.translator import CHECKPOINT_KEY, load_checkpoint

# What translating, serving, fine-tuning and Lightning's test/validate read from a checkpoint.
KEEP = ("state_dict", "hyper_parameters", "hparams_name", CHECKPOINT_KEY, "epoch", "global_step",
        "pytorch-lightning_version")  # fmt: skip


def export_checkpoint(src: str | Path, out: str | Path) -> Path:
    """Write the slim copy of ``src`` to ``out`` (atomically: a temporary file renamed into place)."""
    ckpt = load_checkpoint(src)  # CheckpointError for a missing, unsafe or foreign file
    slim = {k: ckpt[k] for k in KEEP if k in ckpt}
    out = Path(out)
    if out.resolve() == Path(src).resolve():
        raise ValueError(f"the export would overwrite its source {src}: choose another output")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        torch.save(slim, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
