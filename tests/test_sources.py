"""Corpus sources: every file format and record layout gives the same corpus and token ids,
the hub-layout directory loads offline, and every kind of bad input gets a clear CorpusError."""

from __future__ import annotations

import csv
import gzip
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seq2seq.cli import train_main
from seq2seq.data import TranslationDataModule
from seq2seq.sources import CorpusError, find_split, load_corpus
from seq2seq.streaming import load_streaming_corpus

datasets.disable_progress_bars()

WORDS_DE = "Haus Katze Hund Garten Straße Größe Mann Frau Kind Ball rot blau groß klein".split()
WORDS_EN = "house cat dog garden street size man woman child ball red blue big small".split()


def _pair(i: int) -> tuple[str, str]:
    a, b = i % 14, (i * 5 + 3) % 14
    return f"Der {WORDS_DE[a]} ist {WORDS_DE[b]} {i}.", f'The "{WORDS_EN[a]}" is {WORDS_EN[b]} {i}.'


# Tricky cells: quotes, words pandas would read as missing ("null", "NA"), a bare number,
# and pairs that must be dropped (empty / whitespace-only on one side).
PAIRS = {
    "train": [_pair(i) for i in range(80)] + [("null", "zero"), ("NA", "n/a"), ("1995", "1995")],
    "dev": [_pair(i) for i in range(100, 106)] + [("   ", "blank source")],
    "test": [_pair(i) for i in range(200, 204)] + [("kein Ziel", "")],
}
KEPT = {split: [p for p in pairs if p[0].strip() and p[1].strip()] for split, pairs in PAIRS.items()}
CANONICAL = {"train": "train", "validation": "dev", "test": "test"}


def write_text(root: Path) -> str:
    """Line-aligned files; German gzipped, English plain; test named like Multi30k's."""
    root.mkdir()
    for split, pairs in PAIRS.items():
        name = "test_2016_flickr" if split == "test" else split
        with gzip.open(root / f"{name}.de.gz", "wt", encoding="utf-8") as f:
            f.writelines(s + "\n" for s, _ in pairs)
        (root / f"{name}.en").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return str(root)


def write_tsv(root: Path) -> str:
    root.mkdir()
    for split, pairs in PAIRS.items():
        lines = ["de\ten"] + [f"{s}\t{t}" for s, t in pairs]
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(root / "{split}.tsv")


def write_csv(root: Path) -> str:
    root.mkdir()
    for split, pairs in PAIRS.items():
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("de", "en"), *pairs])
    return str(root / "{split}.csv")


def write_jsonl(root: Path) -> str:
    """WMT layout, gzipped."""
    root.mkdir()
    for split, pairs in PAIRS.items():
        with gzip.open(root / f"{split}.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps({"translation": {"de": s, "en": t}}) + "\n" for s, t in pairs)
    return str(root / "{split}.jsonl.gz")


def write_parquet(root: Path) -> str:
    """Flat columns under their own names (picked with src_column/tgt_column)."""
    root.mkdir()
    for split, pairs in PAIRS.items():
        table = pa.table({"id": list(range(len(pairs))), "source_text": [s for s, _ in pairs],
                          "target_text": [t for _, t in pairs]})  # fmt: skip
        pq.write_table(table, root / f"{split}.parquet")
    return str(root / "{split}.parquet")


def write_disk(root: Path) -> str:
    """A save_to_disk directory with the datasets ``Translation`` feature."""
    features = datasets.Features({"translation": datasets.Translation(languages=["de", "en"])})
    rows = {split: {"translation": [{"de": s, "en": t} for s, t in pairs]} for split, pairs in PAIRS.items()}
    datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(r, features=features) for split, r in rows.items()}
    ).save_to_disk(str(root))
    return str(root)


def write_hub(root: Path) -> str:
    """A directory laid out like a Hub dataset repository: data/{split}-00000-of-00001.parquet."""
    (root / "data").mkdir(parents=True)
    for split, pairs in PAIRS.items():
        table = pa.table({"de": [s for s, _ in pairs], "en": [t for _, t in pairs]})
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet")
    return str(root)


WRITERS = {"text": write_text, "tsv": write_tsv, "csv": write_csv, "jsonl": write_jsonl,
           "parquet": write_parquet, "disk": write_disk, "hub": write_hub}  # fmt: skip
COLUMNS = {"parquet": {"src_column": "source_text", "tgt_column": "target_text"}}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("formats")
    return {name: write(root / name) for name, write in WRITERS.items()}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_format_loads_the_same_pairs(sources: dict[str, str], fmt: str) -> None:
    corpus = load_corpus(sources[fmt], "de", "en", splits={"validation": "dev"}, **COLUMNS.get(fmt, {}))
    assert sorted(corpus) == ["test", "train", "validation"]
    for split, name in CANONICAL.items():
        assert corpus[split].column_names == ["src", "tgt"]
        got = list(zip(corpus[split]["src"], corpus[split]["tgt"], strict=True))
        assert got == KEPT[name], f"{fmt} [{split}]"


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_format_streams_the_same_pairs(sources: dict[str, str], fmt: str) -> None:
    train, reader, evaluation = load_streaming_corpus(
        sources[fmt], "de", "en", splits={"validation": "dev"}, **COLUMNS.get(fmt, {})
    )
    assert isinstance(train, datasets.IterableDataset)
    assert list(reader.pairs(train)) == PAIRS["train"]  # empty pairs are dropped when batching
    for split in ("validation", "test"):
        got = list(zip(evaluation[split]["src"], evaluation[split]["tgt"], strict=True))
        assert got == KEPT[CANONICAL[split]]


def test_every_format_gives_identical_token_ids(sources: dict[str, str], tmp_path: Path) -> None:
    """Each format trains its own SentencePiece (separate caches): ids must match exactly."""
    ids = {}
    for fmt, source in sources.items():
        dm = TranslationDataModule(
            source, "de", "en", splits={"validation": "dev"}, spm_vocab_size=90,
            cache_dir=str(tmp_path / fmt), **COLUMNS.get(fmt, {}),
        )  # fmt: skip
        ids[fmt] = {s: (d.src_off, d.src_val, d.tgt_off, d.tgt_val) for s, d in dm.splits.items()}
        assert dm.src_tokenizer.decode(dm.src_tokenizer.encode(["Der Hund ist rot 7."])) == [
            "Der Hund ist rot 7."
        ]
    reference = ids.pop("text")
    assert len(reference["train"][1]) > len(KEPT["train"])  # real subwords, not empty
    for fmt, got in ids.items():
        for split in reference:
            for a, b in zip(reference[split], got[split], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{fmt} [{split}]")


def test_hub_layout_with_readme_configs_loads_offline(tmp_path: Path) -> None:
    """A README.md with YAML ``configs`` picks files per config; split names map to ours."""
    for config, lang in (("de-en", "de"), ("fr-en", "fr")):
        (tmp_path / config).mkdir()
        for split in ("train", "valid"):
            rows = [{lang: f"{lang} {i}", "en": f"en {i}"} for i in range(5)]
            (tmp_path / config / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    yaml = "".join(
        f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train.jsonl\n"
        f"  - split: valid\n    path: {c}/valid.jsonl\n"
        for c in ("de-en", "fr-en")
    )
    (tmp_path / "README.md").write_text(f"---\nconfigs:\n{yaml}---\n# test corpus\n")
    corpus = load_corpus(str(tmp_path), "fr", "en", config="fr-en")
    assert sorted(corpus) == ["train", "validation"]  # no test split: optional
    assert corpus["validation"][0] == {"src": "fr 0", "tgt": "en 0"}
    with pytest.raises(CorpusError, match="config 'xx-en'"):
        load_corpus(str(tmp_path), "fr", "en", config="xx-en")


def test_split_names_are_mapped() -> None:
    assert find_split(["train", "dev", "test_2016_flickr"], "validation") == "dev"
    assert find_split(["train", "val", "test_2017", "test_2016"], "test") == "test_2016"
    assert find_split(["train", "valid"], "validation") == "valid"
    assert find_split(["train", "newstest2014", "newstest2013"], "test") == "newstest2013"
    assert find_split(["train", "newstest2014", "test_b"], "test") == "test_b"
    assert find_split(["train"], "test") is None


def test_builtin_corpus_goes_through_the_same_path() -> None:
    corpus = load_corpus("builtin", "en", "fr", builtin_sizes=(30, 5, 5))
    assert {k: len(v) for k, v in corpus.items()} == {"train": 30, "validation": 5, "test": 5}
    assert corpus["train"].column_names == ["src", "tgt"]


def test_empty_pairs_are_dropped_with_a_logged_count(sources: dict[str, str], caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="seq2seq.sources"):
        corpus = load_corpus(sources["tsv"], "de", "en")
    assert len(corpus["validation"]) == len(PAIRS["dev"]) - 1
    assert "[dev]: dropped 1 empty or whitespace-only sentence pairs" in caplog.text
    assert "[test]: dropped 1 empty" in caplog.text


# -- bad input ---------------------------------------------------------------------------
def _text_dir(root: Path, files: dict[str, bytes]) -> str:
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    return str(root)


GOOD = {"train.de": b"a\nb\nc\n", "train.en": b"x\ny\nz\n", "dev.de": b"a\n", "dev.en": b"x\n"}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({**GOOD, "train.en": b"x\ny\n"}, r"differ in length: .*train\.en ends after line 2, .*train\.de goes on"),
        ({**GOOD, "train.en": b""}, r"train\.en is empty"),
        ({**GOOD, "train.de": b"a\nb\xff\nc\n"}, r"train\.de, line 2: not valid UTF-8"),
        ({**GOOD, "train.de.gz": b"not gzip"}, r"cannot read .*train\.de\.gz"),
        ({k: v for k, v in GOOD.items() if k != "train.en"}, r"no file .*train\.en\[\.gz\] for language 'en'"),
        ({k: v for k, v in GOOD.items() if not k.startswith("dev")}, r"no validation split \(found \['train'\]"),
        ({**GOOD, "dev.de": b" \n", "dev.en": b"x\n"}, r"\[dev\] has no non-empty sentence pairs"),
    ],
    ids=["lengths", "empty-file", "utf8", "gzip", "missing-language", "missing-split", "empty-split"],
)  # fmt: skip
def test_bad_parallel_text(tmp_path: Path, files: dict[str, bytes], message: str) -> None:
    if "train.de.gz" in files:
        del files["train.de"]
    with pytest.raises(CorpusError, match=message):
        load_corpus(_text_dir(tmp_path / "corpus", files), "de", "en")


def test_directory_without_the_language(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"languages \['de', 'en'\] but none for 'fr'"):
        load_corpus(_text_dir(tmp_path / "corpus", GOOD), "fr", "en")


def _files(root: Path, ext: str, train: str, dev: str = "") -> str:
    root.mkdir()
    (root / f"train.{ext}").write_text(train, encoding="utf-8")
    (root / f"dev.{ext}").write_text(dev or train, encoding="utf-8")
    return str(root / f"{{split}}.{ext}")


JSON_OK = '{"translation": {"de": "a", "en": "b"}}\n'


@pytest.mark.parametrize(
    ("ext", "train", "dev", "message"),
    [
        ("jsonl", JSON_OK + '{"translation": {"de": "c", "en": \n', "", r"train\.jsonl, line 2"),
        ("jsonl", JSON_OK, "", r"\[train\]: no language 'fr' in 'translation' records \(has \['de', 'en'\]\)"),
        ("jsonl", '{"de": "a", "xx": "b"}\n', "", r"\[train\]: no column 'fr' \(columns are \['de', 'xx'\]\)"),
        ("jsonl", "", "", r"train\.jsonl is empty"),
        ("tsv", "de\tfr\na\tb\nc\td\te\n", "", r"cannot parse .*train\.tsv.*line 3"),
        ("tsv", "de\tfr\na\tb\n", "de\tfr\n", r"dev\.tsv: the dev split is empty"),
        ("parquet", "this is not parquet", "", r"cannot parse .*train\.parquet"),
    ],
    ids=["json-syntax", "json-language", "json-column", "json-empty", "tsv-fields", "tsv-empty-split", "parquet"],
)  # fmt: skip
def test_bad_tabular_files(tmp_path: Path, ext: str, train: str, dev: str, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        load_corpus(_files(tmp_path / "c", ext, train, dev), "de", "fr")


def test_unknown_hub_id_offline() -> None:
    with pytest.raises(CorpusError, match=r"'nobody-here/no-such-corpus' is not a local path and the Hugging Face Hub cannot be reached"):  # fmt: skip
        load_corpus("nobody-here/no-such-corpus", "de", "en")


def test_missing_local_path(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no_such_dir: no such file or directory"):
        load_corpus(str(tmp_path / "no_such_dir"), "de", "en")
    with pytest.raises(CorpusError, match=r"no files match .*\{split\}\.tsv"):
        load_corpus(str(tmp_path / "{split}.tsv"), "de", "en")


def test_cli_prints_corpus_errors_without_a_traceback(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(["fit", "--data.source=/nonexistent/corpus", f"--data.cache_dir={tmp_path}",
                    "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: /nonexistent/corpus: no such file or directory" in err
    assert "Traceback" not in err
