"""What a person looks at while a run trains: training throughput in the logs, and after each
validation a few fixed sample translations, the hypotheses file and, optionally, an attention heatmap.

Files go into the run folder (the first logger's ``version_N``)::

    samples.txt                      # each validation: source, reference, hypothesis of 3 fixed sentences
    hypotheses/val-step000120.txt    # each validation: every validation sentence's output, in corpus order
    attention/val-step000120.png     # with attention_plot: validation sentence 0, greedy

With a TensorBoard logger (``pip install -e '.[tensorboard]'``) the samples and heatmaps go there too.
Under DDP every rank takes part in the collectives (the run folder, the hypotheses); rank 0 writes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.loggers import TensorBoardLogger

from seq2seq.batching import collate
from seq2seq.plot import attention_figure
from seq2seq.search import search

log = logging.getLogger(__name__)


def run_folder(trainer: pl.Trainer) -> Path:
    """The run folder, rank 0's. ``trainer.log_dir`` is a broadcast from rank 0: every rank must call
    this at the same point (a hook all ranks run), never behind an ``is_global_zero`` test."""
    return Path(trainer.log_dir or trainer.default_root_dir)


def gather_hypotheses(trainer: pl.Trainer, hyps: dict[int, str]) -> dict[int, str]:
    """Every rank's validation outputs in one dict (each rank decoded its own share of the sentences).
    A collective under DDP: every rank calls it."""
    if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return hyps
    parts: list[dict[int, str] | None] = [None] * trainer.world_size
    dist.all_gather_object(parts, hyps)
    return {i: h for part in parts for i, h in (part or {}).items()}


class Monitor(pl.Callback):
    """Logs ``train/tgt_tokens_per_s`` (target tokens per second of training, validation excluded,
    averaged over each ``log_every_n_steps`` window) and keeps what each validation produced."""

    def __init__(self, samples: int = 3, hypotheses: bool = True, attention_plot: bool = False):
        if samples < 0:
            raise ValueError(f"monitor.samples must be at least 0, got {samples}")
        self.samples, self.hypotheses, self.attention_plot = samples, hypotheses, attention_plot
        self._window_start = time.perf_counter()
        self._window_tokens = 0
        self.run: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.run = run_folder(trainer)  # every rank runs setup: the broadcast is matched

    # -- throughput ----------------------------------------------------------------------------
    def _new_window(self) -> None:
        self._window_start, self._window_tokens = time.perf_counter(), 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._new_window()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._window_tokens += batch.num_tgt_tokens
        seconds = time.perf_counter() - self._window_start
        pl_module.log("train/tgt_tokens_per_s", self._window_tokens / max(seconds, 1e-9), batch_size=1)
        # Lightning writes the step's logged values when global_step is a multiple of
        # log_every_n_steps: each written value then covers the steps since the previous one
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._new_window()

    # -- after each validation -----------------------------------------------------------------
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._new_window()  # validation time is not training time
        dm = trainer.datamodule
        if trainer.sanity_checking or dm is None or self.run is None:
            return
        hyps = gather_hypotheses(trainer, getattr(pl_module, "val_hypotheses", {}))  # on every rank
        if not trainer.is_global_zero or not hyps:  # no tokenizers: nothing was decoded
            return
        run = self.run
        step = trainer.global_step
        split = dm.splits["validation"]
        if self.hypotheses:
            path = run / "hypotheses" / f"val-step{step:06d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(hyps.get(i, "") + "\n" for i in range(len(split))), encoding="utf-8")
        shown = [i for i in range(min(self.samples, len(split))) if i in hyps]
        if shown:
            lines = [f"step {step} (epoch {trainer.current_epoch})"]
            for i in shown:
                lines += [f"  source      {split.texts_src[i]}", f"  reference   {split.texts_tgt[i]}",
                          f"  hypothesis  {hyps[i]}"]  # fmt: skip
            text = "\n".join(lines)
            with (run / "samples.txt").open("a", encoding="utf-8") as f:
                f.write(text + "\n")
            log.info("validation samples:\n%s", text)
            for tb in tensorboards(trainer):
                tb.experiment.add_text("val/samples", "\n".join(f"    {ln}" for ln in lines), step)
        if self.attention_plot:
            self._plot(trainer, pl_module, run, split.texts_src[0])

    def _plot(self, trainer: pl.Trainer, pl_module: pl.LightningModule, run: Path, text: str) -> None:
        src_tok, tgt_tok = pl_module.tokenizers
        ids = src_tok.encode([text])[0]
        batch = collate([ids], [[]], [0]).to(pl_module.device)
        model, was_training = pl_module.model, pl_module.model.training
        model.eval()
        with torch.no_grad():
            out = search(model, batch.src, batch.src_lengths, beam_size=1,
                         max_length=pl_module.hparams.eval_max_length, return_attention=True)  # fmt: skip
        model.train(was_training)
        tokens = out.tokens[0][0]
        title = f"step {trainer.global_step}: {tgt_tok.decode([tokens])[0]}"
        fig = attention_figure(
            out.attention[0][0].cpu().numpy(), src_tok.pieces(ids), tgt_tok.pieces(tokens), title
        )
        path = run / "attention" / f"val-step{trainer.global_step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
        for tb in tensorboards(trainer):
            tb.experiment.add_figure("val/attention", fig, trainer.global_step)


def tensorboards(trainer: pl.Trainer) -> list[TensorBoardLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
