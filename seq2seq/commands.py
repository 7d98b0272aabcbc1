"""The ``translate``, ``evaluate`` and ``plot_attention`` commands (scripts/*.py, seq2seq-* scripts).

    seq2seq-translate --checkpoint model.ckpt < input.de > output.en
    seq2seq-evaluate --checkpoint model.ckpt --src test.de.gz --ref test.en.gz
    seq2seq-evaluate --checkpoint model.ckpt --data data/multi30k --split test
    python scripts/plot_attention.py --checkpoint model.ckpt --text "Ein Hund rennt." --output att.png

Every bad input (missing file, bad checkpoint, undecodable line, contradictory options) ends
in one ``error: ...`` line on stderr naming the culprit and exit status 2.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from seq2seq.search import MAX_RATIO
from seq2seq.translator import CheckpointError, Translator


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


def run(
    main: Callable[[argparse.Namespace], None],
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
) -> None:
    """Parse ``argv`` and run ``main``, turning known errors into ``error: ...`` and exit 2."""
    args = parser.parse_args(argv)
    try:
        main(args)
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
    except Exception as e:
        from seq2seq.sources import CorpusError  # imported here: it pulls in datasets

        if not isinstance(e, (CommandError, CheckpointError, CorpusError, ValueError)):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


# -- shared options and I/O ----------------------------------------------------------------------
def add_model_args(p: argparse.ArgumentParser, beam_size: int) -> None:
    p.add_argument("--checkpoint", required=True, help="a .ckpt written by seq2seq-train")
    p.add_argument("--beam-size", type=int, default=beam_size, help="1 = greedy (default %(default)s)")
    p.add_argument("--max-length", type=int, default=200, help="most output subwords, EOS included")
    p.add_argument(
        "--max-ratio", type=float, default=MAX_RATIO, help="most output subwords per source subword"
    )
    p.add_argument("--min-length", type=int, default=1,
                   help="fewest output subwords before EOS (default 1: never an empty translation)")  # fmt: skip
    p.add_argument(
        "--length-penalty", type=float, default=None,
        help="GNMT alpha; 0 ranks by log-probability (default: the model config's model.length_penalty)",
    )  # fmt: skip
    p.add_argument("--max-tokens", type=int, default=4096, help="source subwords per batch")
    p.add_argument("--quantize", choices=["none", "int8"], default="none", help="dynamic int8 weights (CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")


def check_args(args: argparse.Namespace) -> None:
    for name in ("beam_size", "max_length", "max_tokens"):
        if getattr(args, name) < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        raise CommandError(f"--threads must be at least 1, got {args.threads}")
    if args.max_ratio <= 0:
        raise CommandError(f"--max-ratio must be positive, got {args.max_ratio}")
    n_best = getattr(args, "n_best", None) or 1
    if not 1 <= n_best <= args.beam_size:
        raise CommandError(f"--n-best {n_best} needs 1 <= n-best <= --beam-size ({args.beam_size})")


def load_translator(args: argparse.Namespace) -> Translator:
    if args.threads:
        torch.set_num_threads(args.threads)
    return Translator.from_checkpoint(args.checkpoint, quantize=args.quantize, device=args.device)


def search_kwargs(args: argparse.Namespace) -> dict:
    return {
        "beam_size": args.beam_size, "max_length": args.max_length, "max_ratio": args.max_ratio,
        "min_length": args.min_length, "length_penalty": args.length_penalty, "max_tokens": args.max_tokens,
    }  # fmt: skip


def check_file(path: str, what: str) -> None:
    if not Path(path).exists():
        raise CommandError(f"{what} file {path} does not exist")
    if not Path(path).is_file():
        raise CommandError(f"{what} {path} is not a file")


def read_text(path: str | None, what: str = "input") -> list[str]:
    """Lines of a UTF-8 file (``.gz`` too) or of stdin when ``path`` is None or "-"."""
    name = "<stdin>" if path in (None, "-") else path
    try:
        if name == "<stdin>":
            data = sys.stdin.buffer.read()
        else:
            check_file(name, what)
            data = Path(name).read_bytes()
            if name.endswith(".gz"):
                data = gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise CommandError(f"cannot read {what} file {name}: {e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CommandError(f"{what} file {name} line {line} is not valid UTF-8") from e
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def write_text(path: str | None, lines: list[str]) -> None:
    out = "".join(line + "\n" for line in lines)
    if path in (None, "-"):
        sys.stdout.write(out)
        sys.stdout.flush()
        return
    try:
        Path(path).write_text(out, encoding="utf-8")
    except OSError as e:
        raise CommandError(f"cannot write output file {path}: {e}") from e


def translate_with_progress(translator: Translator, texts: list[str], show: bool, **kwargs):
    """``Translator.translate`` with a tqdm bar on stderr (sentences done / total)."""
    from tqdm.auto import tqdm

    with tqdm(total=len(texts), unit="sent", file=sys.stderr, disable=not show, dynamic_ncols=True) as bar:
        return translator.translate(texts, progress=bar.update, **kwargs)


# -- translate -----------------------------------------------------------------------------------
def translate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seq2seq-translate", description="Translate text, one sentence per line."
    )
    add_model_args(p, beam_size=5)
    p.add_argument("--input", help="input file (.gz too; default: stdin)")
    p.add_argument("--output", help="output file (default: stdout)")
    p.add_argument("--n-best", type=int, help="print the N best per line as TSV: line index, log-prob, text")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def translate_command(args: argparse.Namespace) -> None:
    check_args(args)
    if args.input not in (None, "-"):
        check_file(args.input, "input")
    translator = load_translator(args)  # before reading stdin: a bad checkpoint fails at once
    texts = read_text(args.input)
    results = translate_with_progress(
        translator, texts, not args.quiet, n_best=args.n_best or 1, **search_kwargs(args)
    )
    if args.n_best:
        lines = [f"{i}\t{h.score:.4f}\t{h.text}" for i, r in enumerate(results) for h in r.hypotheses]
    else:
        lines = [r.text for r in results]
    write_text(args.output, lines)


def translate_main(argv: list[str] | None = None) -> None:
    run(translate_command, translate_parser(), argv)


# -- evaluate ------------------------------------------------------------------------------------
def score(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU and chrF with sacreBLEU's defaults, and their signatures."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    b, c = bleu.corpus_score(hypotheses, [references]), chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": round(b.score, 2), "chrf": round(c.score, 2), "bleu_text": str(b), "chrf_text": str(c),
        "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature()),
    }  # fmt: skip


def evaluate(
    translator: Translator,
    sources: list[str],
    references: list[str],
    show_progress: bool = False,
    **kwargs,
) -> dict:
    """Translate ``sources`` and score against ``references``; includes wall time and speed."""
    start = time.perf_counter()
    results = translate_with_progress(translator, sources, show_progress, **kwargs)
    seconds = time.perf_counter() - start
    hypotheses = [r.text for r in results]
    return {
        **score(hypotheses, references), "sentences": len(sources), "seconds": round(seconds, 3),
        "sentences_per_second": round(len(sources) / seconds, 2), "hypotheses": hypotheses,
    }  # fmt: skip


def test_set(args: argparse.Namespace, translator: Translator) -> tuple[list[str], list[str]]:
    """Source and reference sentences from --src/--ref or from --data/--split."""
    if args.data:
        from seq2seq.sources import load_corpus

        src_lang, tgt_lang = (
            args.src_lang or translator.src_lang,
            args.tgt_lang or translator.tgt_lang,
        )
        if not src_lang or not tgt_lang:
            raise CommandError("the checkpoint names no languages: give --src-lang and --tgt-lang")
        corpus = load_corpus(args.data, src_lang, tgt_lang, config=args.config)
        if args.split not in corpus:
            raise CommandError(f"{args.data} has no {args.split} split for {src_lang}-{tgt_lang}")
        return list(corpus[args.split]["src"]), list(corpus[args.split]["tgt"])
    sources, references = read_text(args.src, "source"), read_text(args.ref, "reference")
    if len(sources) != len(references):
        raise CommandError(f"{args.src} has {len(sources)} lines but {args.ref} has {len(references)}")
    if not sources:
        raise CommandError(f"{args.src} is empty")
    return sources, references


def evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seq2seq-evaluate", description="Translate a test set; report BLEU and chrF."
    )
    add_model_args(p, beam_size=5)
    p.add_argument("--src", help="source sentences, one per line (.gz too)")
    p.add_argument("--ref", help="reference translations, line-aligned with --src")
    p.add_argument("--data", help="a corpus for seq2seq.sources.load_corpus, e.g. data/multi30k")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--config", help="dataset config name (Hub datasets)")
    p.add_argument("--src-lang", help="default: the checkpoint's")
    p.add_argument("--tgt-lang", help="default: the checkpoint's")
    p.add_argument("--output", help="write the hypotheses here")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    return p


def evaluate_command(args: argparse.Namespace) -> None:
    check_args(args)
    if args.data and (args.src or args.ref):
        raise CommandError("give --data or --src/--ref, not both")
    if not args.data and not (args.src and args.ref):
        raise CommandError("give --src and --ref (or --data)")
    translator = load_translator(args)
    sources, references = test_set(args, translator)
    result = evaluate(translator, sources, references, args.progress, **search_kwargs(args))
    if args.output:
        write_text(args.output, result["hypotheses"])
    del result["hypotheses"]
    result.update(checkpoint=str(args.checkpoint), beam_size=args.beam_size, quantize=args.quantize)
    if args.json:
        print(json.dumps(result))
        return
    print(result["bleu_text"])
    print(result["chrf_text"])
    print(f"BLEU signature: {result['bleu_signature']}")
    print(f"chrF signature: {result['chrf_signature']}")
    print(f"sentences: {result['sentences']}  beam size: {args.beam_size}  time: {result['seconds']:.2f} s  "
          f"({result['sentences_per_second']:.1f} sentences/s)")  # fmt: skip


def evaluate_main(argv: list[str] | None = None) -> None:
    run(evaluate_command, evaluate_parser(), argv)


# -- plot attention ------------------------------------------------------------------------------
def plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="plot_attention", description="Attention heatmap for one sentence (PNG)."
    )
    add_model_args(p, beam_size=5)
    p.add_argument("--text", required=True, help="the source sentence")
    p.add_argument("--output", required=True, help="PNG file to write")
    return p


def plot_command(args: argparse.Namespace) -> None:
    from seq2seq.plot import plot_attention

    check_args(args)
    if not Path(args.output).resolve().parent.is_dir():
        raise CommandError(f"cannot write {args.output}: its directory does not exist")
    translator = load_translator(args)
    kwargs = search_kwargs(args)
    translation = translator.translate([args.text], return_attention=True, **kwargs)[0]
    best = translation.hypotheses[0]
    plot_attention(best.attention, translation.source_tokens, best.tokens, args.output, title=best.text)
    print(best.text)


def plot_main(argv: list[str] | None = None) -> None:
    run(plot_command, plot_parser(), argv)
