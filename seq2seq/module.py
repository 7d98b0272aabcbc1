"""The LightningModule: a thin training wrapper around ``Seq2Seq``.

It owns the loss, the optimizer and schedule, and validation by decoding (BLEU and chrF);
it also puts the SentencePiece models into the checkpoint so that one file can translate.
``init_from`` starts from another checkpoint's weights and architecture (``finetune.py``).
"""

from __future__ import annotations

import time
from typing import Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Timer
from torch import nn
from torchmetrics.text import CHRFScore, SacreBLEUScore

from seq2seq.batching import Batch
from seq2seq.finetune import load_base
from seq2seq.model import Seq2Seq
from seq2seq.search import search
from seq2seq.tokenizer import PAD_ID, Tokenizer

CHECKPOINT_KEY = "seq2seq"  # our own checkpoint entry: tokenizers, languages, data name
TRAIN_SECONDS_KEY = "seq2seq_train_seconds"  # training wall time so far, summed over resumes


class TranslationModule(pl.LightningModule):
    """Trains a ``Seq2Seq`` with teacher forcing, label smoothing and AdamW."""

    def __init__(
        self,
        src_vocab_size: int = 8000,
        tgt_vocab_size: int = 8000,
        emb_dim: int = 256,
        enc_hidden: int = 256,
        enc_layers: int = 2,
        dec_hidden: int = 512,
        dec_layers: int = 1,
        attention: Literal["additive", "dot", "general"] = "general",
        input_feeding: bool = False,
        dropout: float = 0.3,
        tie_embeddings: bool = False,
        share_embeddings: bool = False,
        src_word_dropout: float = 0.0,
        tgt_word_dropout: float = 0.0,
        enc_out_dropout: float = 0.0,
        label_smoothing: float = 0.1,
        teacher_forcing: float = 1.0,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        scheduler: Literal["plateau", "warmup_decay", "budget", "none"] = "plateau",
        warmup_steps: int = 500,
        decay_steps: int = 20000,
        final_lr_ratio: float = 0.02,
        plateau_patience: int = 1,
        plateau_factor: float = 0.5,
        eval_beam_size: int = 1,
        eval_max_length: int = 100,
        test_beam_size: int = 5,
        length_penalty: float = 0.0,
        init_from: str | None = None,
    ):
        super().__init__()
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be between 0 and 1, got {teacher_forcing}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if not 0.0 <= final_lr_ratio <= 1.0:
            raise ValueError(f"final_lr_ratio must be in [0, 1], got {final_lr_ratio}")
        self.save_hyperparameters()
        base = load_base(init_from) if init_from else None
        if base is not None:  # the base decides the shapes; hparams follow, so the checkpoint rebuilds
            self.hparams.update(base.architecture)
        hp = self.hparams
        self.model = Seq2Seq(
            hp.src_vocab_size, hp.tgt_vocab_size, hp.emb_dim, hp.enc_hidden, hp.enc_layers, hp.dec_hidden,
            hp.dec_layers, hp.attention, hp.input_feeding, dropout, hp.tie_embeddings, src_word_dropout,
            tgt_word_dropout, enc_out_dropout, hp.share_embeddings,
        )  # fmt: skip
        if base is not None:
            self.model.load_state_dict(base.weights)
        self.loss_fn = nn.CrossEntropyLoss(ignore_index=PAD_ID, label_smoothing=label_smoothing)
        self.bleu = {stage: SacreBLEUScore(tokenize="13a") for stage in ("val", "test")}
        self.chrf = {stage: CHRFScore() for stage in ("val", "test")}
        self.tokenizers: tuple[Tokenizer, Tokenizer] | None = None
        self.meta: dict = {}
        self.val_hypotheses: dict[int, str] = {}  # corpus index -> the last validation's output
        self._seconds_before = 0.0  # training time of the runs this one resumes

    # -- tokenizers and metadata travel with the checkpoint -------------------------------
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self.trainer else None
        if dm is not None and hasattr(dm, "src_tokenizer"):
            self.tokenizers = (dm.src_tokenizer, dm.tgt_tokenizer)
            hp = dm.hparams
            self.meta = {"src_lang": hp.src_lang, "tgt_lang": hp.tgt_lang, "data": dm.name}
            if self.hparams.share_embeddings and dm.src_tokenizer.model_proto != dm.tgt_tokenizer.model_proto:
                raise ValueError("share_embeddings needs one joint vocabulary: set data.joint_vocab: true")
        for metric in (*self.bleu.values(), *self.chrf.values()):
            metric.to(self.device)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.tokenizers is not None:
            checkpoint[CHECKPOINT_KEY] = {
                **self.meta,
                "src_spm": self.tokenizers[0].model_proto,
                "tgt_spm": self.tokenizers[1].model_proto,
            }
        if self._trainer is not None and self._trainer.state.fn == "fit":
            checkpoint[TRAIN_SECONDS_KEY] = 60 * self.train_minutes()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if CHECKPOINT_KEY in checkpoint:
            entry = checkpoint[CHECKPOINT_KEY]
            self.tokenizers = (Tokenizer(entry["src_spm"]), Tokenizer(entry["tgt_spm"]))
            self.meta = {k: v for k, v in entry.items() if not k.endswith("_spm")}
        self._seconds_before = float(checkpoint.get(TRAIN_SECONDS_KEY, 0.0))

    # -- training -------------------------------------------------------------------------
    def on_train_start(self) -> None:
        self._fit_start = time.perf_counter()  # for the learning curve: BLEU against wall time

    def train_minutes(self) -> float:
        """Wall-clock minutes of training so far, the runs this one resumed included."""
        now = time.perf_counter() - self._fit_start if hasattr(self, "_fit_start") else 0.0
        return (self._seconds_before + now) / 60

    def loss(self, batch: Batch, teacher_forcing: float = 1.0) -> torch.Tensor:
        logits, _ = self.model(batch.src, batch.src_lengths, batch.tgt_in, teacher_forcing)
        # (batch, tgt_len, vocab); cast up in case of bf16 autocast
        return self.loss_fn(logits.float().flatten(0, 1), batch.tgt_out.flatten())

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch, self.hparams.teacher_forcing)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.src.size(0))
        self.log("train/tgt_tokens", float(batch.num_tgt_tokens), reduce_fx="sum", batch_size=1)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=1)
        return loss

    def _eval_step(self, batch: Batch, stage: str) -> None:
        loss = self.loss(batch)
        n = batch.src.size(0)
        self.log(f"{stage}/loss", loss, batch_size=n, sync_dist=True)
        self.log(f"{stage}/ppl", torch.exp(loss), batch_size=n, sync_dist=True)
        if self.tokenizers is None:
            return
        hp = self.hparams
        beam = hp.eval_beam_size if stage == "val" else hp.test_beam_size
        result = search(
            self.model, batch.src, batch.src_lengths, beam_size=beam,
            max_length=hp.eval_max_length, alpha=hp.length_penalty,
        )  # fmt: skip
        hyps = self.tokenizers[1].decode([nbest[0] for nbest in result.tokens])
        if stage == "val":  # for the hypotheses file and the samples (monitor.py)
            self.val_hypotheses.update(zip(batch.index.tolist(), hyps, strict=True))
        split = "validation" if stage == "val" else "test"
        refs = self.trainer.datamodule.references(split)
        refs = [[refs[i]] for i in batch.index.tolist()]
        self.bleu[stage].update(hyps, refs)
        self.chrf[stage].update(hyps, refs)

    def _eval_epoch_end(self, stage: str) -> None:
        if self.tokenizers is None:
            return
        # torchmetrics syncs the n-gram statistics over DDP ranks before computing
        self.log(f"{stage}/bleu", 100 * self.bleu[stage].compute(), prog_bar=True)
        self.log(f"{stage}/chrf", 100 * self.chrf[stage].compute())
        if stage == "val" and hasattr(self, "_fit_start"):
            self.log("val/train_minutes", self.train_minutes())
        self.bleu[stage].reset()
        self.chrf[stage].reset()

    def on_validation_epoch_start(self) -> None:
        self.val_hypotheses = {}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=hp.plateau_factor, patience=hp.plateau_patience
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {
                    "scheduler": scheduler,
                    "monitor": "val/bleu",
                    "interval": "epoch",
                },
            }
        if hp.scheduler == "budget":
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._budget_lr_factor)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        if hp.scheduler == "warmup_decay":

            def factor(step: int) -> float:  # linear warmup, then cosine decay to 10%
                if step < hp.warmup_steps:
                    return (step + 1) / hp.warmup_steps
                progress = min(1.0, (step - hp.warmup_steps) / max(1, hp.decay_steps - hp.warmup_steps))
                return 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        return optimizer

    # -- the budget schedule ----------------------------------------------------------------
    def training_progress(self) -> float:
        """How much of the training budget is spent, from 0 to 1: the larger of the share of
        ``max_time`` elapsed and the share of the planned optimizer steps (``max_steps`` or
        ``max_epochs``) taken. Time counts across resumes (Lightning's Timer keeps it)."""
        trainer = self._trainer
        if trainer is None:
            return 0.0
        progress = 0.0
        total_steps = trainer.estimated_stepping_batches
        if 0 < total_steps < float("inf"):
            progress = trainer.global_step / total_steps
        timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
        if timer is not None and timer.time_remaining() is not None:
            elapsed = timer.time_elapsed()
            progress = max(progress, elapsed / max(1e-9, elapsed + timer.time_remaining()))
        return min(1.0, progress)

    def _budget_lr_factor(self, step: int) -> float:
        """Linear warmup, then linear decay to ``final_lr_ratio`` exactly when the budget runs out.

        A fixed time budget (the Multi30k benchmark's 60 minutes) is best spent with a learning
        rate that reaches its minimum as time runs out (Li et al., 2020, "Budgeted Training"),
        rather than one that waits for validation BLEU to stall.
        """
        hp = self.hparams
        warmup = min(1.0, (step + 1) / max(1, hp.warmup_steps))
        return warmup * (1.0 - (1.0 - hp.final_lr_ratio) * self.training_progress())
