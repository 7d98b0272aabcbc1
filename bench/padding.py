"""Padding share of the training batches on Multi30k, with and without length bucketing.

    python bench/padding.py                          # configs/multi30k_de_en.yaml's data settings
    python bench/padding.py --max-tokens 3000
    python bench/padding.py --config configs/default.yaml   # the built-in task

Length bucketing sorts the pairs by length (ties broken at random) and cuts the sorted list into
batches under the token budget; the comparison is random order cut into batches of the same
median size. Padding is counted in the tensors the model sees (source with EOS, target with BOS),
over one epoch of training batches, as a share of all positions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from seq2seq.batching import make_batches, padding_stats
from seq2seq.data import TranslationDataModule

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "multi30k_de_en.yaml"))
    parser.add_argument("--max-tokens", type=int, help="override the config's data.max_tokens")
    parser.add_argument("--source", help="override the config's data.source, e.g. $SEQ2SEQ_MULTI30K_DIR")
    parser.add_argument("--cache-dir", help="tokenizer/id cache (default: the usual one)")
    args = parser.parse_args()

    data = yaml.safe_load(Path(args.config).read_text())["data"]
    if args.source:
        data["source"] = args.source
    source = Path(data["source"])
    if not source.is_absolute() and (ROOT / source).exists():  # config paths are relative to the repo
        data["source"] = str(ROOT / source)
    dm = TranslationDataModule(**data, cache_dir=args.cache_dir)
    split = dm.splits["train"]
    hp = dm.hparams
    max_tokens = args.max_tokens or hp.max_tokens
    keep = (split.src_lengths <= hp.max_length) & (split.tgt_lengths <= hp.max_length)
    print(f"{dm.name} train: {int(keep.sum())} pairs, max_tokens {max_tokens}, "
          f"max_sentences {hp.max_sentences}, vocab {dm.src_vocab_size}/{dm.tgt_vocab_size}")  # fmt: skip
    rng = np.random.default_rng(0)
    bucketed = make_batches(split.src_lengths, split.tgt_lengths, max_tokens, hp.max_sentences, rng, keep)
    # no bucketing: shuffled and cut in order into batches of the bucketed median size
    order = rng.permutation(np.flatnonzero(keep))
    size = int(np.median([len(b) for b in bucketed]))
    unsorted = [order[i : i + size].tolist() for i in range(0, len(order), size)]
    for label, batches in (("bucketed", bucketed), ("random order", unsorted)):
        stats = padding_stats(batches, split.src_lengths, split.tgt_lengths)
        print(f"{label:>13}: {len(batches)} batches, padding src {stats['src']:.1%}, "
              f"tgt {stats['tgt']:.1%}, total {stats['total']:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
