"""Decoding speed and quality together: sentences per second and BLEU/chrF, greedy vs beam.

    python bench/decode_speed.py --checkpoint runs/.../best.ckpt                 # Multi30k test_2016_flickr
    python bench/decode_speed.py --checkpoint model.ckpt --quantize none int8 --threads 2

The test set is the checkpoint's source language of ``--data`` (1000 sentences for Multi30k
test_2016_flickr). Each configuration first translates a few sentences untimed (warm-up), then
times ``Translator.translate`` over the whole set: batching, search and detokenization, not
model loading. The project goal is beam 5 over these 1000 sentences in under 20 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from seq2seq.commands import evaluate
from seq2seq.sources import load_corpus
from seq2seq.translator import Translator

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("SEQ2SEQ_MULTI30K_DIR", ROOT / "data" / "multi30k"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=str(MULTI30K), help="corpus for seq2seq.sources.load_corpus")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--beams", type=int, nargs="+", default=[1, 5], help="beam sizes (1 = greedy)")
    p.add_argument("--quantize", nargs="+", default=["none"], choices=["none", "int8"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=4096, help="source subwords per batch")
    p.add_argument("--max-length", type=int, default=200)
    p.add_argument("--length-penalty", type=float, default=None, help="default: the model's own")
    p.add_argument("--limit", type=int, help="only the first N sentences")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for quantize in args.quantize:
        translator = Translator.from_checkpoint(args.checkpoint, quantize=quantize)
        test = load_corpus(args.data, translator.src_lang, translator.tgt_lang)[args.split]
        sources, references = list(test["src"]), list(test["tgt"])
        if args.limit:
            sources, references = sources[: args.limit], references[: args.limit]
        for beam in args.beams:
            kwargs = {"beam_size": beam, "max_tokens": args.max_tokens, "max_length": args.max_length,
                      "length_penalty": args.length_penalty}  # fmt: skip
            translator.translate(sources[:32], **kwargs)  # warm-up: allocator, threads, caches
            result = evaluate(translator, sources, references, **kwargs)
            rows.append(
                {
                    "quantize": quantize,
                    "beam": beam,
                    **{k: v for k, v in result.items() if k != "hypotheses"},
                }
            )

    name = f"{translator.src_lang}->{translator.tgt_lang} {args.data} [{args.split}]"
    print(f"\n{name}: {rows[0]['sentences']} sentences, {args.threads} threads, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")  # fmt: skip
    print(f"{'weights':>8} {'beam':>5} {'seconds':>8} {'sent/s':>8} {'BLEU':>6} {'chrF':>6}")
    for r in rows:
        print(f"{r['quantize']:>8} {r['beam']:>5} {r['seconds']:>8.2f} {r['sentences_per_second']:>8.1f} "
              f"{r['bleu']:>6.2f} {r['chrf']:>6.2f}")  # fmt: skip
    print(f"BLEU {rows[0]['bleu_signature']}\nchrF {rows[0]['chrf_signature']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
