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
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, get_worker_info

from seq2seq.batching import Batch, collate, make_batches, same_seed, shard_batches
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
        self._resume: tuple[int, dict[int, tuple[int, int]]] | None = None  # (epoch, positions)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next pass over ``state["epoch"]`` continue after ``state["positions"]``:
        ``{worker: (buffer, batch)}``, the last batch of each DataLoader worker's part of the
        stream that training consumed. The stream is read again up to there (it is shuffled
        the same way), but only the buffer it stopped in is tokenized and batched again."""
        if not same_seed(state["seed"], self.seed):
            return
        self.epoch = state["epoch"]
        self._resume = (state["epoch"], {int(w): tuple(p) for w, p in state["positions"].items()})

    def __iter__(self) -> Iterator[Batch]:
        worker = get_worker_info()
        worker_id = worker.id if worker is not None else 0
        after = None
        if self._resume is not None and self._resume[0] == self.epoch:
            after = self._resume[1].get(worker_id)
        return self._batches(worker_id, after)

    def _batches(self, worker_id: int, after: tuple[int, int] | None) -> Iterator[Batch]:
        stream = self.stream
        if self.shuffle:  # same seed on every rank: all ranks read the same order
            stream = stream.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            stream.set_epoch(self.epoch)
        start_buffer, start_batch = (after[0], after[1] + 1) if after is not None else (0, 0)
        buffer: list[tuple[str, str]] = []
        counts = {"empty": 0, "too long": 0, "left over": 0}
        number = 0  # of the buffer, in this worker's part of the stream

        def deal() -> Iterator[Batch]:
            if number >= start_buffer:  # earlier buffers were trained on before a resume
                skip = start_batch if number == start_buffer else 0
                yield from self._deal(buffer, [worker_id, number], counts, skip)

        for src, tgt in self.reader.pairs(stream):
            if not (src.strip() and tgt.strip()):
                counts["empty"] += 1
                continue
            buffer.append((src, tgt))
            if len(buffer) == self.buffer_size:
                yield from deal()
                buffer, number = [], number + 1
        if buffer:
            yield from deal()
        if any(counts.values()):
            log.warning("%s, epoch %d: skipped %s", self.reader.where, self.epoch, counts)

    def _deal(
        self, buffer: list[tuple[str, str]], key: list[int], counts: dict, skip: int = 0
    ) -> Iterator[Batch]:
        """Batches of one buffer, this rank's share (same count on every rank), from the ``skip``-th."""
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
        for number, batch in enumerate(shard_batches(batches, self.num_replicas, self.rank)):
            if number < skip:
                continue
            if self.sample_alpha:  # subword regularization: resample this batch's segmentation
                src = src_tok.encode([buffer[i][0] for i in batch], self.sample_alpha)
                tgt = tgt_tok.encode([buffer[i][1] for i in batch], self.sample_alpha)
            else:
                src, tgt = [src_ids[i] for i in batch], [tgt_ids[i] for i in batch]
            out = collate(src, tgt, [offset + i for i in batch])
            out.position = (key[0], key[1], number)
            yield out


class EpochDataLoader(DataLoader):
    """The DataLoader of ``StreamingBatches``: tells it the epoch before each pass, and is saved
    in checkpoints and restored by Lightning (it keeps ``state_dict()`` of stateful train loaders).

    Lightning calls ``set_epoch`` only on samplers, and an iterable dataset has none; setting
    it here, before the workers start, lets every worker see the new epoch. The state names,
    for every worker, the last batch that finished a training step (``progress``: the epoch and
    the number of its batches trained on); workers and Lightning fetch batches ahead of that.
    """

    def __init__(self, dataset: StreamingBatches, progress: Callable[[], tuple[int, int]], **kwargs):
        super().__init__(dataset, batch_size=None, **kwargs)
        self.progress = progress
        self._resume: dict[str, Any] | None = None
        self._base, self._yielded = 0, 0  # batches trained on before this pass / yielded by it
        self._taken: dict[int, tuple[int, int]] = {}  # worker -> (buffer, batch) surely trained on
        self._recent: deque[tuple[int, int, int]] = deque()  # positions yielded, maybe in flight

    def __iter__(self):
        epoch = self.progress()[0]
        self.dataset.set_epoch(epoch)
        self._base, self._yielded, self._taken, self._recent = 0, 0, {}, deque()
        if self._resume is not None and self._resume["epoch"] == epoch:
            self._base = self._resume["batches"]
            self._taken = {int(w): tuple(p) for w, p in self._resume["positions"].items()}
        iterator = super().__iter__()  # the dataset (and copies in workers) took the resume point
        self._resume = self.dataset._resume = None
        return self._track(iterator)

    def _track(self, iterator: Iterator[Batch]) -> Iterator[Batch]:
        for batch in iterator:
            self._recent.append(batch.position)
            if len(self._recent) > 256:  # far more than anything fetches ahead: trained on
                worker, buffer, number = self._recent.popleft()
                self._taken[worker] = (buffer, number)
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        epoch, consumed = self.progress()
        taken = dict(self._taken)
        in_flight = self._base + self._yielded - consumed  # fetched, not trained on
        recent = list(self._recent)
        for worker, buffer, number in recent[: max(0, len(recent) - in_flight)]:
            taken[worker] = (buffer, number)
        return {"seed": self.dataset.seed, "epoch": epoch, "batches": consumed, "positions": taken}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
        if state["seed"] == self.dataset.seed:  # else the dataset starts the epoch over
            self._resume = state
