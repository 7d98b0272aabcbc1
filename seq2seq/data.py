"""The LightningDataModule: corpus -> SentencePiece -> cached token ids -> padded batches.

Everything expensive (training SentencePiece, tokenizing every split) is cached on disk under
a key made of the corpus content and the tokenizer settings, so a second run starts in seconds.
The tokenizers exist right after ``__init__``, so LightningCLI can link the vocabulary sizes
into the model's arguments. With ``streaming=True`` the training split is never held in memory:
it is read, tokenized and bucketed on the fly (``streaming.py``), and SentencePiece learns from
its first ``spm_train_sentences`` pairs. A fine-tune (``finetune.py``) takes its tokenizers from
the base checkpoint (``tokenizers_from``) and may add a sample of the original data (``mix_with``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

import datasets
import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from seq2seq.batching import Batch, ResumableLoader, TokenBatchSampler, collate
from seq2seq.finetune import base_tokenizers, mix_training_data
from seq2seq.sources import CorpusError, load_corpus
from seq2seq.streaming import EpochDataLoader, StreamingBatches, head_pairs, load_streaming_corpus
from seq2seq.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(os.environ.get("SEQ2SEQ_CACHE", Path.home() / ".cache" / "seq2seq"))


def _digest(*parts: object) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(repr(p).encode() if not isinstance(p, bytes) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def texts(ds: datasets.Dataset, column: str) -> list[str]:
    """A string column as a list, straight from Arrow (``ds[column]`` iterates row by row)."""
    return ds.with_format("arrow")[column].to_pylist()


def text_fingerprint(*columns: list[str]) -> str:
    """Content hash of lists of sentences."""
    h = hashlib.sha1()
    for column in columns:
        h.update("\n".join(column).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def corpus_fingerprint(corpus: datasets.DatasetDict) -> str:
    """Content hash of every split: the same sentences give the same cache key."""
    parts = [(split, text_fingerprint(texts(ds, "src"), texts(ds, "tgt"))) for split, ds in corpus.items()]
    return _digest(*sorted(parts))


class TokenizedSplit:
    """Token ids of one split, read straight from the Arrow offsets (no per-row Python objects)."""

    def __init__(self, ds: datasets.Dataset):
        self.texts_src, self.texts_tgt = texts(ds, "src"), texts(ds, "tgt")
        self.src_off, self.src_val = self._flat(ds, "src_ids")
        self.tgt_off, self.tgt_val = self._flat(ds, "tgt_ids")
        self.src_lengths = np.diff(self.src_off)
        self.tgt_lengths = np.diff(self.tgt_off)

    @staticmethod
    def _flat(ds: datasets.Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
        arr = ds.data.column(column).combine_chunks()
        return arr.offsets.to_numpy(), arr.values.to_numpy()

    def __len__(self) -> int:
        return len(self.src_lengths)

    def src(self, i: int) -> np.ndarray:
        return self.src_val[self.src_off[i] : self.src_off[i + 1]]

    def tgt(self, i: int) -> np.ndarray:
        return self.tgt_val[self.tgt_off[i] : self.tgt_off[i + 1]]


class BatchDataset:
    """Map-style dataset indexed by a whole batch of indices (the sampler yields batches)."""

    def __init__(self, split: TokenizedSplit, tokenizers=None, sample_alpha: float | None = None):
        self.split, self.tokenizers, self.sample_alpha = split, tokenizers, sample_alpha

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, indices: list[int]) -> Batch:
        if self.sample_alpha:  # subword regularization: a fresh segmentation every time
            src_tok, tgt_tok = self.tokenizers
            src = src_tok.encode([self.split.texts_src[i] for i in indices], self.sample_alpha)
            tgt = tgt_tok.encode([self.split.texts_tgt[i] for i in indices], self.sample_alpha)
        else:
            src = [self.split.src(i) for i in indices]
            tgt = [self.split.tgt(i) for i in indices]
        return collate(src, tgt, indices)


def _identity(batch: Batch) -> Batch:
    return batch


class TranslationDataModule(pl.LightningDataModule):
    """Parallel corpus from any source, SentencePiece subwords, token-budget bucketed batches."""

    def __init__(
        self,
        source: str = "builtin",
        src_lang: str = "en",
        tgt_lang: str = "fr",
        dataset_config: str | None = None,
        splits: dict[str, str] | None = None,
        src_column: str | None = None,
        tgt_column: str | None = None,
        builtin_sizes: tuple[int, int, int] = (20000, 500, 500),
        spm_vocab_size: int = 8000,
        spm_model_type: Literal["unigram", "bpe", "char", "word"] = "unigram",
        joint_vocab: bool = False,
        character_coverage: float = 1.0,
        byte_fallback: bool = False,
        sample_alpha: float | None = None,
        max_length: int = 100,
        max_tokens: int = 4096,
        max_sentences: int = 128,
        eval_max_tokens: int = 8192,
        num_workers: int = 0,
        cache_dir: str | None = None,
        seed: int = 0,
        streaming: bool = False,
        stream_buffer_size: int = 10000,
        stream_shuffle_buffer: int = 10000,
        spm_train_sentences: int = 1_000_000,
        tokenizers_from: str | None = None,
        mix_with: str | None = None,
        mix_ratio: float = 1.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        start = time.perf_counter()
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        corpus_args = (source, src_lang, tgt_lang, dataset_config, splits, src_column, tgt_column,
                       tuple(builtin_sizes), seed)  # fmt: skip
        self.train_stream = None
        if streaming and mix_with:
            raise ValueError(
                "data.mix_with needs the whole training split in memory: not with data.streaming"
            )
        if streaming:  # train is a stream; SentencePiece learns from its first sentences
            self.train_stream, self.reader, self.corpus = load_streaming_corpus(*corpus_args)
            train_src, train_tgt = head_pairs(self.train_stream, self.reader, spm_train_sentences)
            spm_key = _digest("stream", text_fingerprint(train_src, train_tgt))
        else:
            self.corpus = load_corpus(*corpus_args)
            if mix_with:  # the same languages, columns and split names as the new data
                original = load_corpus(mix_with, *corpus_args[1:])
                self.corpus = mix_training_data(self.corpus, original, mix_ratio, seed)
            train_src, train_tgt = (texts(self.corpus["train"], c) for c in ("src", "tgt"))
            spm_key = corpus_fingerprint(self.corpus)
        self.src_tokenizer, self.tgt_tokenizer = self._load_tokenizers(spm_key, train_src, train_tgt)
        ids = self._load_ids(corpus_fingerprint(self.corpus) if streaming else spm_key)
        self.splits = {name: TokenizedSplit(ds) for name, ds in ids.items()}
        log.info(
            "data ready in %.1fs: %s", time.perf_counter() - start,
            {k: len(v) for k, v in self.splits.items()},
        )  # fmt: skip

    # -- what the model needs to know -----------------------------------------------------
    @property
    def src_vocab_size(self) -> int:
        return self.src_tokenizer.vocab_size

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt_tokenizer.vocab_size

    @property
    def name(self) -> str:
        hp = self.hparams
        return hp.source if not hp.dataset_config else f"{hp.source}:{hp.dataset_config}"

    def references(self, split: str) -> list[str]:
        return self.splits[split].texts_tgt

    # -- cached SentencePiece training and tokenization -----------------------------------
    def _load_tokenizers(
        self, fingerprint: str, train_src: list[str], train_tgt: list[str]
    ) -> tuple[Tokenizer, Tokenizer]:
        hp = self.hparams
        if hp.tokenizers_from:  # a fine-tune: the base checkpoint's vocabulary, byte for byte
            return base_tokenizers(hp.tokenizers_from)
        key = _digest(fingerprint, hp.spm_vocab_size, hp.spm_model_type, hp.joint_vocab,
                      hp.character_coverage, hp.byte_fallback)  # fmt: skip
        paths = [self.cache_dir / f"spm-{key}.{side}.model" for side in ("src", "tgt")]
        if all(p.is_file() for p in paths):
            return Tokenizer.load(paths[0]), Tokenizer.load(paths[1])

        def train(texts: list[str]) -> Tokenizer:
            try:
                return Tokenizer.train(texts, hp.spm_vocab_size, hp.spm_model_type,
                                       hp.character_coverage, hp.byte_fallback)  # fmt: skip
            except RuntimeError as e:  # e.g. vocabulary smaller than the alphabet
                raise CorpusError(
                    f"cannot train SentencePiece on {self.name} (spm_vocab_size={hp.spm_vocab_size}, "
                    f"spm_model_type={hp.spm_model_type}, character_coverage="
                    f"{hp.character_coverage}, byte_fallback={hp.byte_fallback}): {e}"
                ) from e

        if hp.joint_vocab:
            src = tgt = train(train_src + train_tgt)
        else:
            src, tgt = train(train_src), train(train_tgt)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for tok, path in zip((src, tgt), paths, strict=True):
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tok.save(tmp)
            os.replace(tmp, path)  # atomic: concurrent DDP ranks never read half a file
        return src, tgt

    def _load_ids(self, fingerprint: str) -> datasets.DatasetDict:
        key = _digest(fingerprint, self.src_tokenizer.fingerprint, self.tgt_tokenizer.fingerprint)
        path = self.cache_dir / f"data-{key}"
        if (path / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(path))
        src_tok, tgt_tok = self.src_tokenizer, self.tgt_tokenizer

        def tokenize(batch: dict) -> dict:
            return {
                "src_ids": src_tok.encode(batch["src"]),
                "tgt_ids": tgt_tok.encode(batch["tgt"]),
            }

        features = next(iter(self.corpus.values())).features.copy()
        features["src_ids"] = features["tgt_ids"] = datasets.Sequence(datasets.Value("int32"))
        tokenized = self.corpus.map(tokenize, batched=True, batch_size=2000, features=features)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".tmp-"))
        tokenized.save_to_disk(str(tmp))
        (tmp / "seq2seq.json").write_text(json.dumps({"source": self.name}))
        try:
            os.replace(tmp, path)
        except OSError:  # another rank won the race: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
        return datasets.load_from_disk(str(path))

    # -- dataloaders ----------------------------------------------------------------------
    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer else (1, 0)

    def _loader(self, split: str, train: bool) -> DataLoader:
        hp, data = self.hparams, self.splits[split]
        keep = None
        if train:  # length filter, training only: evaluation must see every sentence
            keep = (data.src_lengths <= hp.max_length) & (data.tgt_lengths <= hp.max_length)
            if not keep.all():
                log.info("%s: %d of %d training pairs are longer than max_length=%d tokens; "
                         "skipped", self.name, int((~keep).sum()), len(keep), hp.max_length)  # fmt: skip
        world, rank = self._rank()
        sampler = TokenBatchSampler(
            data.src_lengths, data.tgt_lengths,
            max_tokens=hp.max_tokens if train else hp.eval_max_tokens,
            max_sentences=hp.max_sentences if train else 4 * hp.max_sentences,
            shuffle=train, seed=hp.seed, num_replicas=world, rank=rank,
            keep=keep,
        )  # fmt: skip
        dataset = BatchDataset(
            data, (self.src_tokenizer, self.tgt_tokenizer), hp.sample_alpha if train else None
        )
        options = dict(
            collate_fn=_identity, num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0,
            generator=self._generator(),
        )  # fmt: skip
        if train:
            return ResumableLoader(dataset, sampler, self._progress, **options)
        return DataLoader(dataset, sampler=sampler, batch_size=None, **options)

    def _stream_loader(self) -> DataLoader:
        hp = self.hparams
        world, rank = self._rank()
        dataset = StreamingBatches(
            self.train_stream, self.reader, (self.src_tokenizer, self.tgt_tokenizer),
            hp.max_tokens, hp.max_sentences, hp.max_length, hp.stream_buffer_size,
            hp.stream_shuffle_buffer, shuffle=True, seed=hp.seed, num_replicas=world, rank=rank,
            sample_alpha=hp.sample_alpha,
        )  # fmt: skip
        return EpochDataLoader(
            dataset, self._progress, num_workers=hp.num_workers, generator=self._generator()
        )

    def _generator(self) -> torch.Generator:
        """A DataLoader draws its workers' base seed from this, not from the global generator,
        so that loading data never shifts the dropout masks (and a resumed run draws the same)."""
        return torch.Generator().manual_seed(self.hparams.seed)

    def _progress(self) -> tuple[int, int]:
        """The current epoch and how many of its batches finished a training step: where a
        run resumed from a checkpoint saved now must continue (loaders fetch ahead of this)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 0
        return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> DataLoader:
        return self._stream_loader() if self.train_stream is not None else self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.splits:
            raise ValueError(f"{self.name} has no test split")
        return self._loader("test", train=False)
