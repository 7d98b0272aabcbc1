"""Continuous batching for beam search (seq2seq/beam_stream.py): sentences that join a running beam
search at any step get exactly the n-best that ``beam_search`` gives each of them alone."""

from __future__ import annotations

import pytest
import torch
from test_search import batch_of, random_model, random_sources
from test_stream import run

from seq2seq.beam_stream import BeamStream
from seq2seq.search import beam_search
from seq2seq.translator import Translator

OPTIONS = [
    {"max_length": 10, "max_ratio": None, "min_length": 0},
    {"max_length": 3, "max_ratio": None, "min_length": 1},  # ends at its length limit
    {"max_length": 30, "max_ratio": 1.5, "min_length": 2},
]


def alone(model, source: list[int], beam_size: int, n_best: int, alpha: float, **kwargs) -> list:
    out = beam_search(model, *batch_of([source]), beam_size=beam_size, n_best=n_best, alpha=alpha, **kwargs)
    return [(tokens, float(out.scores[0, j])) for j, tokens in enumerate(out.tokens[0])]


@pytest.mark.parametrize(
    "input_feeding,attention,beam_size,n_best,alpha",
    [(False, "general", 3, 2, 0.0), (True, "additive", 4, 1, 1.0), (False, "dot", 2, 2, 0.6)],
)
def test_sentences_joining_at_any_step_search_as_alone(input_feeding, attention, beam_size, n_best, alpha):
    model = random_model(5, input_feeding=input_feeding, attention=attention)
    sources = random_sources(5, 14)
    silent = torch.zeros(7, dtype=torch.bool)
    silent[5] = True  # token 5 shows no text: it does not count towards min_length
    # several at once, one at a time, into a running batch, and after it ran empty
    steps = [0, 0, 0, 1, 2, 2, 3, 4, 5, 5, 9, 12, 40, 40]
    arrivals: dict[int, list] = {}
    for i, (source, step) in enumerate(zip(sources, steps, strict=True)):
        arrivals.setdefault(step, []).append((i, source, OPTIONS[i % 3]))
    stream = BeamStream(model, beam_size=beam_size, n_best=n_best, alpha=alpha, silent=silent)
    results, ended = run(stream, arrivals)
    assert len(set(ended.values())) > 4  # sentences really left at different steps
    n_hyps = 0
    for i, source in enumerate(sources):
        want = alone(model, source, beam_size, n_best, alpha, silent=silent, **OPTIONS[i % 3])
        assert [tokens for tokens, _ in results[i]] == [tokens for tokens, _ in want]
        assert [score for _, score in results[i]] == pytest.approx([score for _, score in want], abs=1e-5)
        n_hyps += len(want)
    assert n_hyps > len(sources) or n_best == 1  # n-best lists really had several entries


def test_settled_sentences_leave_while_others_search_on():
    model = random_model(6)
    stream = BeamStream(model, beam_size=3)
    stream.add("long", [4, 5, 6, 4, 5, 6], max_length=9, max_ratio=None, min_length=8)
    stream.add("short", [4], max_length=2, max_ratio=None)  # settled by its limit after 2 steps
    first = [key for _ in range(2) for key, _ in stream.step()]
    assert first == ["short"] and len(stream) == 1 and stream.state.hidden.size(0) == 3  # 3 rows left
    stream.add("late", [4], max_length=2, max_ratio=None)
    assert [key for _ in range(2) for key, _ in stream.step()] == ["late"]
    rest = [(key, hyps) for _ in range(5) for key, hyps in stream.step()]
    assert [key for key, _ in rest] == ["long"] and not stream
    assert len(rest[0][1][0][0]) == 8  # min_length 8 kept it searching to its limit (9 with EOS)
    with pytest.raises(ValueError, match="n_best"):
        BeamStream(model, beam_size=2, n_best=3)


def test_translator_sentences_through_a_beam_stream_equal_translate(tiny_checkpoint):
    translator = Translator.from_checkpoint(tiny_checkpoint)
    texts = ["one two three", "four", "seven eight nine ten eleven", "two two", "six five four"]
    expected = translator.translate(texts, beam_size=5, n_best=2)
    alpha = translator.default_length_penalty
    stream = BeamStream(translator.model, beam_size=5, n_best=2, alpha=alpha, silent=translator.silent)
    ids = translator.src_tokenizer.encode(texts)
    results, _ = run(stream, {i: [(i, src, {})] for i, src in enumerate(ids)})  # one new sentence per step
    for i, want in enumerate(expected):
        got = [translator.hypothesis(*hyp) for hyp in results[i]]
        assert [(h.text, h.tokens) for h in got] == [(h.text, h.tokens) for h in want.hypotheses]
        assert [h.score for h in got] == pytest.approx([h.score for h in want.hypotheses], abs=1e-4)
