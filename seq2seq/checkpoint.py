"""Checkpoints a preemptible run can trust: written atomically, refreshed on a wall-clock interval
and when SIGTERM or SIGUSR1 arrives, and holding the random number generators, so that a run
resumed with ``--ckpt_path last`` continues exactly where the stopped one was.

The position of the training data is saved by the train loaders themselves (``batching.py``,
``streaming.py``): Lightning stores ``state_dict()`` of every stateful train loader.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

# Exit status of a run stopped by SIGTERM or SIGUSR1 after saving last.ckpt: EX_TEMPFAIL
# ("temporary failure, try again") from sysexits.h, so a retry loop can tell it from success.
PREEMPTED_EXIT = 75


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file in the same folder, syncs it and renames it into
    place: a kill at any moment leaves the previous file or the new one, never half of one.

    Lightning's own local save goes through an fsspec transaction that stages the file in the
    system temp folder and copies it into place when that is another filesystem, without fsync.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote: fsspec's way
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a process killed while saving
            stale.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python generator states, as types ``weights_only`` loads."""
    states = _collect_rng_states(include_cuda=torch.cuda.is_available())
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    states["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    return states


def set_rng_state(states: dict[str, Any]) -> None:
    states = dict(states)
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    states["numpy"] = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
    if not torch.cuda.is_available():
        states.pop("torch.cuda", None)
    _set_rng_states(states)


class Checkpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is always a faithful point to resume from.

    - ``last.ckpt`` follows every validation, not only improvements. (Lightning refreshes it
      only with a top-k save, so with ``monitor: val/bleu`` it would hold the best epoch and
      ``--ckpt_path last`` would throw away every epoch since.)
    - It is also refreshed every ``last_interval`` of training (wall clock), mid-epoch, and after
      the training step during which SIGTERM or SIGUSR1 arrived; the run then stops with exit
      status ``PREEMPTED_EXIT``. (Lightning's ``train_time_interval`` cannot serve: in one
      callback it excludes the per-validation top-k, and with a monitor it saves "best" files
      from stale metrics.)
    - Its state holds the random number generators, restored when training resumes, so dropout
      draws the same masks as in an uninterrupted run.
    - ``best.ckpt`` is a relative symbolic link to the best top-k file (whose name carries the score).

    Every other argument is ``ModelCheckpoint``'s (an unknown one is a TypeError there).
    """

    def __init__(self, *, last_interval: timedelta | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if last_interval is not None and last_interval.total_seconds() <= 0:
            raise ValueError(f"last_interval must be positive, got {last_interval}")
        self.last_interval = last_interval
        self._last_refresh = time.monotonic()
        self._rng_to_restore: dict[str, Any] | None = None
        self._usr1_handler: Any = None

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        if self.save_last is True and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_refresh = time.monotonic()
        self._link_best(trainer)

    def _link_best(self, trainer: pl.Trainer) -> None:
        """Point ``best.ckpt`` at ``best_model_path``, atomically (a new link renamed over the old)."""
        best = Path(self.best_model_path) if self.best_model_path else None
        if best is None or not trainer.is_global_zero or not _is_local_file_protocol(str(best)):
            return
        link = best.parent / "best.ckpt"
        if link.is_symlink() and os.readlink(link) == best.name:
            return
        tmp = link.with_name(f".best.ckpt.tmp-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        os.symlink(best.name, tmp)
        os.replace(tmp, link)

    # Run after the parent's save in whichever hook it saves from, so a top-k save comes first.
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        due = self.last_interval is not None and (
            time.monotonic() - self._last_refresh >= self.last_interval.total_seconds()
        )
        # one decision for all ranks (any rank's signal or clock), or a collective save would hang
        if trainer.strategy.reduce_boolean_decision(due or trainer.received_sigterm, all=False):
            if trainer.received_sigterm:
                log.warning(
                    "signal received: saving last.ckpt at step %d, then stopping", trainer.global_step
                )
            self._refresh_last(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """A signal that arrived outside a training step (e.g. during validation): save now."""
        super().on_exception(trainer, pl_module, exception)
        if isinstance(exception, SIGTERMException):  # _refresh_last skips outside fit and sanity checks
            self._refresh_last(trainer)
        self._restore_usr1()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_refresh = time.monotonic()
        if self._rng_to_restore is not None:  # the loaders are built: nothing draws before the step
            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    # -- SIGUSR1 stops the run like SIGTERM ---------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Installed before the loaders' workers fork, so they inherit it rather than die of
        SIGUSR1. Lightning handles SIGTERM itself, and SIGUSR1 only for SLURM's auto-requeue,
        which is then left to it (save, requeue)."""
        super().setup(trainer, pl_module, stage)
        env = getattr(trainer.strategy, "cluster_environment", None)
        slurm_requeue = isinstance(env, SLURMEnvironment) and env.auto_requeue
        main_thread = threading.current_thread() is threading.main_thread()
        free = signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)  # nobody else handles it
        if stage == "fit" and main_thread and free and not slurm_requeue:
            self._usr1_handler = signal.signal(signal.SIGUSR1, _as_sigterm)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._restore_usr1()

    def _restore_usr1(self) -> None:
        if self._usr1_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._usr1_handler)
            self._usr1_handler = None

    # -- the random number generators travel with the checkpoint -------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._rng_to_restore = state_dict.get("rng")


def _as_sigterm(signum: int, frame: Any) -> None:
    """SIGUSR1 handler: whatever SIGTERM does now (Lightning's handler sets ``received_sigterm``)."""
    handler = signal.getsignal(signal.SIGTERM)
    if callable(handler):
        handler(signum, frame)
