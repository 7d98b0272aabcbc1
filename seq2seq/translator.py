"""``Translator``: the small public API. A checkpoint file in, translations out.

    from seq2seq import Translator
    translator = Translator.from_checkpoint("model.ckpt")
    translator.translate(["Ein Hund rennt."], beam_size=5)[0].text

Sentences are sorted by length and batched by a source-token budget; see ``seq2seq.search``.
"""

from __future__ import annotations

import inspect
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seq2seq.batching import collate, make_batches
from seq2seq.model import Seq2Seq
from seq2seq.search import MAX_RATIO, search
from seq2seq.tokenizer import Tokenizer

# The checkpoint entry that seq2seq.module writes the tokenizers and languages under (a test
# keeps the two equal); not imported from there so that translating never imports Lightning.
CHECKPOINT_KEY = "seq2seq"
# Sentences per batch: with the source-token budget this keeps beam-5 batches near 1000 rows,
# large enough for efficient matrix products and small enough that little work waits on stragglers.
MAX_SENTENCES = 256


class CheckpointError(ValueError):
    """The file is missing, unreadable, unsafe, or not a seq2seq checkpoint."""


@dataclass
class Hypothesis:
    text: str
    score: float  # log-probability of the subword sequence and EOS
    tokens: list[str]  # target subword pieces
    # (len(tokens) + 1, len(source_tokens) + 1): the +1 are the EOS step and the source EOS
    attention: list[list[float]] | None = None


@dataclass
class Translation:
    source: str
    source_tokens: list[str]
    hypotheses: list[Hypothesis] = field(default_factory=list)  # n-best, best first

    @property
    def text(self) -> str:
        return self.hypotheses[0].text

    @property
    def score(self) -> float:
        return self.hypotheses[0].score


def resolve_device(device: str | torch.device = "auto", quantize: str | None = None) -> torch.device:
    """``auto`` takes the GPU when there is one; dynamic int8 weights run only on the CPU."""
    int8 = quantize == "int8"
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and not int8 else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {str(device)!r}: use auto, cpu or cuda[:N]") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for, but torch sees no CUDA GPU")
    if device.type != "cpu" and int8:
        raise ValueError(f"int8 quantization runs on the CPU only, not on {device}")
    return device


def load_checkpoint(path: str | Path) -> dict:
    """``torch.load`` with ``weights_only=True``: a checkpoint can never run code when loaded."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not a zip archive)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip, truncated file, or a pickle that wants to import code
        # torch's message is several paragraphs of advice; keep the line that names the cause
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else repr(e))
        raise CheckpointError(f"cannot load checkpoint {path} safely (weights_only=True): {reason}") from e
    if not isinstance(ckpt, dict) or CHECKPOINT_KEY not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a seq2seq checkpoint (no '{CHECKPOINT_KEY}' entry)")
    return ckpt


class Translator:
    """Batched translation with greedy or beam search from a trained ``Seq2Seq``."""

    def __init__(self, model: Seq2Seq, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, metadata: dict):
        self.model = model.eval()
        self.device = next(model.parameters(), torch.empty(0)).device
        self.src_tokenizer, self.tgt_tokenizer = src_tokenizer, tgt_tokenizer
        self.metadata = metadata
        self.src_lang, self.tgt_lang = metadata.get("src_lang"), metadata.get("tgt_lang")
        # the GNMT alpha the model's config chose for test decoding: translate()'s default
        self.default_length_penalty = float(metadata.get("length_penalty", 0.0))
        # pieces that show no text on their own (a lone "▁"): they do not count for min_length
        sp = tgt_tokenizer.sp
        self.silent = torch.tensor(
            [
                not sp.is_control(i) and not sp.id_to_piece(i).replace("▁", "").strip()
                for i in range(sp.get_piece_size())
            ]
        )

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, quantize: str | None = None, device: str | torch.device = "cpu"
    ) -> Translator:
        """Rebuild the model from the hyperparameters and weights in ``path``; ``quantize="int8"``
        applies dynamic int8 quantization to the GRU and Linear layers (CPU serving);
        ``device``: ``cpu``, ``cuda[:N]`` or ``auto`` (the GPU when there is one)."""
        if quantize not in (None, "none", "int8"):
            raise ValueError(f"unknown quantization {quantize!r}: use int8 or none")
        device = resolve_device(device, quantize)
        ckpt = load_checkpoint(path)
        hparams = ckpt.get("hyper_parameters", {})
        accepted = inspect.signature(Seq2Seq).parameters
        model = Seq2Seq(**{k: v for k, v in hparams.items() if k in accepted})
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
        entry = ckpt[CHECKPOINT_KEY]
        metadata = {k: v for k, v in entry.items() if not k.endswith("_spm")}
        metadata["parameters"] = sum(p.numel() for p in model.parameters())
        metadata["architecture"] = {k: v for k, v in hparams.items() if k in accepted}
        metadata["length_penalty"] = float(hparams.get("length_penalty", 0.0))
        if quantize == "int8":
            model = quantize_int8(model)
        metadata["quantize"] = quantize or "none"
        model = model.to(device)
        return cls(model, Tokenizer(entry["src_spm"]), Tokenizer(entry["tgt_spm"]), metadata)

    def translate(
        self,
        texts: list[str],
        beam_size: int = 5,
        n_best: int = 1,
        max_length: int = 200,
        max_ratio: float | None = MAX_RATIO,
        min_length: int = 1,
        length_penalty: float | None = None,
        return_attention: bool = False,
        max_tokens: int = 4096,
        progress: Callable[[int], None] | None = None,
    ) -> list[Translation]:
        """Translate ``texts`` in length-sorted batches of at most ``max_tokens`` source tokens
        (and 256 sentences); ``progress(n)`` is called after each batch of ``n`` sentences.
        ``length_penalty`` (GNMT alpha) defaults to the one the model was trained to be tested with;
        ``min_length=1`` bars an empty translation (a model may rank end of sentence first): it counts
        only tokens that show text."""
        if length_penalty is None:
            length_penalty = self.default_length_penalty
        if n_best > max(1, beam_size):
            raise ValueError(f"n_best ({n_best}) cannot exceed beam_size ({beam_size})")
        texts = list(texts)
        ids = self.src_tokenizer.encode(texts) if texts else []
        lengths = np.array([len(s) for s in ids], dtype=np.int64)
        results: list[Translation | None] = [None] * len(texts)
        for batch_idx in make_batches(lengths, lengths, max_tokens, MAX_SENTENCES):
            batch = collate([ids[i] for i in batch_idx], [[] for _ in batch_idx], batch_idx).to(self.device)
            out = search(
                self.model, batch.src, batch.src_lengths, beam_size=beam_size, n_best=n_best,
                max_length=max_length, max_ratio=max_ratio, min_length=min_length,
                alpha=length_penalty, return_attention=return_attention, silent=self.silent,
            )  # fmt: skip
            out.scores = out.scores.cpu()  # one copy, not one GPU sync per hypothesis
            for row, i in enumerate(batch_idx):
                results[i] = self._translation(texts[i], ids[i], out, row)
            if progress is not None:
                progress(len(batch_idx))
        return results  # type: ignore[return-value]

    def _translation(self, text: str, src_ids: list[int], out, row: int) -> Translation:
        hyps = []
        for j, tokens in enumerate(out.tokens[row]):
            att = out.attention[row][j].tolist() if out.attention is not None else None
            hyps.append(self.hypothesis(tokens, float(out.scores[row, j]), att))
        return Translation(text, self.src_tokenizer.pieces(src_ids), hyps)

    def hypothesis(
        self, tokens: list[int], score: float, attention: list[list[float]] | None = None
    ) -> Hypothesis:
        """A hypothesis from target subword ids (without EOS): its text and pieces."""
        return Hypothesis(
            self.tgt_tokenizer.decode([tokens])[0], score, self.tgt_tokenizer.pieces(tokens), attention
        )


def quantize_int8(model: Seq2Seq) -> Seq2Seq:
    """Dynamic int8 quantization of GRU and Linear weights: smaller and faster on CPU."""
    from torch import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.GRU, nn.Linear}, dtype=torch.qint8)
