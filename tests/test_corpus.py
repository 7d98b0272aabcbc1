"""Tests for the built-in numbers-and-dates translation corpus."""

from __future__ import annotations

import datetime
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from num2words import num2words

from seq2seq.corpus import (
    SUPPORTED_LANGUAGES,
    build_builtin_corpus,
    generate_pairs,
    spell_date,
    spell_number,
)

CORE_LANGUAGES = ("en", "fr", "de", "es")
REPO_ROOT = Path(__file__).resolve().parents[1]


def test_core_languages_supported() -> None:
    assert set(CORE_LANGUAGES) <= set(SUPPORTED_LANGUAGES)
    assert list(SUPPORTED_LANGUAGES) == sorted(set(SUPPORTED_LANGUAGES))


def test_spell_number_en_fr_example() -> None:
    assert spell_number(403958, "en") == ("four hundred and three thousand, nine hundred and fifty-eight")
    assert spell_number(403958, "fr") == "quatre cent trois mille neuf cent cinquante-huit"


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", "Monday, December 5, 2050"),
        ("fr", "lundi 5 décembre 2050"),
        ("de", "Montag, 5. Dezember 2050"),
        ("es", "lunes, 5 de diciembre de 2050"),
    ],
)
def test_spell_date_full(lang: str, expected: str) -> None:
    assert spell_date(datetime.date(2050, 12, 5), lang) == expected


def test_spell_date_long_drops_weekday() -> None:
    assert spell_date(datetime.date(2050, 12, 5), "fr", format="long") == "5 décembre 2050"


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_spell_number_matches_num2words(lang: str) -> None:
    # spell_number uses a trimmed copy of the num2words converter for speed.
    for n in (0, 1, 7, 11, 21, 80, 99, 100, 101, 999, 1000, 1001, 20000, 403958, 999999):
        assert spell_number(n, lang) == num2words(n, lang=lang)
    assert spell_number(10**6, lang) == num2words(10**6, lang=lang)


def test_generate_pairs_deterministic() -> None:
    first = generate_pairs("en", "fr", 300, seed=3)
    assert first == generate_pairs("en", "fr", 300, seed=3)
    assert first != generate_pairs("en", "fr", 300, seed=4)


def test_generate_pairs_deterministic_across_processes() -> None:
    code = "from seq2seq.corpus import generate_pairs; print(generate_pairs('en', 'de', 50, seed=9))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
            env={"PYTHONHASHSEED": str(hash_seed), "PYTHONPATH": str(REPO_ROOT)},
        ).stdout
        for hash_seed in (1, 2)
    }
    assert outputs == {repr(generate_pairs("en", "de", 50, seed=9)) + "\n"}


def test_generate_pairs_content() -> None:
    pairs = generate_pairs("en", "fr", 2000, seed=0)
    sources = [s for s, _ in pairs]
    assert len(pairs) == 2000
    assert len(set(sources)) == len(sources)
    assert all(s and t and s.strip() == s and t.strip() == t for s, t in pairs)
    # Roughly half numbers, half dates (dates contain a four-digit year).
    dated = sum(any(ch.isdigit() for ch in s) for s in sources)
    assert 0.35 < dated / len(sources) < 0.65
    assert max(len(s.split()) for s in sources) <= 15
    # Small and large numbers both appear.
    assert any(len(s.split()) == 1 and not any(c.isdigit() for c in s) for s in sources)
    assert any("thousand" in s for s in sources)


def test_generate_pairs_prefix_stable() -> None:
    assert generate_pairs("en", "es", 40) == generate_pairs("en", "es", 100)[:40]


@pytest.mark.parametrize(("src", "tgt"), list(itertools.permutations(CORE_LANGUAGES, 2)))
def test_all_core_directions(src: str, tgt: str) -> None:
    pairs = generate_pairs(src, tgt, 20, seed=1)
    assert len(pairs) == 20
    assert len({s for s, _ in pairs}) == 20
    # The target side is the same sentences as the reverse direction's source side.
    assert [t for _, t in pairs] == [s for s, _ in generate_pairs(tgt, src, 20, seed=1)]


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_every_language_plain_spaces(lang: str) -> None:
    other = "fr" if lang == "en" else "en"
    for s, _ in generate_pairs(lang, other, 200, seed=2):
        assert all(c == " " or not c.isspace() for c in s), repr(s)


@pytest.mark.parametrize("bad", ["xx", "EN", "ru"])
def test_unsupported_language_raises(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad)):
        generate_pairs(bad, "en", 5)
    with pytest.raises(ValueError, match=repr(bad)):
        generate_pairs("en", bad, 5)
    with pytest.raises(ValueError, match=repr(bad)):
        spell_number(3, bad)


def test_invalid_sizes_raise() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        generate_pairs("en", "fr", 10**7)
    with pytest.raises(ValueError, match="non-negative"):
        generate_pairs("en", "fr", -1)
    with pytest.raises(ValueError, match="differ"):
        generate_pairs("en", "en", 5)
    assert generate_pairs("en", "fr", 0) == []


def test_build_builtin_corpus_splits() -> None:
    corpus = build_builtin_corpus("de", "en", train_size=400, valid_size=50, test_size=30, seed=5)
    assert list(corpus) == ["train", "validation", "test"]
    assert [corpus[s].num_rows for s in corpus] == [400, 50, 30]
    for split in corpus.values():
        assert split.column_names == ["de", "en"]
        assert {f.dtype for f in split.features.values()} == {"string"}
    sources = [set(corpus[s]["de"]) for s in corpus]
    assert sum(len(s) for s in sources) == 480
    assert len(set.union(*sources)) == 480
    de, en = generate_pairs("de", "en", 81, seed=5)[80]
    assert corpus["train"][0] == {"de": de, "en": en}


def test_build_builtin_corpus_eval_splits_stable() -> None:
    small = build_builtin_corpus("en", "fr", train_size=10, valid_size=20, test_size=20)
    large = build_builtin_corpus("en", "fr", train_size=100, valid_size=20, test_size=20)
    assert small["test"]["fr"] == large["test"]["fr"]
    assert small["validation"]["en"] == large["validation"]["en"]
    assert small["train"]["en"] == large["train"]["en"][:10]


def test_build_builtin_corpus_empty_split() -> None:
    corpus = build_builtin_corpus("en", "fr", train_size=5, valid_size=0, test_size=0)
    assert corpus["validation"].num_rows == 0
    assert corpus["validation"].column_names == ["en", "fr"]
    with pytest.raises(ValueError, match="valid_size"):
        build_builtin_corpus(valid_size=-1)
