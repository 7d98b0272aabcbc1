"""Callbacks the resume tests load into real training subprocesses (``--trainer.callbacks+=``)."""

from __future__ import annotations

import json
import os
from typing import Any

import lightning.pytorch as pl


class SignalAtStep(pl.Callback):
    """Sends ``signum`` to this process once ``step`` optimizer steps are done: a deterministic
    preemption in the middle of an epoch."""

    def __init__(self, step: int, signum: int = 15):
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class RecordBatches(pl.Callback):
    """Appends, for every training step, the step and the corpus positions of its sentences
    to a JSON Lines file: which data each step trained on."""

    def __init__(self, path: str):
        self.path = path

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *args: Any
    ) -> None:
        with open(self.path, "a") as f:
            record = {
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                "index": batch.index.tolist(),
            }
            f.write(json.dumps(record) + "\n")
