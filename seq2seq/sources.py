"""Read a parallel corpus from wherever it lives into one shape: a DatasetDict of ``src``/``tgt``.

Sources, chosen by the ``source`` string:
  * ``builtin``: the generated numbers-and-dates task (offline, see ``corpus.py``);
  * a directory of line-aligned text files ``{split}.{lang}[.gz]`` (Moses / OpenNMT / Multi30k);
  * a ``save_to_disk`` directory, or a directory laid out like a Hub dataset repository;
  * a file pattern with ``{split}``, e.g. ``data/{split}.tsv`` (TSV, CSV, JSON Lines, Parquet);
  * anything else is a Hugging Face Hub id, e.g. ``bentrevett/multi30k`` or ``wmt16`` + config.
Records may be WMT style ``{"translation": {"de": ..., "en": ...}}`` or flat columns.
"""

from __future__ import annotations

import glob
import gzip
import logging
import os
from pathlib import Path

import datasets

log = logging.getLogger(__name__)

SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test",),
}
FILE_FORMATS = {".tsv": "csv", ".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class CorpusError(ValueError):
    """A corpus that cannot be read, with a message that names the file, line or field."""


def find_split(available: list[str], split: str) -> str | None:
    """Map a canonical split (train/validation/test) to the name a corpus uses for it."""
    for alias in SPLIT_ALIASES[split]:
        if alias in available:
            return alias
    if split == "test":  # e.g. Multi30k's test_2016_flickr: take the first test-like name
        tests = sorted(name for name in available if name.startswith("test"))
        return tests[0] if tests else None
    return None


def read_lines(path: Path) -> list[str]:
    """Lines of a (possibly gzipped) UTF-8 text file, with a clear error if unreadable."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise CorpusError(f"cannot read {path}: {e}") from e
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise CorpusError(f"{path} is empty")
    return lines


def _text_file(directory: Path, split: str, lang: str) -> Path | None:
    for name in (f"{split}.{lang}", f"{split}.{lang}.gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _text_splits(directory: Path, src_lang: str) -> list[str]:
    names = {p.name.split(".")[0] for p in directory.glob(f"*.{src_lang}*")}
    return sorted(n for n in names if _text_file(directory, n, src_lang))


def load_parallel_text(directory: Path, split: str, src_lang: str, tgt_lang: str) -> datasets.Dataset:
    """One split of line-aligned ``{split}.{src}`` / ``{split}.{tgt}`` files."""
    paths = [_text_file(directory, split, lang) for lang in (src_lang, tgt_lang)]
    for lang, path in zip((src_lang, tgt_lang), paths):
        if path is None:
            raise CorpusError(f"no file {directory}/{split}.{lang}[.gz] for language {lang!r}")
    src, tgt = (read_lines(p) for p in paths)
    if len(src) != len(tgt):
        shorter = paths[0] if len(src) < len(tgt) else paths[1]
        raise CorpusError(
            f"parallel files differ in length: {paths[0]} has {len(src)} lines, {paths[1]} has "
            f"{len(tgt)}; {shorter} ends at line {min(len(src), len(tgt))}"
        )
    return datasets.Dataset.from_dict({"src": src, "tgt": tgt})


def _load_hub_or_dir(source: str, config: str | None) -> datasets.DatasetDict:
    try:
        loaded = datasets.load_dataset(source, config)
    except FileNotFoundError as e:
        raise CorpusError(f"dataset {source!r} not found locally or on the Hugging Face Hub: {e}") from e
    except ConnectionError as e:
        raise CorpusError(
            f"dataset {source!r} is not a local path and the Hugging Face Hub cannot be reached "
            f"(offline: HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '')!s}): {e}"
        ) from e
    except ValueError as e:  # e.g. a missing or ambiguous config name
        raise CorpusError(f"cannot load dataset {source!r} (config {config!r}): {e}") from e
    return loaded


def _load_pattern(pattern: str) -> datasets.DatasetDict:
    """Files named by a ``{split}`` pattern, e.g. ``data/{split}.jsonl``."""
    ext = "".join(Path(pattern).suffixes[-1:])
    if ext not in FILE_FORMATS:
        raise CorpusError(f"unknown file type {ext!r} in {pattern}; use one of {sorted(FILE_FORMATS)}")
    prefix, suffix = pattern.split("{split}", 1)
    files = {p[len(prefix) : len(p) - len(suffix)]: p for p in glob.glob(pattern.replace("{split}", "*"))}
    if not files:
        raise CorpusError(f"no files match {pattern}")
    for split, path in files.items():
        if os.path.getsize(path) == 0:
            raise CorpusError(f"{path} is empty")
    kwargs = {"delimiter": "\t"} if ext == ".tsv" else {}
    try:
        return datasets.load_dataset(FILE_FORMATS[ext], data_files=files, **kwargs)
    except Exception as e:  # pyarrow/pandas parse errors carry the line; keep them
        raise CorpusError(f"cannot parse {pattern}: {e}") from e


def to_src_tgt(
    ds: datasets.Dataset, src_col: str, tgt_col: str, where: str
) -> datasets.Dataset:
    """Normalize either record layout to flat ``src``/``tgt`` string columns."""
    cols = ds.column_names
    if "translation" in cols and src_col not in cols:
        pairs = ds["translation"]
        for field in (src_col, tgt_col):
            if pairs and field not in pairs[0]:
                raise CorpusError(f"{where}: no language {field!r} in 'translation' (has {sorted(pairs[0])})")
        return datasets.Dataset.from_dict(
            {"src": [p[src_col] for p in pairs], "tgt": [p[tgt_col] for p in pairs]}
        )
    for field in (src_col, tgt_col):
        if field not in cols:
            raise CorpusError(f"{where}: no column {field!r} (columns are {cols})")
    ds = ds.select_columns([src_col, tgt_col])
    if (src_col, tgt_col) != ("src", "tgt"):
        ds = ds.rename_columns({src_col: "__s", tgt_col: "__t"}).rename_columns({"__s": "src", "__t": "tgt"})
    return ds


def drop_empty(ds: datasets.Dataset, where: str) -> datasets.Dataset:
    """Drop pairs where either side is empty or whitespace, logging how many went."""
    keep = [
        i for i, (s, t) in enumerate(zip(ds["src"], ds["tgt"])) if s and t and s.strip() and t.strip()
    ]
    if len(keep) < len(ds):
        log.warning("%s: dropped %d empty or whitespace-only sentence pairs", where, len(ds) - len(keep))
        ds = ds.select(keep)
    if len(ds) == 0:
        raise CorpusError(f"{where} has no non-empty sentence pairs")
    return ds


def load_corpus(
    source: str,
    src_lang: str,
    tgt_lang: str,
    config: str | None = None,
    splits: dict[str, str] | None = None,
    src_column: str | None = None,
    tgt_column: str | None = None,
    builtin_sizes: tuple[int, int, int] = (20000, 500, 500),
    seed: int = 0,
) -> datasets.DatasetDict:
    """Load ``source`` into a DatasetDict with splits train/validation[/test] and src/tgt columns.

    ``splits`` maps canonical names to the corpus's own (``{"validation": "dev"}``); by default
    the usual aliases are tried. Validation is required: it drives checkpoints and early stopping.
    """
    src_col, tgt_col = src_column or src_lang, tgt_column or tgt_lang
    path = Path(source)
    text_dir = None
    if source == "builtin":
        from seq2seq.corpus import build_builtin_corpus

        train, valid, test = builtin_sizes
        raw = build_builtin_corpus(src_lang, tgt_lang, train, valid, test, seed=seed)
    elif path.is_dir() and _text_splits(path, src_lang):
        text_dir, raw = path, None
        available = _text_splits(path, src_lang)
    elif path.is_dir() and (path / "dataset_dict.json").is_file():
        raw = datasets.load_from_disk(str(path))
    elif "{split}" in source:
        raw = _load_pattern(source)
    elif path.is_file():
        raise CorpusError(f"{source} is a single file; name the splits with a pattern like data/{{split}}.tsv")
    else:
        raw = _load_hub_or_dir(source, config)
    if raw is not None:
        available = list(raw.keys())

    out = {}
    for split in ("train", "validation", "test"):
        name = (splits or {}).get(split) or find_split(available, split)
        if name is None or name not in available:
            if split == "test" and not (splits or {}).get("test"):
                continue
            raise CorpusError(f"{source}: no {split} split (found {available}; map one with splits)")
        where = f"{source} [{name}]"
        if text_dir is not None:
            ds = load_parallel_text(text_dir, name, src_lang, tgt_lang)
        else:
            ds = to_src_tgt(raw[name], src_col, tgt_col, where)
        out[split] = drop_empty(ds, where)
    return datasets.DatasetDict(out)
