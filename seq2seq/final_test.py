"""Test after fit: when training ends, decode the test split with the best and/or last checkpoint,
as ``seq2seq-evaluate`` would (the model's ``test_beam_size`` and ``length_penalty``), and write the
scores into the run folder::

    test_results.json        # BLEU and chrF with sacreBLEU signatures, beam, alpha, minutes, updates
    hypotheses/test-best.txt
    hypotheses/test-last.txt

On in the benchmark configs (``test_after_fit.checkpoints: [best, last]``), off by default.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import torch

from seq2seq.commands import score
from seq2seq.monitor import run_folder
from seq2seq.translator import Translator, load_checkpoint

log = logging.getLogger(__name__)


class TestAfterFit(pl.Callback):
    """Scores the checkpoints named in ``checkpoints`` on ``split`` at the end of ``fit``."""

    def __init__(self, checkpoints: list[Literal["best", "last"]] | None = None, split: str = "test"):
        self.checkpoints, self.split = list(checkpoints or []), split
        self.run: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # on every rank: trainer.log_dir is a broadcast, and on_fit_end below runs on rank 0 alone
        self.run = run_folder(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.checkpoints or not trainer.is_global_zero or self.run is None:
            return
        dm = trainer.datamodule
        if dm is None or self.split not in dm.splits:
            log.warning("test after fit skipped: the data has no %s split", self.split)
            return
        callback = trainer.checkpoint_callback
        paths = {
            "best": getattr(callback, "best_model_path", ""),
            "last": getattr(callback, "last_model_path", ""),
        }
        hp = pl_module.hparams
        split = dm.splits[self.split]
        run = self.run
        report = {
            "split": self.split, "beam_size": hp.test_beam_size, "length_penalty": hp.length_penalty,
            "minutes": round(pl_module.train_minutes(), 3), "updates": trainer.global_step,
            "sentences": len(split), "results": {},
        }  # fmt: skip
        for kind in self.checkpoints:
            path = paths[kind]
            if not path or not Path(path).is_file():
                log.warning("test after fit: no %s checkpoint to test", kind)
                continue
            report["results"][kind] = self._test(kind, Path(path), split, hp, run, pl_module.device)
            result = report["results"][kind]
            log.info(
                "%s %s (%s): BLEU %.2f chrF %.2f", self.split, kind, path, result["bleu"], result["chrf"]
            )
        (run / "test_results.json").write_text(json.dumps(report, indent=2) + "\n")

    def _test(self, kind: str, path: Path, split, hp, run: Path, device: torch.device) -> dict:
        translator = Translator.from_checkpoint(path, device=device)
        results = translator.translate(
            split.texts_src, beam_size=hp.test_beam_size, length_penalty=hp.length_penalty
        )
        hypotheses = [r.text for r in results]
        out = run / "hypotheses" / f"{self.split}-{kind}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
        scores = score(hypotheses, split.texts_tgt)
        return {
            "checkpoint": str(path), "step": int(load_checkpoint(path).get("global_step", -1)),
            "bleu": scores["bleu"], "chrf": scores["chrf"], "bleu_signature": scores["bleu_signature"],
            "chrf_signature": scores["chrf_signature"], "hypotheses": str(out.relative_to(run)),
        }  # fmt: skip
