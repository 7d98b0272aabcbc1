"""Streaming training data for corpora larger than memory.

The training split is a ``datasets.IterableDataset`` read record by record, tokenized on the
fly and bucketed in a buffer: read ``buffer_size`` pairs, sort them by length, cut token-budget
batches, shuffle the batches. Validation and test stay map-style (they are small).

Sharding over DDP ranks: every rank reads the same (identically shuffled) stream and the
batches of each buffer are dealt out with ``shard_batches``, so ranks get disjoint data and
exactly the same number of batches, which DDP needs to not hang at the end of an epoch.
(``datasets.distributed.split_dataset_by_node`` would give each rank different files or every
n-th record, but nothing could then make the ranks' token-budget batch counts agree.)
DataLoader workers split the stream by shards (files), the same way on every rank.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import datasets
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, get_worker_info

from seq2seq.batching import Batch, collate, make_batches, shard_batches
from seq2seq.sources import CorpusError, drop_empty, open_corpus, resolve_split
from seq2seq.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class PairReader:
    """Picks ``(src, tgt)`` out of one streamed record of either layout (None -> "")."""

    def __init__(self, src_col: str, tgt_col: str, where: str):
        self.src_col, self.tgt_col, self.where = src_col, tgt_col, where

    def __call__(self, record: dict) -> tuple[str, str]:
        kind = "column"
        if self.src_col not in record and isinstance(record.get("translation"), dict):
            record, kind = record["translation"], "language"
        for field in (self.src_col, self.tgt_col):
            if field not in record:
                raise CorpusError(f"{self.where}: no {kind} {field!r} (record has {sorted(record)})")
        src, tgt = record[self.src_col], record[self.tgt_col]
        return ("" if src is None else str(src)), ("" if tgt is None else str(tgt))

    def pairs(self, stream: datasets.IterableDataset) -> Iterator[tuple[str, str]]:
        """Every pair of a stream; read errors become a CorpusError naming the split."""
        try:
            for record in stream:
                yield self(record)
        except CorpusError:
            raise
        except Exception as e:  # e.g. a file that fails to parse halfway through
            raise CorpusError(f"{self.where}: cannot read: {type(e).__name__}: {e}") from e


def load_streaming_corpus(
    source: str,
    src_lang: str,
    tgt_lang: str,
    config: str | None = None,
    splits: dict[str, str] | None = None,
    src_column: str | None = None,
    tgt_column: str | None = None,
    builtin_sizes: tuple[int, int, int] = (20000, 500, 500),
    seed: int = 0,
) -> tuple[datasets.IterableDataset, PairReader, datasets.DatasetDict]:
    """The training stream, its record reader, and validation[/test] read into memory."""
    raw = open_corpus(source, src_lang, tgt_lang, config, tuple(builtin_sizes), seed, streaming=True)
    src_col, tgt_col = src_column or src_lang, tgt_column or tgt_lang
    train = resolve_split(list(raw), "train", splits, source)
    evaluation = {}
    for split in ("validation", "test"):
        name = resolve_split(list(raw), split, splits, source)
        if name is not None:
            where = f"{source} [{name}]"
            pairs = list(PairReader(src_col, tgt_col, where).pairs(raw[name]()))
            columns = {col: [p[i] for p in pairs] for i, col in enumerate(("src", "tgt"))}
            table = pa.table({col: pa.array(v, pa.large_string()) for col, v in columns.items()})
            evaluation[split] = drop_empty(table, where)
    reader = PairReader(src_col, tgt_col, f"{source} [{train}]")
    return raw[train](), reader, datasets.DatasetDict(evaluation)


def head_pairs(
    stream: datasets.IterableDataset, reader: PairReader, count: int
) -> tuple[list[str], list[str]]:
    """The first ``count`` non-empty pairs of a stream (what SentencePiece is trained on)."""
    src, tgt = [], []
    for s, t in reader.pairs(stream):
        if s.strip() and t.strip():
            src.append(s)
            tgt.append(t)
            if len(src) >= count:
                break
    if not src:
        raise CorpusError(f"{reader.where} has no non-empty sentence pairs")
    return src, tgt


class StreamingBatches(torch.utils.data.IterableDataset):
    """Token-budget batches from a stream: tokenize, bucket in a buffer, deal out to ranks."""

    def __init__(
        self,
        stream: datasets.IterableDataset,
        reader: PairReader,
        tokenizers: tuple[Tokenizer, Tokenizer],
        max_tokens: int,
        max_sentences: int,
        max_length: int,
        buffer_size: int = 10000,
        shuffle_buffer: int = 10000,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        sample_alpha: float | None = None,
    ):
        self.stream, self.reader, self.tokenizers = stream, reader, tokenizers
        self.max_tokens, self.max_sentences, self.max_length = max_tokens, max_sentences, max_length
        self.buffer_size, self.shuffle_buffer, self.shuffle = buffer_size, shuffle_buffer, shuffle
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.sample_alpha, self.epoch = sample_alpha, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        stream = self.stream
        if self.shuffle:  # same seed on every rank: all ranks read the same order
            stream = stream.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            stream.set_epoch(self.epoch)
        worker = get_worker_info()
        worker_id = worker.id if worker is not None else 0
        buffer: list[tuple[str, str]] = []
        counts = {"empty": 0, "too long": 0, "left over": 0}
        number = 0  # of the buffer, in this worker's part of the stream
        for src, tgt in self.reader.pairs(stream):
            if not (src.strip() and tgt.strip()):
                counts["empty"] += 1
                continue
            buffer.append((src, tgt))
            if len(buffer) == self.buffer_size:
                yield from self._deal(buffer, [worker_id, number], counts)
                buffer, number = [], number + 1
        if buffer:
            yield from self._deal(buffer, [worker_id, number], counts)
        if any(counts.values()):
            log.warning("%s, epoch %d: skipped %s", self.reader.where, self.epoch, counts)

    def _deal(self, buffer: list[tuple[str, str]], key: list[int], counts: dict) -> Iterator[Batch]:
        """Batches of one buffer, this rank's share: same count on every rank."""
        src_tok, tgt_tok = self.tokenizers
        src_ids = src_tok.encode([s for s, _ in buffer])
        tgt_ids = tgt_tok.encode([t for _, t in buffer])
        src_len = np.array([len(x) for x in src_ids])
        tgt_len = np.array([len(x) for x in tgt_ids])
        keep = (src_len <= self.max_length) & (tgt_len <= self.max_length)
        counts["too long"] += int((~keep).sum())
        if keep.sum() < self.num_replicas:  # a last scrap too small to share out
            counts["left over"] += int(keep.sum())
            return
        rng = np.random.default_rng([self.seed, self.epoch, *key]) if self.shuffle else None
        batches = make_batches(
            src_len,
            tgt_len,
            self.max_tokens,
            self.max_sentences,
            rng,
            keep,
        )
        offset = key[1] * self.buffer_size  # Batch.index: position in this worker's stream
        for batch in shard_batches(batches, self.num_replicas, self.rank):
            if self.sample_alpha:  # subword regularization: resample this batch's segmentation
                src = src_tok.encode([buffer[i][0] for i in batch], self.sample_alpha)
                tgt = tgt_tok.encode([buffer[i][1] for i in batch], self.sample_alpha)
            else:
                src, tgt = [src_ids[i] for i in batch], [tgt_ids[i] for i in batch]
            yield collate(src, tgt, [offset + i for i in batch])


class EpochDataLoader(DataLoader):
    """A DataLoader that tells its iterable dataset the epoch before each pass.

    Lightning calls ``set_epoch`` only on samplers, and an iterable dataset has none; setting
    it here, before the workers start, lets every worker see the new epoch.
    """

    def __init__(self, dataset: StreamingBatches, epoch_fn: Callable[[], int], **kwargs):
        super().__init__(dataset, batch_size=None, **kwargs)
        self.epoch_fn = epoch_fn

    def __iter__(self):
        self.dataset.set_epoch(self.epoch_fn())
        return super().__iter__()
