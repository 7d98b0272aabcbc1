"""What the server's batching choices rest on, measured in-process on the Multi30k test sentences.

    python bench/batch_sizes.py --checkpoint model.ckpt [--sentences 160] [--threads 1]

1. ``Translator.translate`` sentences/s in batches of each ``--sizes``, greedy and beam 5: how much
   a batch of half the clients loses against a full one;
2. the encoder's milliseconds per call by batch size: the fixed cost that makes ``GreedyStream``
   admit waiting sentences a few at a time;
3. a closed loop of 16 clients through ``GreedyStream`` and ``BeamStream`` (each sentence that ends
   is replaced by the next, as a client sends its next request) against ``translate`` in batches of 16.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from load import DEFAULT_DATA, read_sentences

from seq2seq.batching import collate
from seq2seq.beam_stream import BeamStream
from seq2seq.stream import GreedyStream
from seq2seq.translator import Translator


def per_second(count: int, run, *args) -> float:
    """Sentences per second of ``run(*args)``, which translates ``count`` sentences."""
    began = time.perf_counter()
    run(*args)
    return round(count / (time.perf_counter() - began), 1)


def in_batches(translator: Translator, texts: list[str], size: int, beam: int) -> None:
    for i in range(0, len(texts), size):
        translator.translate(texts[i : i + size], beam_size=beam)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Multi30k directory")
    p.add_argument("--sentences", type=int, default=160)
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 8, 4, 1])
    p.add_argument("--clients", type=int, default=16, help="the closed loop's clients")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    translator = Translator.from_checkpoint(args.checkpoint)
    texts = read_sentences(args.data, translator.src_lang)[: args.sentences]
    ids = translator.src_tokenizer.encode(texts)
    translator.translate(texts[:16], beam_size=5)  # warm-up
    result: dict = {"sentences": len(texts), "threads": args.threads}

    for beam in (1, 5):
        result[f"beam{beam}_per_s"] = {
            size: per_second(len(texts), in_batches, translator, texts, size, beam) for size in args.sizes
        }
    with torch.inference_mode():
        encode_ms = {}
        for size in args.sizes:
            chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
            batches = [collate(chunk, [[]] * len(chunk), list(range(len(chunk)))) for chunk in chunks]
            began = time.perf_counter()
            for batch in batches:
                translator.model.encode(batch.src, batch.src_lengths)
            encode_ms[size] = round(1000 * (time.perf_counter() - began) / len(batches), 2)
        result["encode_ms_per_call"] = encode_ms

    def closed_loop(beam: int) -> None:
        if beam == 1:
            stream = GreedyStream(translator.model, translator.silent)
        else:
            alpha = translator.default_length_penalty
            stream = BeamStream(translator.model, beam, alpha=alpha, silent=translator.silent)
        sent, ended = 0, 0
        for _ in range(min(args.clients, len(ids))):
            stream.add(sent, ids[sent])
            sent += 1
        while stream:
            for _ in stream.step():
                ended += 1
                if sent < len(ids):
                    stream.add(sent, ids[sent])
                    sent += 1

    result["closed_loop_per_s"] = {
        f"beam{beam}": {
            "stream": per_second(len(texts), closed_loop, beam),
            "batches_of_16": per_second(len(texts), in_batches, translator, texts, 16, beam),
        }
        for beam in (1, 5)
    }
    for beam in (1, 5):
        print(f"beam {beam}: sentences/s by batch size " + ", ".join(
            f"{size}: {v}" for size, v in result[f"beam{beam}_per_s"].items()))  # fmt: skip
    print("encoder ms per call by batch size: " + ", ".join(f"{s}: {v}" for s, v in encode_ms.items()))
    for beam, loop in result["closed_loop_per_s"].items():
        print(f"closed loop of {args.clients} clients, {beam}: stream {loop['stream']} sentences/s, "
              f"translate in batches of 16 {loop['batches_of_16']}")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
