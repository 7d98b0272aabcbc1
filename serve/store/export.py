"""Suggestions -> a parallel corpus that ``scripts/train.py --data.source DIR`` reads as it is.

The corpus is a directory with a ``train`` and a ``validation`` split (the trainer requires both):
``tsv`` writes ``train.tsv`` / ``validation.tsv`` with a header row naming the two languages,
``text`` writes line-aligned ``train.de`` / ``train.en`` / ``validation.de`` / ``validation.en``.
Whitespace runs (tabs and newlines included) become one space, so every pair is one line. One pair
is kept per source text, the latest suggestion (a later correction supersedes an earlier one), unless
``all_targets`` keeps each distinct pair once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from serve.store.suggestions import Suggestion

FORMATS = ("tsv", "text")
_SPACE = re.compile(r"\s+")


class ExportError(ValueError):
    """An export that cannot be written (no pairs, bad output path, bad option)."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: counts and the files, for the CLI's report."""

    read: int
    train: int
    validation: int
    files: tuple[Path, ...]


def normalize(text: str) -> str:
    """One line of text: whitespace runs (tabs, newlines) -> one space, ends trimmed."""
    return _SPACE.sub(" ", text).strip()


def dedupe(suggestions: Iterable[Suggestion], all_targets: bool = False) -> list[tuple[str, str]]:
    """(q, s) pairs, normalized, empty ones dropped; one per q (the latest) or one per distinct pair.

    ``suggestions`` come oldest first; the order of the result is that of each kept pair's first q."""
    pairs: dict[object, tuple[str, str]] = {}
    for sug in suggestions:
        q, s = normalize(sug.q), normalize(sug.s)
        if q and s:
            key = (q, s) if all_targets else q
            pairs[key] = (q, s)  # a dict keeps the first insertion's position; the value is the latest
    return list(pairs.values())


def in_validation(q: str, fraction: float) -> bool:
    """A stable split: a pair's side depends on its source text only, so it never moves between exports."""
    digest = int.from_bytes(hashlib.sha256(q.encode("utf-8")).digest()[:8], "big")
    return digest / 2**64 < fraction


def split(
    pairs: list[tuple[str, str]], fraction: float
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, validation). ``fraction=0``: validate on the training pairs themselves (every correction
    must be learnt); otherwise each split keeps at least one pair."""
    if not 0 <= fraction < 1:
        raise ExportError(f"--validation-fraction must be in [0, 1), not {fraction}")
    if fraction == 0 or len(pairs) < 2:
        return pairs, list(pairs)
    validation = [p for p in pairs if in_validation(p[0], fraction)]
    train = [p for p in pairs if not in_validation(p[0], fraction)]
    if not validation:
        validation, train = train[-1:], train[:-1]
    elif not train:
        train, validation = validation[:1], validation[1:]
    return train, validation


def _write_lines(path: Path, lines: Iterable[str]) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    tmp.replace(path)
    return path


def write_corpus(
    out: str | Path, src_lang: str, tgt_lang: str, splits: dict[str, list[tuple[str, str]]], fmt: str = "tsv"
) -> tuple[Path, ...]:
    """Write ``{split: [(src, tgt), ...]}`` into the directory ``out`` in ``fmt``; returns the files."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if src_lang == tgt_lang:
        raise ExportError(f"the pair's languages must differ (got {src_lang}-{tgt_lang})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory: the corpus is a directory of split files")
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, pairs in splits.items():
        if fmt == "tsv":
            rows = [f"{src_lang}\t{tgt_lang}", *(f"{q}\t{s}" for q, s in pairs)]
            files.append(_write_lines(out / f"{name}.tsv", rows))
        else:
            files.append(_write_lines(out / f"{name}.{src_lang}", (q for q, _ in pairs)))
            files.append(_write_lines(out / f"{name}.{tgt_lang}", (s for _, s in pairs)))
    return tuple(files)


def export(
    suggestions: Iterable[Suggestion],
    out: str | Path,
    src_lang: str,
    tgt_lang: str,
    fmt: str = "tsv",
    validation_fraction: float = 0.1,
    all_targets: bool = False,
) -> ExportResult:
    """De-duplicate, split and write one pair's suggestions (already filtered by pair and time)."""
    suggestions = list(suggestions)
    pairs = dedupe(suggestions, all_targets)
    if not pairs:
        raise ExportError(f"no {src_lang}-{tgt_lang} suggestions to export")
    train, validation = split(pairs, validation_fraction)
    files = write_corpus(out, src_lang, tgt_lang, {"train": train, "validation": validation}, fmt)
    return ExportResult(len(suggestions), len(train), len(validation), files)
