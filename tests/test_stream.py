"""Continuous batching (seq2seq/stream.py): sentences that join a running decode at any step get
exactly what ``greedy_search`` gives each of them alone."""

from __future__ import annotations

import pytest
import torch
from test_search import batch_of, random_model, random_sources

from seq2seq.search import greedy_search
from seq2seq.stream import GreedyStream, Stream
from seq2seq.translator import Translator


def alone(model, source: list[int], **kwargs) -> tuple[list[int], float]:
    out = greedy_search(model, *batch_of([source]), **kwargs)
    return out.tokens[0][0], float(out.scores[0, 0])


def run(stream: Stream, arrivals: dict[int, list[tuple]]) -> tuple[dict, dict]:
    """Add ``arrivals[step]`` before each step; the hypotheses of each key, and the step it ended at."""
    results, ended, step = {}, {}, 0
    while step <= max(arrivals) or stream:
        for key, source, kwargs in arrivals.get(step, []):
            stream.add(key, source, **kwargs)
        for key, hypotheses in stream.step():
            results[key], ended[key] = hypotheses, step
        step += 1
    return results, ended


@pytest.mark.parametrize("input_feeding,attention", [(False, "general"), (True, "additive")])
def test_sentences_joining_at_any_step_decode_as_alone(input_feeding, attention):
    model = random_model(3, input_feeding=input_feeding, attention=attention)
    sources = random_sources(3, 12)
    silent = torch.zeros(7, dtype=torch.bool)
    silent[5] = True  # token 5 shows no text: it does not count towards min_length
    options = [
        {"max_length": 10, "max_ratio": None, "min_length": 0},
        {"max_length": 3, "max_ratio": None, "min_length": 1},  # ends at its length limit
        {"max_length": 12, "max_ratio": 1.0, "min_length": 2},
    ]
    # several at once, one at a time, into a running batch, and after it ran empty
    steps = [0, 0, 0, 1, 2, 2, 4, 5, 5, 9, 30, 30]
    arrivals: dict[int, list] = {}
    for i, (source, step) in enumerate(zip(sources, steps, strict=True)):
        arrivals.setdefault(step, []).append((i, source, options[i % 3]))
    results, ended = run(GreedyStream(model, silent), arrivals)
    assert len(set(ended.values())) > 3  # sentences really left at different steps
    for i, source in enumerate(sources):
        tokens, score = alone(model, source, silent=silent, **options[i % 3])
        [(got, got_score)] = results[i]
        assert got == tokens
        assert got_score == pytest.approx(score, abs=1e-5)
        assert len(tokens) < options[i % 3]["max_length"]


def test_rows_leave_the_step_they_end_and_join_when_a_share_waits():
    model = random_model(4)
    long, short = [4, 5, 6, 4, 5, 6], [4]
    stream = GreedyStream(model)
    stream.add("long", long, max_length=9, max_ratio=None, min_length=8)  # runs 9 steps
    stream.add("short", short, max_length=2, max_ratio=None)  # ends after 2
    first = [key for _ in range(2) for key, _ in stream.step()]
    assert first == ["short"] and len(stream) == 1
    stream.add("late", short, max_length=2, max_ratio=None)  # one waiting, one decoding: joins now
    assert [key for _ in range(2) for key, _ in stream.step()] == ["late"]
    assert [key for _ in range(5) for key, _ in stream.step()] == ["long"] and not stream
    assert stream.step() == []


def test_translator_sentences_through_a_stream_equal_translate(tiny_checkpoint):
    translator = Translator.from_checkpoint(tiny_checkpoint)
    texts = ["one two three", "four", "seven eight nine ten eleven", "two two", "six five four"]
    expected = translator.translate(texts, beam_size=1)
    stream = GreedyStream(translator.model, translator.silent)
    ids = translator.src_tokenizer.encode(texts)
    arrivals = {i: [(i, src, {})] for i, src in enumerate(ids)}  # one new sentence per step
    results, _ = run(stream, arrivals)
    for i, want in enumerate(expected):
        got = translator.hypothesis(*results[i][0])
        assert (got.text, got.tokens) == (want.text, want.hypotheses[0].tokens)
        assert got.score == pytest.approx(want.hypotheses[0].score, abs=1e-4)
