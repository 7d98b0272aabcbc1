"""Command-line entry points: ``train`` (LightningCLI), plus shared error handling."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from seq2seq.checkpoint import PREEMPTED_EXIT, Checkpoint
from seq2seq.data import TranslationDataModule
from seq2seq.final_test import TestAfterFit
from seq2seq.module import TranslationModule
from seq2seq.monitor import Monitor
from seq2seq.sources import CorpusError
from seq2seq.translator import CheckpointError

log = logging.getLogger(__name__)


class TrainCLI(LightningCLI):
    """LightningCLI with the vocabulary sizes linked from data to model, and typed callbacks.

    ``--model.init_from CKPT`` (a fine-tune) also gives the data module that checkpoint's tokenizers.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.src_vocab_size", "model.src_vocab_size", apply_on="instantiate")
        parser.link_arguments("data.tgt_vocab_size", "model.tgt_vocab_size", apply_on="instantiate")
        parser.link_arguments("model.init_from", "data.tokenizers_from", apply_on="parse")
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/bleu",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch}-{step}-bleu{val/bleu:.2f}",
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.last_interval": "00:10:00",
            }
        )
        parser.add_lightning_class_args(Monitor, "monitor")
        parser.add_lightning_class_args(TestAfterFit, "test_after_fit")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults(
            {
                "early_stopping.monitor": "val/bleu",
                "early_stopping.mode": "max",
                "early_stopping.patience": 5,
                # val/bleu exists only after a validation: check there, not at the end of a
                # training epoch, which max_steps or max_time can end before any validation ran
                "early_stopping.check_on_train_epoch_end": False,
            }
        )

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a value a constructor rejects is a one-line error."""
        try:
            super().instantiate_classes()
        except CorpusError:
            raise
        except (ValueError, MisconfigurationException) as e:
            fail(f"invalid configuration: {e}")

    def fit(self, model: pl.LightningModule, ckpt_path: str | None = None, **kwargs: Any) -> None:
        """``trainer.fit``, with ``--ckpt_path last`` resuming from this experiment's newest last.ckpt;
        stopped by SIGTERM or SIGUSR1 (last.ckpt saved), it exits with status ``PREEMPTED_EXIT``."""
        if ckpt_path == "last":
            ckpt_path = find_last_checkpoint(self.trainer) or ckpt_path
        share_run_folder(self.trainer, ckpt_path)
        try:
            self.trainer.fit(model, ckpt_path=ckpt_path, **kwargs)
        except SIGTERMException:
            callback = self.trainer.checkpoint_callback
            saved = callback.last_model_path if callback is not None else ""
            log.warning("stopped by a signal at step %d; resume with --ckpt_path last (%s)",
                        self.trainer.global_step, saved or "no checkpoint saved")  # fmt: skip
            sys.exit(PREEMPTED_EXIT)


def find_last_checkpoint(trainer: pl.Trainer) -> str | None:
    """Newest ``last*.ckpt`` in any version folder of the trainer's logger, or of the
    ``hpc_ckpt_*.ckpt`` Lightning's SLURM requeue saves in ``default_root_dir``; None if neither.

    Each run logs to a fresh ``version_N`` folder and Lightning looks for ``last.ckpt`` only in
    the new, empty one, so without this ``--ckpt_path last`` would silently start afresh.
    A ``ModelCheckpoint`` with its own ``dirpath`` is left to Lightning, which finds it there.
    Taking the newer of the two kinds lets one job script resume after SIGTERM (``last.ckpt``)
    and after SLURM's SIGUSR1 requeue (``hpc_ckpt``) alike.
    """
    found = [p for p in Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt") if p.is_file()]
    callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    if trainer.loggers and not any(cb.dirpath is not None for cb in callbacks):
        logger = trainer.loggers[0]
        root = Path(logger.save_dir or trainer.default_root_dir, logger.name or "")
        found += [p for p in root.glob("*/checkpoints/last*.ckpt") if p.is_file()]
    if not found:
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    log.info("resuming from %s", newest)
    return str(newest)


def share_run_folder(trainer: pl.Trainer, ckpt_path: str | None) -> None:
    """Every logger writes into one ``version_N`` folder: the one ``ckpt_path`` was saved in when it
    is a ``version_N/checkpoints/*.ckpt`` of the first logger (a resumed run continues its curve
    and its files there: the CSV logger appends), else the first logger's next version.

    Loggers take their version at construction, before the checkpoint is resolved; each picks the
    next free folder on its own, so a CSV and a TensorBoard logger would split otherwise.
    """
    if not trainer.loggers:
        return
    first = trainer.loggers[0]
    version = None
    if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
        folder = Path(ckpt_path).resolve().parent.parent
        root = Path(first.save_dir or trainer.default_root_dir, first.name or "").resolve()
        if folder.parent == root and folder.name.startswith("version_"):
            version = folder.name.removeprefix("version_")
            version = int(version) if version.isdigit() else folder.name
    if version is None:
        version = first.version
    for logger in trainer.loggers:
        if hasattr(logger, "_version"):  # CSVLogger, TensorBoardLogger: no public setter
            logger._version = version
        if isinstance(logger, CSVLogger) and trainer.is_global_zero:
            keep_csv_rows(logger)


def keep_csv_rows(logger: CSVLogger) -> None:
    """Keep the rows of a ``metrics.csv`` the run continues: Lightning's CSV writer deletes the file
    of a folder it reuses (lightning.fabric.loggers.csv_logs._ExperimentWriter._check_log_dir_exists),
    though its ``save`` appends. Put the rows back and tell the writer the columns they have."""
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return
    rows = path.read_bytes()
    writer = logger.experiment  # created now: this deletes the file
    path.write_bytes(rows)
    with path.open(newline="") as f:
        writer.metrics_keys = next(csv.reader(f), [])


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def train_main(args: list[str] | None = None) -> TrainCLI:
    """``scripts/train.py``: fit / validate / test / --print_config."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return TrainCLI(
            TranslationModule,
            TranslationDataModule,
            args=args,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "plugins": {"class_path": "seq2seq.checkpoint.AtomicCheckpointIO"},
                "logger": {
                    "class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": "runs"},
                },
            },
        )
    except (CorpusError, CheckpointError) as e:
        fail(str(e))


def translate_main(args: list[str] | None = None) -> None:
    """``seq2seq-translate``: see ``seq2seq.commands``."""
    from seq2seq.commands import translate_main as main

    main(args)


def evaluate_main(args: list[str] | None = None) -> None:
    """``seq2seq-evaluate``: see ``seq2seq.commands``."""
    from seq2seq.commands import evaluate_main as main

    main(args)
