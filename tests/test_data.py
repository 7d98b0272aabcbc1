"""Data module: SentencePiece options and cache, token-budget batches sharded over DDP ranks,
subword regularization, streaming mode, and padding on Multi30k."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import MULTI30K
from lightning.pytorch import Trainer
from lightning.pytorch.trainer.states import RunningStage
from torch.utils.data import DataLoader

from seq2seq.batching import TokenBatchSampler, make_batches, padding_stats
from seq2seq.cli import train_main
from seq2seq.corpus import generate_pairs
from seq2seq.data import TranslationDataModule
from seq2seq.sources import CorpusError
from seq2seq.streaming import StreamingBatches
from seq2seq.tokenizer import EOS_ID, LIST_CALL_MIN, PAD_ID, UNK_ID, Tokenizer

datasets.disable_progress_bars()
TINY = {"source": "builtin", "src_lang": "en", "tgt_lang": "fr", "builtin_sizes": (600, 40, 40),
        "spm_vocab_size": 150}  # fmt: skip


def tiny(cache: Path, **overrides) -> TranslationDataModule:
    return TranslationDataModule(**(TINY | {"cache_dir": str(cache)} | overrides))


def sentences(dm: TranslationDataModule, ids: torch.Tensor, side: str = "src") -> list[str]:
    """Decode a padded (batch, len) id tensor back to text (EOS and padding stripped)."""
    tok = dm.src_tokenizer if side == "src" else dm.tgt_tokenizer
    rows = [[i for i in row if i not in (PAD_ID, EOS_ID)] for row in ids.tolist()]
    return tok.decode(rows)


# -- SentencePiece options and the cache ---------------------------------------------------------
def test_tokenizer_answers_lists_of_any_length_as_sentencepiece_list_calls_do() -> None:
    """Short lists go one string at a time (tokenizer.py): the same ids and texts as one list call."""
    pairs = generate_pairs("en", "fr", 300)
    tok = Tokenizer.train([s for s, _ in pairs], vocab_size=150)
    texts = ["", "  two  spaces ", "ж ü unknown"] + [s for s, _ in pairs]
    for n in (1, 3, 5, LIST_CALL_MIN - 1, LIST_CALL_MIN, 200):
        ids = tok.encode(texts[:n])
        assert ids == tok.sp.encode(texts[:n])
        assert tok.decode(ids) == tok.sp.decode(ids)
    assert tok.encode([]) == tok.decode([]) == []


def test_joint_and_separate_vocabularies(tmp_path: Path) -> None:
    separate, joint = tiny(tmp_path), tiny(tmp_path, joint_vocab=True)
    assert separate.src_tokenizer.model_proto != separate.tgt_tokenizer.model_proto
    assert joint.src_tokenizer.model_proto == joint.tgt_tokenizer.model_proto
    french = joint.tgt_tokenizer.encode(["mille deux cent"])[0]
    assert UNK_ID not in french and UNK_ID not in joint.src_tokenizer.encode(["thousand"])[0]


def test_vocab_size_model_type_and_byte_fallback(tmp_path: Path) -> None:
    unigram, bpe = (
        tiny(tmp_path, spm_vocab_size=80),
        tiny(tmp_path, spm_vocab_size=80, spm_model_type="bpe"),
    )
    assert unigram.src_vocab_size == bpe.src_vocab_size == 80
    scores = [bpe.src_tokenizer.sp.get_score(i) for i in range(4, 80)]
    assert all(s == int(s) for s in scores)  # BPE scores are merge ranks; unigram: log-probs
    assert any(unigram.src_tokenizer.sp.get_score(i) != int(unigram.src_tokenizer.sp.get_score(i)) for i in range(4, 80))  # fmt: skip
    plain, fallback = (
        tiny(tmp_path, spm_vocab_size=400),
        tiny(tmp_path, spm_vocab_size=400, byte_fallback=True),
    )
    assert plain.src_tokenizer.encode(["ж"])[0][-1] == UNK_ID
    pieces = fallback.src_tokenizer.pieces(fallback.src_tokenizer.encode(["ж"])[0])
    assert pieces[-2:] == ["<0xD0>", "<0xB6>"]  # UTF-8 bytes of "ж" instead of <unk>
    assert fallback.src_tokenizer.decode([fallback.src_tokenizer.encode(["ж"])[0]]) == ["ж"]


def test_impossible_vocabulary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"spm_vocab_size=20.*Vocabulary size is smaller than required_chars"):  # fmt: skip
        tiny(tmp_path, spm_vocab_size=20)


def write_random_text(root: Path, size: int, seed: int = 0) -> str:
    """Line-aligned train/dev files of random words from a syllable inventory (fast to write)."""
    rnd = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    root.mkdir()
    for split, n in (("train", size), ("dev", 50)):
        for lang in ("xx", "yy"):
            lines = (" ".join("".join(rnd.choices(syllables, k=rnd.randint(1, 3)))
                              for _ in range(rnd.randint(2, 9))) for _ in range(n))  # fmt: skip
            (root / f"{split}.{lang}").write_text("\n".join(lines) + "\n")
    return str(root)


def test_cache_makes_the_second_start_fast_and_identical(tmp_path: Path) -> None:
    args = {"source": write_random_text(tmp_path / "corpus", 1500), "src_lang": "xx",
            "tgt_lang": "yy", "spm_vocab_size": 300, "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    start = time.perf_counter()
    first = TranslationDataModule(**args)
    first_s = time.perf_counter() - start
    files = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    assert len([f for f in files if f.startswith("spm-")]) == 2
    assert len([f for f in files if f.startswith("data-")]) == 1
    start = time.perf_counter()
    second = TranslationDataModule(**args)
    second_s = time.perf_counter() - start
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == files
    assert second.src_tokenizer.model_proto == first.src_tokenizer.model_proto
    for split in first.splits:
        np.testing.assert_array_equal(first.splits[split].src_val, second.splits[split].src_val)
        np.testing.assert_array_equal(first.splits[split].tgt_off, second.splits[split].tgt_off)
    assert second_s < first_s / 2, (first_s, second_s)
    TranslationDataModule(**args | {"spm_vocab_size": 250})  # other settings: other entries
    assert len(list((tmp_path / "cache").glob("spm-*"))) == 4


# -- token-budget batches and DDP sharding -------------------------------------------------------
@pytest.fixture(scope="module")
def lengths() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    src = rng.integers(1, 60, size=2001)
    return src, np.clip(src + rng.integers(-5, 6, size=src.size), 1, None)


def test_batches_respect_the_budget_and_filter(lengths) -> None:
    src, tgt = lengths
    keep = (src <= 50) & (tgt <= 50)
    batches = make_batches(src, tgt, 600, 32, np.random.default_rng(0), keep)
    flat = sorted(i for b in batches for i in b)
    assert flat == np.flatnonzero(keep).tolist()
    cost = np.maximum(src, tgt) + 1
    assert all(len(b) <= 32 and cost[b].max() * len(b) <= 600 for b in batches)
    bucketed = padding_stats(batches, src, tgt)["total"]
    unsorted = [list(b) for b in np.array_split(np.flatnonzero(keep), len(batches))]
    assert bucketed < 0.1 < padding_stats(unsorted, src, tgt)["total"]


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_cover_the_data_once_with_equal_batch_counts(lengths, ranks: int) -> None:
    src, tgt = lengths
    keep = src <= 55
    samplers = [TokenBatchSampler(src, tgt, 500, 40, seed=7, num_replicas=ranks, rank=r, keep=keep)
                for r in range(ranks)]  # fmt: skip
    orders = {}
    for epoch in (0, 1):
        per_rank = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            per_rank.append(list(sampler))
        assert len({len(batches) for batches in per_rank}) == 1  # same count on every rank
        assert len(samplers[0]) == len(per_rank[0])
        seen = [i for batches in per_rank for b in batches for i in b]
        assert sorted(seen) == np.flatnonzero(keep).tolist()  # every example exactly once
        orders[epoch] = per_rank[0]
    assert orders[0] != orders[1]  # a fresh shuffle each epoch
    again = TokenBatchSampler(src, tgt, 500, 40, seed=7, num_replicas=ranks, rank=0, keep=keep)
    again.set_epoch(1)
    assert list(again) == orders[1]  # ... and a deterministic one


def test_lightning_ddp_keeps_the_token_batch_sampler(tmp_path: Path) -> None:
    """TokenBatchSampler is a DistributedSampler, so Lightning's DDP setup must not replace it."""
    dm = tiny(tmp_path)
    trainer = Trainer(strategy="ddp", devices=2, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip
    assert trainer.world_size == 2
    dm.trainer = trainer
    for loader, mode in ((dm.train_dataloader(), RunningStage.TRAINING),
                         (dm.val_dataloader(), RunningStage.VALIDATING)):  # fmt: skip
        prepared = trainer._data_connector._prepare_dataloader(loader, shuffle=True, mode=mode)
        assert prepared.sampler is loader.sampler
        assert (prepared.sampler.num_replicas, prepared.sampler.rank) == (2, 0)


def test_validation_is_sharded_but_complete(tmp_path: Path) -> None:
    dm = tiny(tmp_path)
    n = len(dm.splits["validation"])
    seen = []
    for rank in (0, 1):
        dm._rank = lambda rank=rank: (2, rank)
        seen += [i for batch in dm.val_dataloader() for i in batch.index.tolist()]
    assert sorted(seen) == list(range(n))


# -- subword regularization ---------------------------------------------------------------------
def test_sampling_changes_training_segmentations_only(tmp_path: Path) -> None:
    dm = tiny(tmp_path, sample_alpha=0.2)
    train = dm.train_dataloader()

    def segmentations(loader: DataLoader) -> dict[int, tuple[int, ...]]:
        return {i: tuple(row[row != PAD_ID].tolist()) for b in loader for i, row in zip(b.index.tolist(), b.src, strict=True)}  # fmt: skip

    first, second = segmentations(train), segmentations(train)
    assert first.keys() == second.keys()
    changed = sum(first[i] != second[i] for i in first)
    assert changed > len(first) // 4
    texts = dm.splits["train"].texts_src
    i = next(iter(first))
    assert sentences(dm, torch.tensor([first[i]])) == [texts[i]]  # a valid segmentation of it
    val = dm.val_dataloader()
    cached = dm.splits["validation"]
    val_a, val_b = segmentations(val), segmentations(val)
    assert val_a == val_b
    assert all(list(ids[:-1]) == cached.src(i).tolist() for i, ids in val_a.items())


# -- streaming ----------------------------------------------------------------------------------
def write_hub_shards(root: Path, pairs: list[tuple[str, str]], shards: int = 2) -> str:
    """A hub-layout directory with the train split in several JSON Lines shards (WMT layout).

    (Parquet shards would work the same, but datasets sleeps 5 s after each shuffled pass
    over several Parquet shards, apache/arrow#45214.)
    """
    (root / "data").mkdir(parents=True)
    parts = {f"train-{k:05d}-of-{shards:05d}": part for k, part in enumerate(np.array_split(pairs, shards))}
    parts["validation-00000-of-00001"] = pairs[:20]
    for name, part in parts.items():
        rows = [json.dumps({"translation": {"en": str(s), "fr": str(t)}}) for s, t in part]
        (root / "data" / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    return str(root)


@pytest.fixture(scope="module")
def stream_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[tuple[str, str]]]:
    from seq2seq.corpus import generate_pairs

    pairs = generate_pairs("en", "fr", 500, seed=5) + [("  ", "vide")]
    return write_hub_shards(tmp_path_factory.mktemp("stream"), pairs), pairs[:-1]


def _stream_dm(source: str, cache: Path, **overrides) -> TranslationDataModule:
    args = {"source": source, "src_lang": "en", "tgt_lang": "fr", "spm_vocab_size": 150,
            "streaming": True, "stream_buffer_size": 64, "stream_shuffle_buffer": 50,
            "max_tokens": 300, "cache_dir": str(cache)}  # fmt: skip
    return TranslationDataModule(**(args | overrides))


def _stream_rank(dm: TranslationDataModule, rank: int, ranks: int, epoch: int, workers: int = 0):
    """Source sentences of each batch one rank would get."""
    hp = dm.hparams
    dataset = StreamingBatches(
        dm.train_stream, dm.reader, (dm.src_tokenizer, dm.tgt_tokenizer), hp.max_tokens,
        hp.max_sentences, hp.max_length, hp.stream_buffer_size, hp.stream_shuffle_buffer,
        seed=hp.seed, num_replicas=ranks, rank=rank,
    )  # fmt: skip
    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    return [sentences(dm, batch.src) for batch in loader]


def test_streaming_batches_cover_the_corpus(stream_corpus, tmp_path: Path) -> None:
    source, pairs = stream_corpus
    dm = _stream_dm(source, tmp_path)
    assert "train" not in dm.splits and len(dm.references("validation")) == 20
    batches = list(dm.train_dataloader())
    assert all(b.src.size(0) * b.src.size(1) <= 300 for b in batches if b.src.size(0) > 1)
    got = Counter(s for b in batches for s in sentences(dm, b.src))
    assert got == Counter(s for s, _ in pairs)
    tgt = Counter(t for b in batches for t in sentences(dm, b.tgt_out, "tgt"))
    assert tgt == Counter(t for _, t in pairs)


def test_streaming_ranks_and_workers_are_disjoint_and_even(stream_corpus, tmp_path: Path) -> None:
    source, pairs = stream_corpus
    dm = _stream_dm(source, tmp_path)
    runs = {}
    for epoch, workers in ((0, 0), (1, 0), (1, 2)):
        ranks = [_stream_rank(dm, rank, 2, epoch, workers) for rank in (0, 1)]
        assert len(ranks[0]) == len(ranks[1])  # equal batch counts: DDP cannot hang
        seen = [Counter(s for b in batches for s in b) for batches in ranks]
        assert not set(seen[0]) & set(seen[1])  # disjoint
        assert seen[0] + seen[1] == Counter(s for s, _ in pairs)  # and complete
        runs[epoch, workers] = ranks[0]
    assert runs[0, 0] != runs[1, 0]  # each epoch shuffles anew
    assert _stream_rank(dm, 0, 2, 1) == runs[1, 0]  # deterministically


def test_streaming_sentencepiece_learns_from_the_first_sentences(tmp_path: Path) -> None:
    root = tmp_path / "text"
    root.mkdir()
    early = [f"one two three {i}" for i in range(60)]
    late = ["ζζζ ωωω"] * 10
    (root / "train.en").write_text("\n".join(early + late) + "\n")
    (root / "train.fr").write_text("\n".join(f"un deux {i}" for i in range(70)) + "\n")
    (root / "dev.en").write_text("one\n")
    (root / "dev.fr").write_text("un\n")
    dm = _stream_dm(str(root), tmp_path / "cache", spm_vocab_size=30, spm_train_sentences=60)
    assert UNK_ID in dm.src_tokenizer.encode(["ζζζ"])[0]
    full = _stream_dm(str(root), tmp_path / "cache", spm_vocab_size=30, spm_train_sentences=70)
    assert UNK_ID not in full.src_tokenizer.encode(["ζζζ"])[0]


def test_streaming_bad_input(tmp_path: Path) -> None:
    root = tmp_path / "text"
    root.mkdir()
    (root / "train.en").write_text("a\nb\nc\n")
    (root / "train.fr").write_text("x\ny\n")
    (root / "dev.en").write_text("a\n")
    (root / "dev.fr").write_text("x\n")
    with pytest.raises(CorpusError, match=r"train\.fr ends after line 2, .*train\.en goes on"):
        _stream_dm(str(root), tmp_path / "cache")
    with pytest.raises(CorpusError, match=r"no column 'de' \(record has \['en', 'fr'\]\)"):
        _stream_dm(str(root), tmp_path / "cache", src_column="de")


def test_streaming_trains_through_the_cli(tmp_path: Path) -> None:
    """Lightning accepts the streaming loader (no sampler injected, epoch set, batches run)."""
    from conftest import tiny_train_args

    cli = train_main(tiny_train_args(tmp_path, "--data.streaming=true", "--data.stream_buffer_size=200",
                                     "--trainer.max_epochs=2", "--trainer.limit_val_batches=1",
                                     "--data.builtin_sizes=[400, 20, 20]"))  # fmt: skip
    assert cli.trainer.current_epoch == 2
    assert cli.trainer.train_dataloader.dataset.epoch == 1  # set from the trainer
    assert cli.trainer.global_step >= 2


# -- Multi30k: start-up with the cache, padding with bucketing ------------------------------------
@pytest.mark.skipif(not MULTI30K.is_dir(), reason="Multi30k not present")
def test_multi30k_cache_and_padding(tmp_path: Path) -> None:
    args = {"source": str(MULTI30K), "src_lang": "de", "tgt_lang": "en", "spm_vocab_size": 6000,
            "max_length": 80, "max_tokens": 1600, "max_sentences": 64, "cache_dir": str(tmp_path)}  # fmt: skip
    start = time.perf_counter()
    first = TranslationDataModule(**args)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    dm = TranslationDataModule(**args)
    second_s = time.perf_counter() - start
    print(f"Multi30k de-en vocab 6000 start-up: first {first_s:.1f}s, second {second_s:.1f}s")
    assert {k: len(v) for k, v in dm.splits.items()} == {
        "train": 29000,
        "validation": 1014,
        "test": 1000,
    }
    assert dm.src_vocab_size == dm.tgt_vocab_size == 6000
    np.testing.assert_array_equal(first.splits["train"].src_val, dm.splits["train"].src_val)
    assert second_s < min(10.0, first_s / 3)
    train = dm.splits["train"]
    sampler = dm.train_dataloader().sampler
    stats = padding_stats(list(sampler), train.src_lengths, train.tgt_lengths)
    print(f"Multi30k train padding with bucketing: {stats}")
    assert stats["total"] < 0.10 and stats["src"] < 0.10 and stats["tgt"] < 0.10
