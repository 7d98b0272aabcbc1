"""SentencePiece subword tokenizers, trained from the training split and stored as bytes.

A tokenizer is fully described by its model proto (a few hundred KB of bytes), so it travels
inside the Lightning checkpoint and one ``.ckpt`` file is all a server needs.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

# Special ids are the same in every vocabulary. PAD is distinct from BOS/EOS so that
# masks and ``ignore_index`` can never swallow a real end-of-sentence.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

# SentencePiece's list calls start a thread pool each time: about 100 µs per call here, against
# 3-8 µs for one short sentence as a string. Lists shorter than this (a server request, a search
# result) go one string at a time; longer ones (a training corpus) as one list.
LIST_CALL_MIN = 64


class Tokenizer:
    """Text <-> subword ids for one language (or a joint vocabulary for both)."""

    def __init__(self, model_proto: bytes):
        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        ids = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(f"SentencePiece model has special ids {ids}, expected (0, 1, 2, 3)")

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        byte_fallback: bool = False,
    ) -> Tokenizer:
        """Train a SentencePiece model in memory.

        ``hard_vocab_limit=False`` lets a tiny corpus yield fewer pieces than asked for
        instead of failing; read ``vocab_size`` afterwards for the real size.
        """
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=byte_fallback,
            hard_vocab_limit=False,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )
        return cls(buf.getvalue())

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def fingerprint(self) -> str:
        """Short content hash, used to key the tokenized-data cache."""
        return hashlib.sha1(self.model_proto).hexdigest()[:16]

    def encode(self, texts: list[str], sample_alpha: float | None = None) -> list[list[int]]:
        """Subword ids without BOS/EOS. ``sample_alpha`` turns on subword regularization."""
        if sample_alpha:
            return self.sp.encode(texts, enable_sampling=True, alpha=sample_alpha, nbest_size=-1)
        if len(texts) < LIST_CALL_MIN:
            return [self.sp.encode(text) for text in texts]
        return self.sp.encode(texts)

    def decode(self, ids: list[list[int]]) -> list[str]:
        if len(ids) < LIST_CALL_MIN:
            return [self.sp.decode(one) for one in ids]
        return self.sp.decode(ids)

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.sp.id_to_piece(i) for i in ids]

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.model_proto)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return cls(Path(path).read_bytes())

    def __getstate__(self) -> dict:
        return {"model_proto": self.model_proto}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_proto"])
