"""Command-line entry points: ``train`` (LightningCLI), plus shared error handling."""

from __future__ import annotations

import logging
import sys

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from seq2seq.data import TranslationDataModule
from seq2seq.module import TranslationModule
from seq2seq.sources import CorpusError
from seq2seq.translator import CheckpointError


class TrainCLI(LightningCLI):
    """LightningCLI with the vocabulary sizes linked from data to model, and typed callbacks."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.src_vocab_size", "model.src_vocab_size", apply_on="instantiate")
        parser.link_arguments("data.tgt_vocab_size", "model.tgt_vocab_size", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/bleu",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch}-{step}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults(
            {"early_stopping.monitor": "val/bleu", "early_stopping.mode": "max", "early_stopping.patience": 5}
        )


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
            trainer_defaults={"logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                         "init_args": {"save_dir": "runs"}}},  # fmt: skip
        )
    except (CorpusError, CheckpointError) as e:
        fail(str(e))
