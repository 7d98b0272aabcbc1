"""Read a parallel corpus from wherever it lives into one shape: ``src``/``tgt`` string columns.

Sources, chosen by the ``source`` string:
  * ``builtin``: the generated numbers-and-dates task (offline, see ``corpus.py``);
  * a directory of line-aligned text files ``{split}.{lang}[.gz]`` (Moses / OpenNMT / Multi30k);
  * a ``save_to_disk`` directory, or a directory laid out like a Hub dataset repository
    (``data/train-00000-of-00001.parquet``, or a README.md with YAML ``configs``);
  * a file pattern with ``{split}``, e.g. ``data/{split}.tsv`` (TSV, CSV, JSON Lines, Parquet,
    optionally ``.gz``); TSV and CSV files need a header row naming the columns;
  * anything else is a Hugging Face Hub id, e.g. ``bentrevett/multi30k`` or ``wmt16`` + config.
Records may be WMT style ``{"translation": {"de": ..., "en": ...}}`` or flat columns.
``open_corpus`` finds the raw splits (map-style or streaming); ``load_corpus`` normalizes them.
"""

from __future__ import annotations

import csv
import functools
import glob
import gzip
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from itertools import zip_longest
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test",),
}
FILE_FORMATS = {
    ".tsv": "csv",
    ".csv": "csv",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
}
AnyDataset = datasets.Dataset | datasets.IterableDataset
RawSplits = dict[str, Callable[[], AnyDataset]]  # split name -> loads that split on demand


class CorpusError(ValueError):
    """A corpus that cannot be read, with a message that names the file, line or field."""


def find_split(available: list[str], split: str) -> str | None:
    """Map a canonical split (train/validation/test) to the name a corpus uses for it."""
    for alias in SPLIT_ALIASES[split]:
        if alias in available:
            return alias
    if split == "test":  # e.g. Multi30k's test_2016_flickr, WMT's newstest2014
        tests = sorted(name for name in available if "test" in name)
        tests.sort(key=lambda name: not name.startswith("test"))
        return tests[0] if tests else None
    return None


def resolve_split(available: list[str], split: str, splits: dict[str, str] | None, source: str) -> str | None:
    """The corpus's name for ``split``; None for an absent test split, else CorpusError."""
    wanted = (splits or {}).get(split)
    name = wanted or find_split(available, split)
    if name is None or name not in available:
        if split == "test" and not wanted:
            return None
        asked = f" {wanted!r}" if wanted else ""
        raise CorpusError(
            f"{source}: no {split} split{asked} (found {sorted(available)}; map one with splits)"
        )
    return name


# -- line-aligned parallel text -----------------------------------------------------------
_TEXT_FILE = re.compile(r"^(?P<split>[^.]+)\.(?P<lang>[A-Za-z][A-Za-z_-]{1,9})(?:\.gz)?$")
_NOT_LANGUAGES = {"md", "txt", "json", "jsonl", "csv", "tsv", "parquet", "arrow", "yaml", "py"}


def text_languages(directory: Path) -> dict[str, list[str]]:
    """Languages of the ``{split}.{lang}[.gz]`` files in a directory, with their splits."""
    langs: dict[str, list[str]] = {}
    for p in sorted(directory.iterdir()):
        m = _TEXT_FILE.match(p.name)
        if m and p.is_file() and m["lang"].lower() not in _NOT_LANGUAGES:
            langs.setdefault(m["lang"], []).append(m["split"])
    return langs


def _text_path(directory: Path, split: str, lang: str) -> Path:
    for name in (f"{split}.{lang}", f"{split}.{lang}.gz"):
        if (directory / name).is_file():
            return directory / name
    raise CorpusError(f"no file {directory}/{split}.{lang}[.gz] for language {lang!r}")


def _lines(path: Path) -> Iterator[str]:
    """Lines of a (possibly gzipped) UTF-8 text file; errors name the file and line."""
    n = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            for n, line in enumerate(f, 1):  # noqa: B007 (n names the line in errors)
                yield line.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}, line {n}: not valid UTF-8 ({e.reason})") from e
    except (OSError, EOFError) as e:
        raise CorpusError(f"cannot read {path}: {e}") from e
    if n == 0:
        raise CorpusError(f"{path} is empty")


def text_pairs(src_path: str, tgt_path: str, src_lang: str, tgt_lang: str) -> Iterator[dict]:
    """Records ``{src_lang: line, tgt_lang: line}`` of two line-aligned files, checked to match."""
    paths = (Path(src_path), Path(tgt_path))
    for n, (s, t) in enumerate(zip_longest(*map(_lines, paths)), 1):
        if s is None or t is None:
            short, long = paths if s is None else paths[::-1]
            raise CorpusError(
                f"parallel files differ in length: {short} ends after line {n - 1}, "
                f"{long} goes on (line {n}: {(s if t is None else t)[:60]!r})"
            )
        yield {src_lang: s, tgt_lang: t}


def parallel_text_split(
    directory: Path, split: str, src_lang: str, tgt_lang: str, streaming: bool = False
) -> AnyDataset:
    """One split of line-aligned ``{split}.{src}`` / ``{split}.{tgt}`` files, columns by language."""
    paths = [str(_text_path(directory, split, lang)) for lang in (src_lang, tgt_lang)]
    if streaming:
        return datasets.IterableDataset.from_generator(
            text_pairs,
            gen_kwargs={
                "src_path": paths[0],
                "tgt_path": paths[1],
                "src_lang": src_lang,
                "tgt_lang": tgt_lang,
            },  # fmt: skip
        )
    records = list(text_pairs(*paths, src_lang, tgt_lang))
    return datasets.Dataset.from_dict({lang: [r[lang] for r in records] for lang in (src_lang, tgt_lang)})


# -- tabular files: TSV, CSV, JSON Lines, Parquet ------------------------------------------
def _file_type(path: str) -> str:
    suffixes = Path(path).suffixes
    ext = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else "".join(suffixes[-1:])
    if ext not in FILE_FORMATS:
        raise CorpusError(f"unknown file type {ext!r} in {path}; use one of {sorted(FILE_FORMATS)}")
    return ext


def _open_text(path: str):
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8")


def _reader_kwargs(path: str, ext: str) -> dict:
    """TSV/CSV: every column a string, no quote handling in TSV, no "NA"/"null" -> missing."""
    if ext not in (".tsv", ".csv"):
        return {}
    delimiter = "\t" if ext == ".tsv" else ","
    quoting = csv.QUOTE_NONE if ext == ".tsv" else csv.QUOTE_MINIMAL
    try:
        with _open_text(path) as f:
            header = next(csv.reader(f, delimiter=delimiter, quoting=quoting), [])
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise CorpusError(f"cannot read {path}: {e}") from e
    features = datasets.Features({name: datasets.Value("string") for name in header})
    return {"delimiter": delimiter, "quoting": quoting, "na_filter": False, "features": features}


def _bad_json_line(path: str) -> str:
    """Locate the first line of a JSON Lines file that does not parse."""
    try:
        with _open_text(path) as f:
            for n, line in enumerate(f, 1):
                try:
                    if line.strip():
                        json.loads(line)
                except ValueError as e:
                    return f"{path}, line {n}: {e}"
    except (OSError, UnicodeDecodeError, EOFError):
        pass
    return path


def _load_file(path: str, split: str, streaming: bool) -> AnyDataset:
    """One split from one file; parse errors name the file (and the line where known)."""
    ext = _file_type(path)
    if os.path.getsize(path) == 0:
        raise CorpusError(f"{path} is empty")
    kwargs = _reader_kwargs(path, ext)
    try:
        return datasets.load_dataset(
            FILE_FORMATS[ext], data_files={split: path}, split=split, streaming=streaming, **kwargs
        )
    except Exception as e:  # pyarrow/pandas errors, wrapped by datasets; pandas names the line
        if "corresponds to no data" in str(e):
            raise CorpusError(f"{path}: the {split} split is empty (no records)") from e
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        where = _bad_json_line(path) if ext == ".jsonl" else path
        raise CorpusError(f"cannot parse {where}: {type(cause).__name__}: {cause}") from e


def pattern_splits(pattern: str, streaming: bool = False) -> RawSplits:
    """Files named by a ``{split}`` pattern, e.g. ``data/{split}.jsonl``."""
    _file_type(pattern)
    prefix, suffix = pattern.split("{split}", 1)
    paths = sorted(glob.glob(glob.escape(prefix) + "*" + glob.escape(suffix)))
    files = {p[len(prefix) : len(p) - len(suffix)]: p for p in paths}
    if not files:
        raise CorpusError(f"no files match {pattern}")
    return {split: functools.partial(_load_file, p, split, streaming) for split, p in files.items()}


# -- directories and the Hub ----------------------------------------------------------------
def _load_dataset(source: str, config: str | None, streaming: bool) -> datasets.DatasetDict:
    try:
        return datasets.load_dataset(source, config, streaming=streaming)
    except FileNotFoundError as e:
        raise CorpusError(f"dataset {source!r} not found locally or on the Hugging Face Hub: {e}") from e
    except ConnectionError as e:
        raise CorpusError(
            f"dataset {source!r} is not a local path and the Hugging Face Hub cannot be reached "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '')!s}): {e}"
        ) from e
    except ValueError as e:  # e.g. a missing or ambiguous config name
        raise CorpusError(f"cannot load dataset {source!r} (config {config!r}): {e}") from e


def _dict_splits(dd: datasets.DatasetDict, streaming: bool) -> RawSplits:
    def get(name: str) -> AnyDataset:
        ds = dd[name]
        return ds.to_iterable_dataset() if streaming and isinstance(ds, datasets.Dataset) else ds

    return {name: functools.partial(get, name) for name in dd}


def _directory_splits(
    path: Path, src_lang: str, tgt_lang: str, config: str | None, streaming: bool
) -> RawSplits:
    langs = text_languages(path)
    if src_lang in langs:
        return {
            split: functools.partial(parallel_text_split, path, split, src_lang, tgt_lang, streaming)
            for split in langs[src_lang]
        }
    if (path / "dataset_dict.json").is_file():
        return _dict_splits(datasets.load_from_disk(str(path)), streaming)
    if langs and not (path / "README.md").is_file() and not (path / "data").is_dir():
        raise CorpusError(
            f"{path} has parallel text files for languages {sorted(langs)} but none for {src_lang!r}"
        )
    flat = [p for p in path.iterdir() if p.is_file() and p.suffix in FILE_FORMATS]
    if flat and not (path / "README.md").is_file() and len({p.suffix for p in flat}) == 1:
        return pattern_splits(str(path / f"{{split}}{flat[0].suffix}"), streaming)
    return _dict_splits(_load_dataset(str(path), config, streaming), streaming)


def _looks_like_path(source: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else that is not on disk is a typo."""
    return (
        source.startswith(("/", ".", "~"))
        or source.count("/") > 1
        or bool(re.search(r"\.(tsv|csv|jsonl?|parquet|gz)$", source))
    )


def open_corpus(
    source: str,
    src_lang: str,
    tgt_lang: str,
    config: str | None = None,
    builtin_sizes: tuple[int, int, int] = (20000, 500, 500),
    seed: int = 0,
    streaming: bool = False,
) -> RawSplits:
    """The raw splits of ``source`` by their own names, each loaded when called."""
    path = Path(source).expanduser()
    if source == "builtin":
        from seq2seq.corpus import build_builtin_corpus

        return _dict_splits(build_builtin_corpus(src_lang, tgt_lang, *builtin_sizes, seed=seed), streaming)
    if "{split}" in source:
        return pattern_splits(source, streaming)
    if path.is_dir():
        return _directory_splits(path, src_lang, tgt_lang, config, streaming)
    if path.is_file():
        raise CorpusError(
            f"{source} is a single file; name the splits with a pattern like data/{{split}}.tsv"
        )
    if _looks_like_path(source):
        raise CorpusError(f"{source}: no such file or directory")
    return _dict_splits(_load_dataset(source, config, streaming), streaming)


# -- normalizing records ---------------------------------------------------------------------
def to_src_tgt(ds: datasets.Dataset, src_col: str, tgt_col: str, where: str) -> pa.Table:
    """Either record layout -> an Arrow table of ``src``/``tgt`` strings (missing -> CorpusError)."""
    cols = ds.column_names
    if src_col not in cols and "translation" in cols:
        ds = ds.select_columns(["translation"]).flatten()
        langs = [c.split(".", 1)[1] for c in ds.column_names]
        for field in (src_col, tgt_col):
            if field not in langs:
                raise CorpusError(f"{where}: no language {field!r} in 'translation' records (has {langs})")
        src_col, tgt_col = f"translation.{src_col}", f"translation.{tgt_col}"
    else:
        for field in (src_col, tgt_col):
            if field not in cols:
                raise CorpusError(f"{where}: no column {field!r} (columns are {cols})")
    table = ds.select_columns([src_col, tgt_col]).with_format("arrow")[:]  # honours select()
    return pa.table(
        {
            "src": table.column(src_col).cast(pa.large_string()),
            "tgt": table.column(tgt_col).cast(pa.large_string()),
        }
    )


def drop_empty(table: pa.Table, where: str) -> datasets.Dataset:
    """Drop pairs where either side is missing, empty or whitespace, logging how many went."""
    keep = None
    for col in ("src", "tgt"):
        text = table.column(col)
        ok = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), False)
        keep = ok if keep is None else pc.and_(keep, ok)
    dropped = len(table) - (pc.sum(keep).as_py() or 0)
    if dropped:
        log.warning("%s: dropped %d empty or whitespace-only sentence pairs", where, dropped)
        table = table.filter(keep)
    if len(table) == 0:
        raise CorpusError(f"{where} has no non-empty sentence pairs")
    return datasets.Dataset(datasets.table.InMemoryTable(table))


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
    raw = open_corpus(source, src_lang, tgt_lang, config, tuple(builtin_sizes), seed)
    src_col, tgt_col = src_column or src_lang, tgt_column or tgt_lang
    out = {}
    for split in ("train", "validation", "test"):
        name = resolve_split(list(raw), split, splits, source)
        if name is not None:
            where = f"{source} [{name}]"
            out[split] = drop_empty(to_src_tgt(raw[name](), src_col, tgt_col, where), where)
    return datasets.DatasetDict(out)
