"""Greedy and beam search: a fake model with hand-built scores, and tiny random real models
checked against teacher forcing and exhaustive enumeration; then ``Translator.translate``."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch

from seq2seq.batching import collate
from seq2seq.model import Seq2Seq
from seq2seq.search import beam_search, greedy_search, length_penalty, search
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID

A, B, C, D = 4, 5, 6, 7  # word ids of the fake vocabulary (0-3 are PAD, UNK, BOS, EOS)
VOCAB = 8


# -- a fake model: next-token probabilities looked up by prefix ----------------------------------
@dataclass
class FakeState:
    prefixes: list[tuple[int, ...] | None]  # None before the first step
    src_mask: torch.Tensor  # (rows, src_len)

    def index_select(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> FakeState:
        return FakeState([self.prefixes[i] for i in rows.tolist()], self.src_mask[rows])  # all per row


class TableModel:
    """``table[prefix]`` gives {token: probability}; the rest of the mass is spread evenly over the
    other tokens, and prefixes missing from the table use ``default``."""

    def __init__(
        self,
        table: dict[tuple[int, ...], dict[int, float]],
        default: dict[int, float] | None = None,
    ):
        self.table, self.default = table, default or {}

    def log_probs(self, prefix: tuple[int, ...]) -> torch.Tensor:
        dist = self.table.get(prefix, self.default)
        rest = (1.0 - sum(dist.values())) / (VOCAB - len(dist))
        return torch.tensor([dist.get(v, rest) for v in range(VOCAB)]).clamp(min=1e-9).log()

    def score(self, tokens: list[int]) -> float:
        """Exact log-probability of ``tokens`` followed by EOS."""
        seq = [*tokens, EOS_ID]
        return sum(float(self.log_probs(tuple(seq[:i]))[tok]) for i, tok in enumerate(seq))

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> FakeState:
        return FakeState([None] * src.size(0), src != PAD_ID)

    def decode_step(self, prev: torch.Tensor, state: FakeState):
        prefixes = [() if p is None else (*p, t) for p, t in zip(state.prefixes, prev.tolist(), strict=True)]
        log_probs = torch.stack([self.log_probs(p) for p in prefixes])  # fresh: search edits it
        attn = state.src_mask.float() / state.src_mask.sum(1, keepdim=True)  # uniform over the source
        return log_probs, FakeState(prefixes, state.src_mask), attn


def batch_of(sources: list[list[int]]):
    batch = collate(sources, [[] for _ in sources], list(range(len(sources))))
    return batch.src, batch.src_lengths


SRC = batch_of([[A, B, C]])

# Raw log-probability prefers the short "A" (-1.43) over "A C D" (-1.56); with alpha = 1 the
# length penalty divides by 1.17 and 1.5 and prefers "A C D" (-1.22 vs -1.04).
PENALTY_TABLE = TableModel(
    {
        (): {A: 0.6, B: 0.35},
        (A,): {EOS_ID: 0.4, C: 0.55},
        (A, C): {D: 0.8},
        (A, C, D): {EOS_ID: 0.8},
        (B,): {EOS_ID: 0.1, D: 0.8},
    },  # fmt: skip
    default={EOS_ID: 0.5},
)


def test_length_penalty_changes_the_ranking_where_it_should():
    short, long = [A], [A, C, D]
    assert PENALTY_TABLE.score(short) > PENALTY_TABLE.score(long)
    plain = beam_search(PENALTY_TABLE, *SRC, beam_size=3, n_best=2, max_length=10, alpha=0.0)
    assert plain.tokens[0][0] == short
    assert plain.scores[0, 0].item() == pytest.approx(PENALTY_TABLE.score(short), abs=1e-5)
    penalized = beam_search(PENALTY_TABLE, *SRC, beam_size=3, n_best=2, max_length=10, alpha=1.0)
    assert penalized.tokens[0][0] == long
    # scores stay raw log-probabilities; the ranking uses them divided by the penalty
    assert penalized.scores[0, 0].item() == pytest.approx(PENALTY_TABLE.score(long), abs=1e-5)
    norm = penalized.scores[0] / length_penalty(torch.tensor([len(t) + 1 for t in penalized.tokens[0]]), 1.0)
    assert norm[0] >= norm[1]


def test_beam_finds_what_greedy_misses_and_beam_1_is_greedy():
    # Greedy takes A (0.5) and then has only poor choices (<= 0.28); B (0.4) then EOS (0.9) is better.
    model = TableModel({(): {A: 0.5, B: 0.4}, (A,): {A: 0.28, B: 0.26, C: 0.24, D: 0.22},
                        (B,): {EOS_ID: 0.9}}, default={EOS_ID: 0.9})  # fmt: skip
    greedy = greedy_search(model, *SRC, max_length=10)
    assert greedy.tokens[0][0][0] == A
    beam = beam_search(model, *SRC, beam_size=2, max_length=10)
    assert beam.tokens[0][0] == [B]
    assert beam.scores[0, 0].item() == pytest.approx(math.log(0.4) + math.log(0.9), abs=1e-5)
    assert beam.scores[0, 0] > greedy.scores[0, 0]
    one = beam_search(model, *SRC, beam_size=1, max_length=10)
    assert one.tokens == greedy.tokens and torch.allclose(one.scores, greedy.scores)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_min_length_bars_an_early_eos(beam_size):
    eager = TableModel({}, default={EOS_ID: 0.9, A: 0.05})
    free = search(eager, *SRC, beam_size=beam_size, max_length=10)
    assert free.tokens[0][0] == []
    forced = search(eager, *SRC, beam_size=beam_size, max_length=10, min_length=3)
    assert len(forced.tokens[0][0]) == 3  # EOS as soon as allowed, since it is by far the most likely
    assert forced.scores[0, 0].item() == pytest.approx(eager.score(forced.tokens[0][0]), abs=1e-5)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_silent_tokens_do_not_count_for_min_length(beam_size):
    """A is silent (a lone "▁"): after "A", EOS is still barred until a token that shows text."""
    model = TableModel(
        {(): {EOS_ID: 0.7, A: 0.2}, (A,): {EOS_ID: 0.7, A: 0.2, B: 0.05}}, default={EOS_ID: 0.9}
    )
    silent = torch.zeros(VOCAB, dtype=torch.bool)
    silent[A] = True
    counted = search(model, *SRC, beam_size=beam_size, max_length=10, min_length=1)
    assert counted.tokens[0][0] == [A]  # every token counts: "A" alone is allowed
    shown = search(model, *SRC, beam_size=beam_size, max_length=10, min_length=1, silent=silent)
    best = shown.tokens[0][0]
    assert best[-1] != A and not all(silent[best].tolist())  # ends only after a token showing text
    assert shown.scores[0, 0].item() == pytest.approx(model.score(best), abs=1e-5)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_max_length_and_max_ratio_end_every_output(beam_size):
    never = TableModel({}, default={EOS_ID: 1e-6, A: 0.5})
    src, lengths = batch_of([[A], [A, B, C], [A, B, C, D, A]])  # 2, 4, 6 with EOS
    out = search(never, src, lengths, beam_size=beam_size, max_length=100, max_ratio=1.5)
    assert [len(t[0]) for t in out.tokens] == [3 - 1, 6 - 1, 9 - 1]  # ceil(1.5 * len) incl. EOS
    out = search(never, src, lengths, beam_size=beam_size, max_length=7, max_ratio=1.5)
    assert [len(t[0]) for t in out.tokens] == [2, 5, 6]
    for tokens, score in zip(out.tokens, out.scores[:, 0].tolist(), strict=True):
        assert score == pytest.approx(never.score(tokens[0]), abs=1e-4)  # forced EOS is scored too


def test_n_best_is_distinct_and_sorted():
    for alpha in (0.0, 1.0):
        out = beam_search(PENALTY_TABLE, *SRC, beam_size=5, n_best=5, max_length=6, alpha=alpha)
        hyps = out.tokens[0]
        assert len({tuple(h) for h in hyps}) == len(hyps) == 5
        lengths = torch.tensor([len(h) + 1 for h in hyps])
        ranking = out.scores[0] / length_penalty(lengths, alpha)
        assert torch.all(ranking[:-1] >= ranking[1:])
        for h, s in zip(hyps, out.scores[0].tolist(), strict=True):
            assert s == pytest.approx(PENALTY_TABLE.score(h), abs=1e-5)
    with pytest.raises(ValueError, match="n_best"):
        beam_search(PENALTY_TABLE, *SRC, beam_size=2, n_best=3)


# -- tiny random real models ----------------------------------------------------------------------
def random_model(
    seed: int, vocab: int = 7, input_feeding: bool = False, attention: str = "general"
) -> Seq2Seq:
    torch.manual_seed(seed)
    model = Seq2Seq(vocab, vocab, emb_dim=8, enc_hidden=8, enc_layers=1, dec_hidden=16, dropout=0.0,
                    attention=attention, input_feeding=input_feeding).eval()  # fmt: skip
    with torch.no_grad():
        model.output.weight.mul_(4.0)  # peakier distributions: fewer near-ties
    return model


def random_sources(seed: int, n: int, vocab: int = 7) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab, (int(torch.randint(1, 7, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]  # fmt: skip


def teacher_forced(model: Seq2Seq, source: list[int], outputs: list[list[int]]) -> tuple[torch.Tensor, list]:
    """Log-probabilities of each output + EOS, and the attention, by one teacher-forced forward pass."""
    src, lengths = batch_of([source] * len(outputs))
    batch = collate([source] * len(outputs), outputs, list(range(len(outputs))))
    with torch.no_grad():
        logits, attn = model(src, lengths, batch.tgt_in)  # (n, tgt_len, vocab), (n, tgt_len, src_len)
    picked = logits.log_softmax(-1).gather(2, batch.tgt_out[..., None]).squeeze(2)  # (n, tgt_len)
    real = torch.arange(picked.size(1))[None, :] <= torch.tensor([len(o) for o in outputs])[:, None]
    scores = picked.masked_fill(~real, 0.0).sum(1)
    return scores, [attn[i, : len(o) + 1] for i, o in enumerate(outputs)]


@pytest.mark.parametrize("input_feeding,attention", [(False, "general"), (True, "additive"), (False, "dot")])
def test_scores_and_attention_equal_teacher_forcing(input_feeding, attention):
    model = random_model(0, input_feeding=input_feeding, attention=attention)
    sources = random_sources(0, 5)
    src, lengths = batch_of(sources)
    for beam in (1, 3):
        out = search(
            model,
            src,
            lengths,
            beam_size=beam,
            n_best=min(beam, 3),
            max_length=8,
            return_attention=True,
        )
        for b, source in enumerate(sources):
            scores, attn = teacher_forced(model, source, out.tokens[b])
            assert torch.allclose(out.scores[b, : len(out.tokens[b])], scores, atol=1e-4)
            for j, tokens in enumerate(out.tokens[b]):
                assert EOS_ID not in tokens and len(tokens) <= 7
                got = out.attention[b][j]
                assert got.shape == (len(tokens) + 1, len(source) + 1)
                assert torch.allclose(got.sum(1), torch.ones(len(tokens) + 1), atol=1e-5)
                assert torch.allclose(got, attn[j][:, : len(source) + 1], atol=1e-5)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_equals_one_by_one(seed):
    model = random_model(seed)
    sources = random_sources(seed, 10)  # enough sentences that settled ones are dropped mid-batch
    src, lengths = batch_of(sources)
    for kwargs in ({"beam_size": 1}, {"beam_size": 4, "n_best": 3}, {"beam_size": 3, "alpha": 1.0}):
        together = search(model, src, lengths, max_length=12, return_attention=True, **kwargs)
        for b, source in enumerate(sources):
            alone = search(model, *batch_of([source]), max_length=12, return_attention=True, **kwargs)
            assert together.tokens[b] == alone.tokens[0]
            assert torch.allclose(together.scores[b], alone.scores[0], atol=1e-5)
            for x, y in zip(together.attention[b], alone.attention[0], strict=True):
                assert torch.allclose(x, y, atol=1e-5)


def enumerate_outputs(model: Seq2Seq, source: list[int], max_length: int, alpha: float):
    """Every output of at most ``max_length`` tokens (EOS included), best first, with raw scores."""
    words = [v for v in range(model.output.out_features) if v not in (PAD_ID, BOS_ID, EOS_ID)]
    outputs = [list(seq) for n in range(max_length) for seq in itertools.product(words, repeat=n)]
    scores, _ = teacher_forced(model, source, outputs)
    ranking = scores / length_penalty(torch.tensor([len(o) + 1 for o in outputs]), alpha)
    order = ranking.argsort(descending=True).tolist()
    return [outputs[i] for i in order], scores[order]


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_exhaustive_optimum(seed, alpha):
    model, source, max_length = random_model(seed), random_sources(seed, 1)[0], 4
    best, best_scores = enumerate_outputs(model, source, max_length, alpha)
    # A beam holding every output (1 + 4 + 16 + 64 = 85 over 4 words) is exhaustive search.
    out = beam_search(
        model,
        *batch_of([source]),
        beam_size=len(best),
        n_best=3,
        max_length=max_length,
        alpha=alpha,
    )
    assert out.tokens[0] == best[:3]
    assert torch.allclose(out.scores[0], best_scores[:3], atol=1e-4)
    # A beam as wide as the vocabulary is exhaustive for one token + EOS (not beyond in general).
    best2, _ = enumerate_outputs(model, source, 2, alpha)
    out = beam_search(model, *batch_of([source]), beam_size=7, max_length=2, alpha=alpha)
    assert out.tokens[0][0] == best2[0]


def test_greedy_matches_stepwise_argmax():
    model, source = random_model(8), random_sources(8, 1)[0]
    out = greedy_search(model, *batch_of([source]), max_length=6)
    prefix: list[int] = []
    for _ in range(6):  # recompute greedy by re-running the model on each prefix
        batch = collate([source], [prefix], [0])
        with torch.no_grad():
            logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        logits[0, -1, [PAD_ID, BOS_ID]] = float("-inf")  # never outputs
        nxt = int(logits[0, -1].argmax())
        if nxt == EOS_ID or len(prefix) == 5:
            break
        prefix.append(nxt)
    assert out.tokens[0][0] == prefix


# -- Translator.translate on the tiny trained checkpoint -----------------------------------------
@pytest.fixture(scope="module")
def translator(tiny_checkpoint):
    from seq2seq import Translator

    return Translator.from_checkpoint(tiny_checkpoint)


def test_translate_empty_long_and_order(translator):
    texts = ["", "seventy-four", "twenty-two thousand and five " * 150, "five hundred"]
    got = translator.translate(texts, beam_size=3, n_best=2, max_length=20, max_tokens=64)
    assert [t.source for t in got] == texts
    assert got[0].source_tokens == [] and got[0].hypotheses
    assert len(got[2].source_tokens) > 64  # longer than the batch budget: still translated alone
    for t in got:
        assert 1 <= len(t.hypotheses) <= 2
        assert all(len(h.tokens) <= 19 for h in t.hypotheses)
        assert t.text == t.hypotheses[0].text and t.score == t.hypotheses[0].score
    alone = [translator.translate([text], beam_size=3, n_best=2, max_length=20)[0] for text in texts]
    assert [t.text for t in alone] == [t.text for t in got]
    assert [t.score for t in alone] == pytest.approx([t.score for t in got], abs=1e-4)
    assert translator.translate([]) == []
    with pytest.raises(ValueError, match="n_best"):
        translator.translate(["x"], beam_size=2, n_best=3)


def test_length_penalty_defaults_to_the_models_own(tiny_checkpoint, tmp_path):
    from seq2seq import Translator

    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["length_penalty"] = 2.0
    torch.save(ckpt, tmp_path / "alpha2.ckpt")
    translator = Translator.from_checkpoint(tmp_path / "alpha2.ckpt")
    assert translator.default_length_penalty == 2.0 and translator.metadata["length_penalty"] == 2.0
    texts = ["seventy-four", "Monday, December 5, 2050", "three hundred and five", "nine"]

    def rankings(**alpha):
        got = translator.translate(texts, beam_size=4, n_best=4, max_length=20, **alpha)
        return [[h.text for h in t.hypotheses] for t in got]

    assert rankings() == rankings(length_penalty=2.0)
    assert rankings() != rankings(length_penalty=0.0)  # alpha 2 really reorders some n-best list


@pytest.mark.parametrize("beam_size", [1, 4])
def test_translate_attention_shapes(translator, beam_size):
    done = []
    (t,) = translator.translate(["five hundred and eighty-eight"], beam_size=beam_size, n_best=min(beam_size, 2),
                                return_attention=True, progress=done.append)  # fmt: skip
    assert done == [1]
    for h in t.hypotheses:
        att = torch.tensor(h.attention)
        assert att.shape == (len(h.tokens) + 1, len(t.source_tokens) + 1)
        assert torch.allclose(att.sum(1), torch.ones(len(h.tokens) + 1), atol=1e-5)


def test_translator_reads_the_key_the_training_module_writes():
    from seq2seq import module, translator

    assert translator.CHECKPOINT_KEY == module.CHECKPOINT_KEY
