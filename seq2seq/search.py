"""Greedy and beam search over a whole batch at once, written against the narrow interface

    state = model.encode(src, src_lengths)
    log_probs, state, attn = model.decode_step(prev_tokens, state)
    state.index_select(rows, sentences)

so any object offering these (a fake model with hand-built scores in the tests) can be searched.
``decode_step`` must return a fresh ``log_probs`` tensor: the search edits it in place.

Both searches drop sentences from the batch once their result is settled, so a batch costs
about what its sentences need rather than what its longest output needs. Dropping copies the
encoder outputs of the remaining rows, so it waits until an eighth of the batch is settled.
``index_select`` keeps the state rows ``rows`` and the encoder rows ``sentences``: the hypotheses
of a sentence share its encoder outputs. States may offer ``reorder_beams(rows)``, a cheaper
``index_select`` for rows that only move within a sentence's beam. Beam search keeps
``beam_size`` unfinished hypotheses per sentence and moves ended ones to a finished list
(as fairseq does): an EOS candidate is kept if it ranks among the best ``beam_size`` of all
candidates. A sentence is done at its length limit, once no unfinished hypothesis can still
beat the ``n_best``-th finished one, or once ``beam_size`` finished ones score above every
unfinished one (where the beam would hold nothing but finished hypotheses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID

NEG_INF = float("-inf")
NOT_CONTINUATIONS = [EOS_ID, PAD_ID, BOS_ID]


@dataclass
class SearchResult:
    """n-best hypotheses per sentence, best first; tokens exclude BOS and EOS.

    ``scores`` is padded with -inf where a sentence has fewer than ``n_best`` hypotheses
    (only possible when the length limit leaves fewer distinct outputs).
    """

    tokens: list[list[list[int]]]  # [batch][n_best][length]
    scores: torch.Tensor  # (batch, n_best): log-probability of tokens + EOS
    attention: list[list[torch.Tensor]] | None = None  # [batch][n_best]: (length + 1, src_len)


MAX_RATIO = 3.0  # default limit on output subwords per source subword (translate, streams, commands)


def length_limits(src_lengths: torch.Tensor, max_length: int, max_ratio: float | None) -> torch.Tensor:
    """Per-sentence limit on output tokens (EOS included): a number, optionally a ratio of the source."""
    limits = torch.full_like(src_lengths, max_length)
    if max_ratio is not None:
        limits = torch.minimum(limits, (src_lengths.float() * max_ratio).ceil().long().clamp(min=2))
    return limits.clamp(min=1)


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT length penalty ((5 + |y|) / 6) ** alpha; alpha = 0 ranks by raw log-probability."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def counts(token: torch.Tensor, silent: torch.Tensor | None) -> torch.Tensor:
    """1 where ``token`` counts towards ``min_length``: every token, or those not ``silent``."""
    return torch.ones_like(token) if silent is None else (~silent[token]).long()


def split_eos(log_probs: torch.Tensor) -> torch.Tensor:
    """Take the EOS scores out of ``log_probs`` and return them. In place, EOS, PAD and BOS
    become -inf there: what is left are the ways to continue (PAD and BOS are never output)."""
    eos = log_probs[..., EOS_ID].clone()
    log_probs[..., NOT_CONTINUATIONS] = NEG_INF
    return eos


class History:
    """Per-step choices of every sentence in the original batch, to rebuild hypotheses at the end.

    Step ``t`` stores, for each surviving hypothesis, its new token and the index of the
    hypothesis it extends; searches write only the rows of sentences still in the batch.
    """

    def __init__(self, batch: int, width: int, src_len: int, device: torch.device, attention: bool):
        self.shape, self.src_len, self.device = (batch, width), src_len, device
        self.tokens: list[torch.Tensor] = []  # per step: (batch, width)
        self.parents: list[torch.Tensor] = []  # per step: (batch, width)
        # per step: (batch, width, src_len), kept only when asked for
        self.attention: list[torch.Tensor] | None = [] if attention else None

    def record(
        self,
        live: torch.Tensor,
        token: torch.Tensor,
        parent: torch.Tensor,
        attn: torch.Tensor | None,
    ) -> None:
        """live (n,): original sentence rows; token, parent (n, width); attn (n, width, src_len)."""
        tok = torch.full(self.shape, EOS_ID, dtype=torch.long, device=self.device)
        par = torch.zeros(self.shape, dtype=torch.long, device=self.device)
        tok[live], par[live] = token, parent
        self.tokens.append(tok)
        self.parents.append(par)
        if self.attention is not None and attn is not None:
            att = torch.zeros(*self.shape, self.src_len, device=self.device)
            att[live] = attn
            self.attention.append(att)

    def backtrack(
        self, ends: list[list[tuple[int, int]]], src_lengths: list[int]
    ) -> tuple[list, list | None]:
        """ends[b] = [(t, j)]: hypothesis j's prefix at step t, then EOS. Tokens (and attention) per end."""
        toks = torch.stack(self.tokens).tolist() if self.tokens else []  # [step][batch][width]
        pars = torch.stack(self.parents).tolist() if self.parents else []
        tokens, attention = [], [] if self.attention is not None else None
        for b, sentence_ends in enumerate(ends):
            tokens.append([])
            if attention is not None:
                attention.append([])
            for t, j in sentence_ends:
                seq, path = [], [j]  # path[i]: the hypothesis at step t - i
                for s in range(t - 1, -1, -1):
                    seq.append(toks[s][b][j])
                    j = pars[s][b][j]
                    path.append(j)
                tokens[b].append(seq[::-1])
                if attention is not None:
                    rows = [self.attention[s][b, jj, : src_lengths[b]] for s, jj in enumerate(path[::-1])]
                    attention[b].append(torch.stack(rows))  # (t + 1, src_len)
        return tokens, attention


def worth_compacting(settled: torch.Tensor) -> bool:
    """Drop settled rows once they are an eighth of the batch: each dropped row saves a whole
    decoder step per remaining step, while compacting copies every remaining row's state once."""
    return int(settled.sum()) * 8 >= settled.numel()


@torch.inference_mode()
def greedy_search(
    model,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_length: int = 100,
    max_ratio: float | None = None,
    min_length: int = 0,
    return_attention: bool = False,
    silent: torch.Tensor | None = None,
) -> SearchResult:
    """Pick the most likely token at each step, for the whole batch at once.

    EOS is barred before ``min_length`` tokens and forced at the length limit; with ``silent``
    (vocab,) True for pieces that show no text (a lone "▁"), only the other tokens count.
    """
    batch, device = src.size(0), src.device
    state = model.encode(src, src_lengths)
    limits = length_limits(src_lengths, max_length, max_ratio)
    live = torch.arange(batch, device=device)  # original row of each row still decoding
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)  # running log-probability, live rows only
    final = torch.zeros(batch, device=device)
    ends: list[list[tuple[int, int]]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)  # ended rows not yet dropped
    hist = History(batch, 1, src.size(1), device, return_attention)
    shown = torch.zeros(batch, dtype=torch.long, device=device)  # tokens that count for min_length
    for t in range(int(limits.max())):
        log_probs, state, attn = model.decode_step(prev, state)  # (live, vocab), (live, src_len)
        eos = split_eos(log_probs)  # (live,)
        best, token = log_probs.max(dim=-1)  # best non-EOS token (live,)
        at_limit = t + 1 >= limits[live]
        stop = ~done & (at_limit | ((shown >= min_length) & (eos >= best)))
        shown += counts(token, silent)
        scores += torch.where(stop, eos, best)
        hist.record(live, token[:, None], torch.zeros_like(token)[:, None], attn[:, None])
        if stop.any():
            ended = stop.nonzero().squeeze(1)
            final[live[ended]] = scores[ended]
            for b in live[ended].tolist():
                ends[b].append((t, 0))
            done |= stop
            if done.all():
                break
            if worth_compacting(done):
                keep = (~done).nonzero().squeeze(1)
                state, live, scores, token, done, shown = (
                    state.index_select(keep),
                    live[keep],
                    scores[keep],
                    token[keep],
                    done[keep],
                    shown[keep],
                )
        prev = token
    tokens, attention = hist.backtrack(ends, src_lengths.tolist())
    return SearchResult(tokens, final[:, None], attention)


class Finished:
    """The best ``width`` ended hypotheses of each sentence, ranked by length-penalized score."""

    def __init__(self, batch: int, width: int, alpha: float, device: torch.device):
        self.alpha = alpha
        self.norm = torch.full((batch, width), NEG_INF, device=device)  # ranking score
        self.raw = torch.full((batch, width), NEG_INF, device=device)  # log-probability
        self.ref = torch.zeros(batch, width, dtype=torch.long, device=device)  # step * width + beam

    def add(
        self, live: torch.Tensor | slice, t: int | torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        """candidates (live, width): scores of hypotheses ending with EOS at step t (-inf: none);
        ``t`` may be (live, 1), a step per sentence. Returns which of [kept, candidates] were kept
        (live, width): indices below ``width`` are the ones kept before."""
        width = candidates.size(1)
        norm = candidates / length_penalty(torch.as_tensor(t + 1, device=candidates.device), self.alpha)
        ref = t * width + torch.arange(width, device=candidates.device).expand_as(candidates)
        all_norm = torch.cat([self.norm[live], norm], dim=1)  # (live, 2 * width)
        self.norm[live], pick = all_norm.topk(width, dim=1)
        self.raw[live] = torch.cat([self.raw[live], candidates], dim=1).gather(1, pick)
        self.ref[live] = torch.cat([self.ref[live], ref], dim=1).gather(1, pick)
        return pick

    def join(self, batch: int) -> None:
        """Append ``batch`` sentences with nothing ended yet (for streams, seq2seq/beam_stream.py)."""
        width, device = self.norm.size(1), self.norm.device
        self.norm = torch.cat([self.norm, torch.full((batch, width), NEG_INF, device=device)])
        self.raw = torch.cat([self.raw, torch.full((batch, width), NEG_INF, device=device)])
        self.ref = torch.cat([self.ref, torch.zeros(batch, width, dtype=torch.long, device=device)])

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the sentences ``keep``."""
        self.norm, self.raw, self.ref = self.norm[keep], self.raw[keep], self.ref[keep]

    def settled(
        self, live: torch.Tensor | slice, best_alive: torch.Tensor, limits: torch.Tensor, n_best: int
    ) -> torch.Tensor:
        """(live,) True where the search of a sentence is over: no unfinished hypothesis, even
        ending at its limit, can rank above the n-th best ended one (exact), or ``width`` ended
        hypotheses have log-probabilities above every unfinished one (the beam is all ended)."""
        # log-probabilities only fall, and dividing a negative score by a larger penalty raises it
        bound = best_alive / length_penalty(limits, self.alpha)
        exact = self.norm[live, n_best - 1] >= bound
        all_ended = (self.raw[live] >= best_alive[:, None]).all(1)  # -inf where fewer ended
        return exact | all_ended

    def ends(self, n_best: int, width: int) -> tuple[list[list[tuple[int, int]]], torch.Tensor]:
        """(step, beam) of each sentence's n-best, and their raw scores (batch, n_best)."""
        found = (self.norm[:, :n_best] > NEG_INF).tolist()
        refs = self.ref[:, :n_best].tolist()
        ends = [
            [divmod(r, width) for r, ok in zip(row, oks, strict=True) if ok]
            for row, oks in zip(refs, found, strict=True)
        ]
        return ends, self.raw[:, :n_best].clone()


@torch.inference_mode()
def beam_search(
    model,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    beam_size: int = 5,
    n_best: int = 1,
    max_length: int = 100,
    max_ratio: float | None = None,
    min_length: int = 0,
    alpha: float = 0.0,
    return_attention: bool = False,
    silent: torch.Tensor | None = None,
) -> SearchResult:
    """Keep the ``beam_size`` best unfinished prefixes per sentence; rank ended ones by
    length-penalized score (``alpha``) and return the ``n_best`` best. ``min_length`` and
    ``silent`` as in ``greedy_search``."""
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    batch, k, device = src.size(0), beam_size, src.device
    state = model.encode(src, src_lengths)
    # (live * k, ...) rows from here on: hypothesis j of live sentence i is row i * k + j
    sentences = torch.arange(batch, device=device)
    state = state.index_select(sentences.repeat_interleave(k), sentences)
    limits = length_limits(src_lengths, max_length, max_ratio)
    live = torch.arange(batch, device=device)  # original sentence of each live sentence
    scores = torch.full((batch, k), NEG_INF, device=device)  # (live, k): prefix log-probabilities
    scores[:, 0] = 0.0  # all beams start identical: keep one so the first step fans out
    prev = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    finished = Finished(batch, k, alpha, device)
    hist = History(batch, k, src.size(1), device, return_attention)
    shown = torch.zeros(batch, k, dtype=torch.long, device=device)  # (live, k): as in greedy_search

    for t in range(int(limits.max())):
        # log_probs (live * k, vocab), attn (live * k, src_len)
        log_probs, state, attn = model.decode_step(prev, state)
        n, vocab = live.numel(), log_probs.size(-1)
        log_probs = log_probs.view(n, k, vocab)
        eos = split_eos(log_probs)  # (live, k)
        lim = limits[live]
        at_limit = t + 1 >= lim  # (live,): these must end now

        # Continue: the best k non-EOS extensions of all beams (none at the limit).
        alive = scores.masked_fill(at_limit[:, None], NEG_INF)
        cand = log_probs.add_(alive[:, :, None]).view(n, k * vocab)
        new_scores, flat = cand.topk(k, dim=1)  # (live, k)
        parent, token = flat // vocab, flat % vocab

        # End: EOS after each beam, if allowed now and it ranks among the best k candidates.
        may_end = at_limit[:, None] | (shown >= min_length)  # (live, k)
        ending = torch.where(may_end, scores + eos, NEG_INF)  # (live, k)
        shown = shown.gather(1, parent) + counts(token, silent)
        kth = torch.cat([new_scores, ending], dim=1).topk(k, dim=1).values[:, -1:]
        finished.add(live, t, ending.masked_fill(ending < kth, NEG_INF))
        hist.record(live, token, parent, attn.view(n, k, -1) if return_attention else None)

        # Settled sentences stay in the batch with -inf scores (producing nothing) until dropped.
        settled = at_limit | finished.settled(live, new_scores[:, 0], lim, n_best)
        if settled.all():
            break
        scores = new_scores.masked_fill(settled[:, None], NEG_INF)
        if worth_compacting(settled):  # follow hypotheses to their slots, drop settled sentences
            keep = (~settled).nonzero().squeeze(1)
            state = state.index_select((keep[:, None] * k + parent[keep]).view(-1), keep)  # (live' * k,)
            live, scores, token, shown = live[keep], scores[keep], token[keep], shown[keep]
        else:  # follow each hypothesis to its new slot within its sentence
            rows = (torch.arange(n, device=device)[:, None] * k + parent).view(-1)  # (live * k,)
            reorder = getattr(state, "reorder_beams", state.index_select)
            state = reorder(rows)
        prev = token.view(-1)

    ends, best = finished.ends(n_best, k)
    tokens, attention = hist.backtrack(ends, src_lengths.tolist())
    return SearchResult(tokens, best, attention)


def search(model, src: torch.Tensor, src_lengths: torch.Tensor, beam_size: int = 1, **kwargs) -> SearchResult:
    """Greedy for beam size 1, beam search otherwise."""
    if beam_size <= 1:
        kwargs.pop("n_best", None)
        kwargs.pop("alpha", None)
        return greedy_search(model, src, src_lengths, **kwargs)
    return beam_search(model, src, src_lengths, beam_size, **kwargs)


__all__ = ["SearchResult", "beam_search", "greedy_search", "search", "length_penalty"]
