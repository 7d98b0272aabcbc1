"""A callback for the DDP tests: each rank writes down what it saw, so the test process can compare ranks.

It is loaded by the training processes themselves (``--trainer.callbacks+=...`` with ``tests`` on
PYTHONPATH) and writes ``rank{global_rank}.pt``: the source rows of every training batch, the
validation indices, this rank's own (not yet merged) BLEU statistics, the merged metrics, the
tokenizers' fingerprints and the parameters before and after training.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning.pytorch as pl
import torch

from seq2seq.tokenizer import PAD_ID

BLEU_STATES = ("numerator", "denominator", "preds_len", "target_len")


def params(module: pl.LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class RankProbe(pl.Callback):
    """Records one rank's data, metrics and parameters into ``out/rank{R}.pt`` at the end."""

    def __init__(self, out: str):
        self.out = Path(out)
        self.record: dict = {"train": [], "val_index": [], "bleu_states": [], "metrics": []}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record["initial"] = params(pl_module)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record["resumed"] = (trainer.ckpt_path, trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        # source ids without EOS and padding: one tuple per sentence
        self.record["train"].append([tuple(row[row != PAD_ID].tolist()[:-1]) for row in batch.src])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx=0) -> None:
        self.record["val_index"] += batch.index.tolist()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # callbacks run before the module's hook: the metric still holds this rank's own counts
        bleu = pl_module.bleu["val"]
        self.record["bleu_states"].append({s: getattr(bleu, s).clone() for s in BLEU_STATES})

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        self.record["metrics"].append({k: float(metrics[k]) for k in ("val/bleu", "val/chrf")})

    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record |= {
            "world_size": trainer.world_size,
            "final": params(pl_module),
            "tokenizers": [t.fingerprint for t in pl_module.tokenizers],
        }
        self.out.mkdir(parents=True, exist_ok=True)
        torch.save(self.record, self.out / f"rank{trainer.global_rank}.pt")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record["val_index"] = []  # keep only the last validation's indices

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "validate":
            self._save(trainer, pl_module)


class Preempt(pl.Callback):
    """Sends this process SIGUSR1 after training step ``step``, as SLURM signals every task of a
    job before its time limit or a preemption (``#SBATCH --signal=SIGUSR1@90``)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)
