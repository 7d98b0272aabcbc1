"""Built-in offline translation task: spelled-out numbers and dates in two languages.

Sentences come from ``num2words`` (cardinal numbers) and Babel's CLDR date formats, so the
corpus needs no download, is fully deterministic, and has real word-order changes to align.
"""

from __future__ import annotations

import copy
import datetime
import functools
import random
from typing import Any, Literal

import datasets
from babel import Locale
from babel.dates import format_date
from num2words import CONVERTER_CLASSES, num2words

__all__ = [
    "SUPPORTED_LANGUAGES",
    "build_builtin_corpus",
    "generate_pairs",
    "spell_date",
    "spell_number",
]

# Languages checked to work with both libraries and to give plain-space output (ru and uk
# date formats, for example, contain U+202F narrow no-break spaces, so they are left out).
SUPPORTED_LANGUAGES: tuple[str, ...] = (
    "ca",
    "cs",
    "da",
    "de",
    "en",
    "es",
    "fi",
    "fr",
    "it",
    "nl",
    "no",
    "pl",
    "pt",
    "ro",
    "sv",
)

MAX_NUMBER = 999_999
FIRST_DATE = datetime.date(1900, 1, 1)
LAST_DATE = datetime.date(2099, 12, 31)
_NUM_DAYS = (LAST_DATE - FIRST_DATE).days + 1

_NUMBER_SHARE = 0.5  # the rest are dates
_LONG_DATE_SHARE = 0.1  # "December 5, 2050" instead of "Monday, December 5, 2050"
_MAX_DIGITS = len(str(MAX_NUMBER))
# Distinct (kind, value) keys the sampler can produce: numbers, full dates, long dates.
_CAPACITY = MAX_NUMBER + 1 + 2 * _NUM_DAYS

DateFormat = Literal["full", "long"]
_Key = tuple[str, int]


def _check_language(lang: str) -> None:
    """Raise ValueError if ``lang`` is not in SUPPORTED_LANGUAGES."""
    if lang not in SUPPORTED_LANGUAGES:
        supported = ", ".join(SUPPORTED_LANGUAGES)
        raise ValueError(f"unsupported language {lang!r}; supported languages: {supported}")


@functools.cache
def _locale(lang: str) -> Locale:
    """Parsed Babel locale, cached: parsing on every format_date call dominates its cost."""
    return Locale.parse(lang)


@functools.cache
def _number_converter(lang: str) -> Any:
    """Copy of num2words' converter without number words above MAX_NUMBER.

    ``splitnum`` scans every such word (up to 10**600) on each call; they are skipped for
    values <= MAX_NUMBER anyway, so dropping them keeps the output and is ~6x faster.
    """
    converter = copy.copy(CONVERTER_CLASSES[lang])
    cards = getattr(converter, "cards", None)
    if isinstance(cards, dict):
        converter.cards = type(cards)((k, v) for k, v in cards.items() if k <= MAX_NUMBER)
    return converter


def spell_number(n: int, lang: str) -> str:
    """Cardinal ``n`` spelled out in ``lang``, exactly as ``num2words(n, lang=lang)``."""
    _check_language(lang)
    if 0 <= n <= MAX_NUMBER:
        return str(_number_converter(lang).to_cardinal(n))
    return str(num2words(n, lang=lang))


def spell_date(date: datetime.date, lang: str, format: DateFormat = "full") -> str:
    """``date`` in Babel's CLDR ``full`` (with weekday) or ``long`` format for ``lang``."""
    _check_language(lang)
    return format_date(date, format=format, locale=_locale(lang))


def _draw_key(rng: random.Random) -> _Key:
    """Draw one sentence value: a number with log-uniform digit count, or a date."""
    u = rng.random()
    if u < _NUMBER_SHARE:
        digits = rng.randint(1, _MAX_DIGITS)
        low = 0 if digits == 1 else 10 ** (digits - 1)
        return "number", rng.randint(low, 10**digits - 1)
    kind = "long" if u < _NUMBER_SHARE + _LONG_DATE_SHARE else "full"
    return kind, rng.randrange(_NUM_DAYS)


def _render(key: _Key, lang: str) -> str:
    """Sentence for a drawn key in ``lang``."""
    kind, value = key
    if kind == "number":
        return spell_number(value, lang)
    date = FIRST_DATE + datetime.timedelta(days=value)
    return spell_date(date, lang, format="long" if kind == "long" else "full")


def generate_pairs(src_lang: str, tgt_lang: str, size: int, seed: int = 0) -> list[tuple[str, str]]:
    """Deterministic list of (source, target) sentence pairs, no duplicate sources.

    A shorter ``size`` with the same seed gives a prefix of the longer list.
    """
    _check_language(src_lang)
    _check_language(tgt_lang)
    if src_lang == tgt_lang:
        raise ValueError(f"source and target language must differ, got {src_lang!r} twice")
    if size < 0:
        raise ValueError(f"size must be non-negative, got {size}")
    if size > _CAPACITY:
        raise ValueError(f"size {size} exceeds the {_CAPACITY} distinct sentences available")

    rng = random.Random(seed)
    seen_keys: set[_Key] = set()
    seen_sources: set[str] = set()
    pairs: list[tuple[str, str]] = []
    attempts_left = 20 * size + 1000  # rejection sampling slows down near capacity
    while len(pairs) < size:
        if attempts_left == 0:
            raise ValueError(f"could not draw {size} distinct sentences; ask for fewer")
        attempts_left -= 1
        key = _draw_key(rng)
        if key in seen_keys:  # cheap check before the (slow) spelling
            continue
        seen_keys.add(key)
        source = _render(key, src_lang)
        if source in seen_sources:
            continue
        seen_sources.add(source)
        pairs.append((source, _render(key, tgt_lang)))
    return pairs


def _to_dataset(pairs: list[tuple[str, str]], src_lang: str, tgt_lang: str) -> datasets.Dataset:
    """Two string columns named by language code."""
    features = datasets.Features({src_lang: datasets.Value("string"), tgt_lang: datasets.Value("string")})
    columns = {src_lang: [s for s, _ in pairs], tgt_lang: [t for _, t in pairs]}
    return datasets.Dataset.from_dict(columns, features=features)


def build_builtin_corpus(
    src_lang: str = "en",
    tgt_lang: str = "fr",
    train_size: int = 20000,
    valid_size: int = 500,
    test_size: int = 500,
    seed: int = 0,
) -> datasets.DatasetDict:
    """DatasetDict with disjoint "train", "validation", "test" splits; columns are language codes.

    Test and validation are drawn first, so they stay the same when only train_size changes.
    """
    for name, value in (
        ("train_size", train_size),
        ("valid_size", valid_size),
        ("test_size", test_size),
    ):
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
    pairs = generate_pairs(src_lang, tgt_lang, test_size + valid_size + train_size, seed)
    splits = {
        "test": pairs[:test_size],
        "validation": pairs[test_size : test_size + valid_size],
        "train": pairs[test_size + valid_size :],
    }
    return datasets.DatasetDict(
        {name: _to_dataset(splits[name], src_lang, tgt_lang) for name in ("train", "validation", "test")}
    )
