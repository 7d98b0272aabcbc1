"""Streaming training on corpora of millions of pairs: start-up time, throughput and peak memory.

    python bench/scale_data.py                                   # 0.5 M, 1 M and 5 M pairs, Multi30k repeated
    python bench/scale_data.py --sizes 500000 --steps 20 --corpus builtin
    python bench/scale_data.py --sizes 500000 5000000 --data-dir corpora/scale --keep

For each size it writes a synthetic corpus as Parquet shards (``data/train-KKKKK-of-NNNNN.parquet``,
``--shard-size`` pairs each, written one shard at a time): the base corpus (Multi30k de-en train, or
the built-in task) repeated, each copy's sentences prefixed with its copy number so that no pair
repeats. Then, in a fresh process per size, it measures the streaming path (``data.streaming=true``):

- set-up: open the shards, train SentencePiece on the first ``--spm-sentences`` pairs, read validation;
- tokenization: one pass over ``--tokenize-pairs`` pairs (default: the whole corpus) through
  ``StreamingBatches`` (read, tokenize, bucket, batch), no model: pairs/s;
- training: ``--steps`` optimizer steps of the Multi30k reference model with Lightning, reading
  the stream: time to the first batch and median target tokens/s;
- peak RSS of the process (``ru_maxrss``), and RSS and peak so far after each phase.

The corpus is read record by record, so peak memory must not grow with the corpus size (beyond
the 10 shards ``datasets`` reads at once to shuffle: compare sizes of 10 shards or more).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("SEQ2SEQ_MULTI30K_DIR", ROOT / "data" / "multi30k"))
SRC, TGT = "de", "en"


def base_pairs(corpus: str, split: str) -> tuple[list[str], list[str]]:
    """The base corpus that is repeated: Multi30k de-en (train or val), or the built-in task."""
    if corpus == "builtin":
        from seq2seq.corpus import generate_pairs

        pairs = generate_pairs(
            "en", "fr", 29000 if split == "train" else 1000, seed=0 if split == "train" else 1
        )
        return [s for s, _ in pairs], [t for _, t in pairs]
    name = "train" if split == "train" else "val"
    return tuple(gzip.open(MULTI30K / f"{name}.{lang}.gz", "rt").read().splitlines() for lang in (SRC, TGT))


def write_corpus(root: Path, corpus: str, size: int, shard_size: int) -> None:
    """``size`` training pairs in Parquet shards, one shard in memory at a time, plus validation."""
    if (root / "done").is_file():
        return
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    src, tgt = base_pairs(corpus, "train")
    shards = -(-size // shard_size)
    for k in range(shards):
        rows = range(k * shard_size, min(size, (k + 1) * shard_size))
        copy = [i // len(src) for i in rows]
        columns = {
            SRC: [f"{c} {src[i % len(src)]}" for c, i in zip(copy, rows, strict=True)],
            TGT: [f"{c} {tgt[i % len(tgt)]}" for c, i in zip(copy, rows, strict=True)],
        }
        pq.write_table(pa.table(columns), data / f"train-{k:05d}-of-{shards:05d}.parquet")
    val_src, val_tgt = base_pairs(corpus, "validation")
    pq.write_table(pa.table({SRC: val_src, TGT: val_tgt}), data / "validation-00000-of-00001.parquet")
    (root / "done").write_text(f"{size}\n")


def rss_mib() -> tuple[float, float]:
    """This process's resident memory now and its peak so far, in MiB."""
    now = next(
        line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:")
    )
    return int(now.split()[1]) / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timing(pl.Callback):
    """Wall time from the start of fit (before the loader exists) to the first batch, and target
    tokens/s of each step (forward, backward, optimizer; not the wait for data)."""

    def on_fit_start(self, trainer, pl_module) -> None:
        self.start, self.first_batch, self.rates = time.perf_counter(), None, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self.first_batch is None:
            self.first_batch = now - self.start
        self.step_start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.rates.append(batch.num_tgt_tokens / (time.perf_counter() - self.step_start))


def measure(args: argparse.Namespace) -> dict:
    """One size, in this (fresh) process: set-up, a tokenization pass, then training steps."""
    import torch

    from seq2seq.data import TranslationDataModule
    from seq2seq.module import TranslationModule
    from seq2seq.streaming import StreamingBatches

    torch.set_num_threads(args.threads)
    config = yaml.safe_load((ROOT / "configs" / "multi30k_de_en.yaml").read_text())
    data = config["data"] | {"source": args.measure, "src_lang": SRC, "tgt_lang": TGT, "streaming": True,
                             "spm_train_sentences": args.spm_sentences}  # fmt: skip
    result, start = {"rss_mib": {}}, time.perf_counter()
    dm = TranslationDataModule(**data, cache_dir=args.cache_dir)
    result["setup_s"] = time.perf_counter() - start
    result["rss_mib"]["setup"] = rss_mib()

    hp, pairs, start = dm.hparams, 0, time.perf_counter()
    stream = StreamingBatches(
        dm.train_stream, dm.reader, (dm.src_tokenizer, dm.tgt_tokenizer), hp.max_tokens,
        hp.max_sentences, hp.max_length, hp.stream_buffer_size, hp.stream_shuffle_buffer,
    )  # fmt: skip
    for batch in stream:
        pairs += batch.src.size(0)
        if args.tokenize_pairs and pairs >= args.tokenize_pairs:
            break
    result["tokenize_pairs"], result["tokenize_s"] = pairs, time.perf_counter() - start
    result["rss_mib"]["tokenize"] = rss_mib()

    model = TranslationModule(
        dm.src_vocab_size, dm.tgt_vocab_size, **(config["model"] | {"scheduler": "none"})
    )
    timing = Timing()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=args.steps, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        gradient_clip_val=1.0, callbacks=[timing],
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    result["first_batch_s"] = timing.first_batch
    result["train_tok_s"] = statistics.median(timing.rates[args.warmup :])
    result["rss_mib"]["train"] = rss_mib()
    result["peak_rss_mib"] = result["rss_mib"]["train"][1]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--sizes", type=int, nargs="+", default=[500_000, 1_000_000, 5_000_000], help="training pairs"
    )
    p.add_argument("--corpus", choices=["multi30k", "builtin"], default="multi30k", help="base corpus")
    p.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "seq2seq-scale"))
    p.add_argument("--shard-size", type=int, default=100_000, help="pairs per Parquet shard")
    p.add_argument("--keep", action="store_true", help="keep the corpora (default: delete after)")
    p.add_argument("--steps", type=int, default=60, help="training steps")
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the tokens/s median")
    p.add_argument("--spm-sentences", type=int, default=200_000, help="data.spm_train_sentences")
    p.add_argument("--tokenize-pairs", type=int, default=0, help="pairs in the tokenization pass (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this corpus, print JSON
    args = p.parse_args()
    if args.measure:
        with tempfile.TemporaryDirectory() as cache:  # cold: SentencePiece is trained in every run
            args.cache_dir = cache
            print(json.dumps(measure(args)))
        return

    import shutil

    for size in args.sizes:
        root = Path(args.data_dir) / f"{args.corpus}-{size}"
        start = time.perf_counter()
        write_corpus(root, args.corpus, size, args.shard_size)
        disk = sum(f.stat().st_size for f in root.rglob("*.parquet")) / 2**20
        print(
            f"{size} pairs: {disk:.0f} MiB of Parquet in {root} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        child = [sys.executable, __file__, "--measure", str(root), *sys.argv[1:]]
        out = subprocess.run(child, capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            sys.exit(f"measuring {root} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"  set-up {r['setup_s']:.1f} s (SentencePiece on {args.spm_sentences} pairs); "
            f"tokenization {r['tokenize_pairs'] / r['tokenize_s']:.0f} pairs/s over {r['tokenize_pairs']} pairs "
            f"({r['tokenize_s']:.0f} s); training: first batch after {r['first_batch_s']:.1f} s, "
            f"{r['train_tok_s']:.0f} target tokens/s (median of {args.steps - args.warmup} steps); "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB (RSS, peak so far after set-up / tokenization / "
            "training: " + " / ".join(f"{now:.0f}, {peak:.0f}" for now, peak in r["rss_mib"].values()) + " MiB)",
            flush=True,
        )  # fmt: skip
        if not args.keep:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
