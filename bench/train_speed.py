"""Training throughput in target tokens per second, fused vs step-by-step decoder.

    python bench/train_speed.py                      # reference size on Multi30k de->en
    python bench/train_speed.py --steps 30 --variants fused steps

Reference size (the JoeyNMT comparison): embeddings 256, bidirectional GRU encoder 2 x 256,
GRU decoder 512 with attention, batch 64 sentences, SentencePiece unigram 6000 per language.
Each variant runs warm-up steps, then times full optimizer steps (forward, backward, clip, AdamW).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from matmul_peak import matmul_peak
from torch.utils.flop_counter import FlopCounterMode

from seq2seq.data import TranslationDataModule
from seq2seq.module import TranslationModule

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "fused": {"attention": "general", "input_feeding": False},  # the default decoder
    "steps": {"attention": "additive", "input_feeding": True},  # Bahdanau scoring, input feeding
    "steps-luong": {"attention": "general", "input_feeding": True},
}


def measure(
    dm: TranslationDataModule, variant: str, steps: int, warmup: int, threads: int, tie: bool
) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    module = TranslationModule(
        dm.src_vocab_size, dm.tgt_vocab_size, dropout=0.3, tie_embeddings=tie, **VARIANTS[variant]
    )
    module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    loader = iter(dm.train_dataloader())
    rates, flop_rates = [], []
    for i in range(warmup + steps):
        batch = next(loader)
        start = time.perf_counter()
        loss = module.loss(batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        seconds = time.perf_counter() - start
        if i >= warmup:
            rates.append(batch.num_tgt_tokens / seconds)
            flop_rates.append(count_flops(module, batch) / seconds)
    return {
        "variant": variant,
        "median_tok_s": statistics.median(rates),
        "median_gflop_s": statistics.median(flop_rates) / 1e9,
        "steps": steps,
    }


def count_flops(module: TranslationModule, batch) -> int:
    """Matrix-multiply FLOPs of one forward + backward pass (counted by torch, not timed)."""
    counter = FlopCounterMode(display=False)
    with counter:
        module.loss(batch).backward()
    module.zero_grad()
    return counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--source", default=os.environ.get("SEQ2SEQ_MULTI30K_DIR", str(ROOT / "data" / "multi30k"))
    )
    p.add_argument("--src-lang", default="de")
    p.add_argument("--tgt-lang", default="en")
    p.add_argument("--batch-sentences", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument(
        "--tie",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tie target embeddings and output weights (our default)",
    )
    p.add_argument("--variants", nargs="+", default=["fused", "steps"], choices=sorted(VARIANTS))
    args = p.parse_args()
    dm = TranslationDataModule(
        args.source, args.src_lang, args.tgt_lang, spm_vocab_size=6000,
        max_tokens=10**9, max_sentences=args.batch_sentences,
    )  # fmt: skip
    results = [measure(dm, v, args.steps, args.warmup, args.threads, args.tie) for v in args.variants]
    peak = matmul_peak(threads=args.threads)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s ({args.threads} threads)")
    for r in results:
        print(
            f"{r['variant']:12s} median target tokens/s: {r['median_tok_s']:.0f} (over {r['steps']} steps, "
            f"batch {args.batch_sentences} sentences, {args.threads} threads); "
            f"{r['median_gflop_s']:.1f} GFLOP/s = {100 * r['median_gflop_s'] / peak:.0f}% of peak (MFU)"
        )
    if len(results) > 1:
        print(
            f"ratio {results[0]['variant']}/{results[1]['variant']}: "
            f"{results[0]['median_tok_s'] / results[1]['median_tok_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
