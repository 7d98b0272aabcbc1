"""``seq2seq-suggestions``: export read back through the trainer's own corpus loader, list, clear, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from redis_server import RedisServer

from seq2seq.sources import load_corpus
from serve.store.export import in_validation
from serve.store.suggestions import open_suggestions
from serve.store.suggestions_cli import main

JAN = datetime(2026, 1, 10, tzinfo=timezone.utc).timestamp()
FEB = datetime(2026, 2, 10, tzinfo=timezone.utc).timestamp()


def fill(store) -> None:
    store.add("Ein Hund läuft.", "A dog runs.", "de", "en", at=JAN)
    store.add("Ein Hund läuft.", "A dog is running.", "de", "en", at=FEB)  # supersedes the first
    store.add("Zwei  Katzen\tschlafen.\n", 'Two cats "sleep".', "de", "en", at=FEB)  # whitespace, quotes
    store.add("Hallo", "Bonjour", "de", "fr", at=FEB)  # another pair
    for i in range(30):
        store.add(f"Satz Nummer {i}.", f"Sentence number {i}.", "de", "en", at=FEB + i)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "db" / "suggestions.db"
    store = open_suggestions(path)
    fill(store)
    store.close()
    return path


def corpus_pairs(out: Path) -> dict[str, list[tuple[str, str]]]:
    corpus = load_corpus(str(out), "de", "en")  # what scripts/train.py --data.source OUT does
    return {name: list(zip(ds["src"], ds["tgt"], strict=True)) for name, ds in corpus.items()}


@pytest.mark.parametrize("fmt", ["tsv", "text"])
def test_export_is_read_by_the_trainer(db: Path, tmp_path: Path, fmt: str, capsys) -> None:
    out = tmp_path / "corpus"
    assert (
        main(["--suggestions-db-path", str(db), "export", "--pair", "de-en", "--format", fmt, str(out)]) == 0
    )
    expected = [("Ein Hund läuft.", "A dog is running."), ("Zwei Katzen schlafen.", 'Two cats "sleep".')]
    expected += [(f"Satz Nummer {i}.", f"Sentence number {i}.") for i in range(30)]
    got = corpus_pairs(out)
    assert sorted(got) == ["train", "validation"]
    assert sorted(got["train"] + got["validation"]) == sorted(expected)  # de-duplicated, nothing lost
    assert got["validation"] == [p for p in expected if in_validation(p[0], 0.1)]
    assert 1 <= len(got["validation"]) < len(expected) // 2
    assert "read 33 suggestions" in capsys.readouterr().err
    names = {
        "tsv": ["train.tsv", "validation.tsv"],
        "text": ["train.de", "train.en", "validation.de", "validation.en"],
    }
    assert sorted(p.name for p in out.iterdir()) == names[fmt]


def test_export_since_all_targets_and_no_holdout(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    args = [
        "export",
        "--suggestions-db-path",
        str(db),
        "--pair",
        "de-en",
        str(out),
        "--validation-fraction",
        "0",
    ]
    assert main([*args, "--since", "2026-02-10T00:00:10"]) == 0
    got = corpus_pairs(out)
    assert (
        got["train"]
        == got["validation"]
        == [(f"Satz Nummer {i}.", f"Sentence number {i}.") for i in range(10, 30)]
    )
    assert main([*args, "--all-targets", "--since", "2026-01-01"]) == 0
    assert corpus_pairs(out)["train"][:2] == [
        ("Ein Hund läuft.", "A dog runs."),
        ("Ein Hund läuft.", "A dog is running."),
    ]


def test_list_and_clear(db: Path, capsys) -> None:
    assert main(["list", "--suggestions-db-path", str(db), "--pair", "de-fr"]) == 0
    out, err = capsys.readouterr()
    assert out == "2026-02-10T00:00:00+00:00\tde-fr\tHallo\tBonjour\t-\n"
    assert main(["list", "--suggestions-db-path", str(db), "--limit", "1"]) == 0
    assert capsys.readouterr().out.split("\t")[2] == "Satz Nummer 29."
    assert main(["clear", "--suggestions-db-path", str(db), "--pair", "de-en"]) == 0
    assert "deleted 33 suggestions" in capsys.readouterr().err
    assert [s.q for s in open_suggestions(db).iter()] == ["Hallo"]


def test_redis_shared_storage_through_env(tmp_path: Path) -> None:
    """The installed entry point, the store chosen by SEQ2SEQ_SHARED_STORAGE."""
    with RedisServer(tmp_path / "r") as server:
        fill(open_suggestions(None, server.url))
        env = {**os.environ, "SEQ2SEQ_SHARED_STORAGE": server.url}
        exe = Path(sys.executable).with_name("seq2seq-suggestions")
        run = subprocess.run([str(exe), "export", "--pair", "de-fr", str(tmp_path / "fr")], env=env,
                             capture_output=True, text=True)  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert (tmp_path / "fr" / "train.tsv").read_text(encoding="utf-8") == "de\tfr\nHallo\tBonjour\n"
        run = subprocess.run([str(exe), "clear"], env=env, capture_output=True, text=True)
        assert run.returncode == 0 and "deleted 34 suggestions" in run.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["export", "--pair", "deen", "OUT"], 2, "--pair: 'deen' is not a pair like de-en"),
        (["export", "--pair", "de-en", "--since", "last week", "OUT"], 2, "'last week' is not a date"),
        (["export", "--pair", "en-de", "OUT"], 1, "no en-de suggestions to export"),
        (["export", "--pair", "de-en", "--validation-fraction", "1", "OUT"], 1, "must be in [0, 1)"),
        (["export", "--pair", "de-en", "FILE"], 1, "exists and is not a directory"),
        (["list", "--suggestions-db-path", "MISSING"], 1, "no suggestions database at"),
    ],
)
def test_errors_name_the_problem(
    db: Path, tmp_path: Path, args: list[str], code: int, message: str, capsys
) -> None:
    (tmp_path / "FILE").write_text("x")
    args = [str(tmp_path / a) if a in ("OUT", "FILE", "MISSING") else a for a in args]
    if "--suggestions-db-path" not in args:
        args += ["--suggestions-db-path", str(db)]
    if code == 2:
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
    else:
        assert main(args) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "MISSING").exists()
