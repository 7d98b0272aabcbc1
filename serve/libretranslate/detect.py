"""Language detection from what the checkpoints already hold: each source language's SentencePiece model.

A unigram SentencePiece model is a language model over subword pieces: the sum of the piece
scores (log-probabilities) of a text's best segmentation is its log-likelihood under that
language. With equal priors, the posterior of each language is the softmax of these
log-likelihoods, which we report as LibreTranslate does, as a confidence from 0 to 100. No
download and no extra model; torch-free, so it runs in the HTTP processes.
"""

from __future__ import annotations

import math

import sentencepiece as spm

UNK_PENALTY = 10.0  # what SentencePiece's unigram model charges an unknown character below the rarest piece


class Detector:
    """``detect(text)`` -> [(code, confidence 0-100)], most likely first."""

    def __init__(self, protos: dict[str, bytes]):
        self.models: dict[str, tuple[spm.SentencePieceProcessor, float]] = {}
        for code, proto in sorted(protos.items()):
            sp = spm.SentencePieceProcessor(model_proto=proto)
            scores = [sp.get_score(i) for i in range(sp.get_piece_size()) if not self._unscored(sp, i)]
            self.models[code] = (sp, min(scores, default=0.0) - UNK_PENALTY)

    @staticmethod
    def _unscored(sp: spm.SentencePieceProcessor, i: int) -> bool:
        """Pieces whose score is no log-probability (byte-fallback pieces score 0)."""
        return sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i) or sp.is_byte(i)

    def log_likelihood(self, code: str, text: str) -> float:
        sp, unk = self.models[code]
        ids, pieces = sp.encode(text), sp.encode(text, out_type=str)
        return sum(
            len(p) * unk if self._unscored(sp, i) else sp.get_score(i)
            for i, p in zip(ids, pieces, strict=True)
        )

    def detect(self, text: str) -> list[tuple[str, float]]:
        if not self.models:
            return []
        scores = {code: self.log_likelihood(code, text) for code in self.models}
        top = max(scores.values())
        weights = {code: math.exp(s - top) for code, s in scores.items()}
        total = sum(weights.values())
        ranked = sorted(weights.items(), key=lambda kv: -kv[1])
        return [(code, round(100.0 * w / total, 1)) for code, w in ranked]
