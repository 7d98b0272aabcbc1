"""Greedy and beam search over a whole batch at once, written against the narrow interface

    state = model.encode(src, src_lengths)
    log_probs, state, attn = model.decode_step(prev_tokens, state)
    state.index_select(rows)

so any object offering these (a fake model with hand-built scores in the tests) can be searched.
Beam search keeps ``(batch, beam, ...)`` tensors; each step is a small named function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq.tokenizer import BOS_ID, EOS_ID

NEG_INF = float("-inf")


@dataclass
class SearchResult:
    """n-best hypotheses per sentence, best first; tokens exclude BOS and EOS."""

    tokens: list[list[list[int]]]  # [batch][n_best][length]
    scores: torch.Tensor  # (batch, n_best): log-probability of tokens + EOS
    attention: list[list[torch.Tensor]] | None = None  # [batch][n_best]: (length + 1, src_len)


def length_limits(src_lengths: torch.Tensor, max_length: int, max_ratio: float | None) -> torch.Tensor:
    """Per-sentence limit on output tokens (EOS included): a number, optionally a ratio of the source."""
    limits = torch.full_like(src_lengths, max_length)
    if max_ratio is not None:
        limits = torch.minimum(limits, (src_lengths.float() * max_ratio).ceil().long().clamp(min=2))
    return limits


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT length penalty ((5 + |y|) / 6) ** alpha; alpha = 0 ranks by raw log-probability."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def constrain(
    log_probs: torch.Tensor, finished: torch.Tensor, step: int, min_length: int, limits: torch.Tensor
) -> torch.Tensor:
    """Apply the rules to next-token scores (batch, beam, vocab).

    Finished hypotheses may only repeat EOS at no cost (their score stays frozen); EOS is
    barred before ``min_length``; a hypothesis at its length limit must end.
    """
    log_probs = log_probs.clone()
    eos = log_probs[..., EOS_ID].clone()
    if step < min_length:
        eos.fill_(NEG_INF)
    at_limit = (step + 1 >= limits)[:, None].expand_as(finished)  # (batch, beam)
    log_probs[at_limit] = NEG_INF
    eos = torch.where(finished, torch.zeros_like(eos), eos)
    log_probs[finished] = NEG_INF
    log_probs[..., EOS_ID] = eos
    return log_probs


def top_k(scores: torch.Tensor, log_probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best k extensions over all beams: new scores, origin beam and token, each (batch, k)."""
    batch, beam, vocab = log_probs.shape
    candidates = (scores[:, :, None] + log_probs).view(batch, beam * vocab)
    best, flat = candidates.topk(k, dim=1)
    return best, flat // vocab, flat % vocab


def strip(seq: list[int]) -> list[int]:
    """Tokens up to (not including) the first EOS."""
    return seq[: seq.index(EOS_ID)] if EOS_ID in seq else seq


@torch.inference_mode()
def greedy_search(
    model,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_length: int = 100,
    max_ratio: float | None = None,
    min_length: int = 0,
    return_attention: bool = False,
) -> SearchResult:
    """Pick the most likely token at each step, for the whole batch at once."""
    batch = src.size(0)
    state = model.encode(src, src_lengths)
    limits = length_limits(src_lengths, max_length, max_ratio)
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch, 1, dtype=torch.bool, device=src.device)
    scores = torch.zeros(batch, device=src.device)
    steps, attns = [], []
    for t in range(int(limits.max())):
        log_probs, state, attn = model.decode_step(prev, state)  # (batch, vocab), (batch, src_len)
        log_probs = constrain(log_probs[:, None], finished, t, min_length, limits)[:, 0]
        step_scores, prev = log_probs.max(dim=-1)  # (batch,)
        scores += step_scores
        finished |= (prev == EOS_ID)[:, None]
        steps.append(prev)
        attns.append(attn)
        if finished.all():
            break
    tokens = torch.stack(steps, 1).tolist()  # (batch, steps)
    out = [[strip(seq)] for seq in tokens]
    attention = None
    if return_attention:
        att = torch.stack(attns, 1)  # (batch, steps, src_len)
        lens = src_lengths.tolist()
        attention = [[att[b, : len(out[b][0]) + 1, : lens[b]]] for b in range(batch)]
    return SearchResult(out, scores[:, None], attention)


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
) -> SearchResult:
    """Keep the ``beam_size`` best prefixes per sentence; rank the finished ones by length-penalized score."""
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    batch, k, device = src.size(0), beam_size, src.device
    state = model.encode(src, src_lengths)
    state = state.index_select(torch.arange(batch, device=device).repeat_interleave(k))  # batch * beam rows
    limits = length_limits(src_lengths, max_length, max_ratio)

    scores = torch.full((batch, k), NEG_INF, device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one alive so the first step fans out
    tokens = torch.empty(batch, k, 0, dtype=torch.long, device=device)  # (batch, beam, t)
    lengths = torch.zeros(batch, k, dtype=torch.long, device=device)  # tokens incl. EOS
    finished = torch.zeros(batch, k, dtype=torch.bool, device=device)
    attn_hist = torch.empty(batch * k, 0, src.size(1), device=device)  # (batch * beam, t, src_len)
    prev = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    row_base = (torch.arange(batch, device=device) * k)[:, None]  # (batch, 1)

    for t in range(int(limits.max())):
        log_probs, state, attn = model.decode_step(prev, state)  # (batch * beam, vocab)
        log_probs = constrain(log_probs.view(batch, k, -1), finished, t, min_length, limits)
        scores, origin, token = top_k(scores, log_probs, k)  # each (batch, beam)

        # Reorder everything that follows a hypothesis to its new beam slot.
        rows = (row_base + origin).view(-1)  # (batch * beam,)
        was_finished = finished.gather(1, origin)
        lengths = lengths.gather(1, origin) + (~was_finished).long()
        finished = was_finished | (token == EOS_ID)
        tokens = torch.cat([tokens.gather(1, origin[..., None].expand_as(tokens)), token[..., None]], dim=2)
        state = state.index_select(rows)
        if return_attention:  # each hypothesis keeps the attention history of its parent
            attn_hist = torch.cat([attn_hist, attn[:, None, :]], dim=1)[rows]  # (batch * beam, t + 1, src_len)
        prev = token.view(-1)
        if finished.all():
            break

    ranked = (scores / length_penalty(lengths, alpha)).argsort(dim=1, descending=True)[:, :n_best]
    best_scores = scores.gather(1, ranked)  # (batch, n_best): raw log-probabilities
    seqs = tokens.tolist()
    out = [[strip(seqs[b][j]) for j in ranked[b].tolist()] for b in range(batch)]
    attention = None
    if return_attention:
        lens = src_lengths.tolist()
        attention = [
            [attn_hist[b * k + j, : len(out[b][i]) + 1, : lens[b]] for i, j in enumerate(ranked[b].tolist())]
            for b in range(batch)
        ]
    return SearchResult(out, best_scores, attention)


def search(model, src: torch.Tensor, src_lengths: torch.Tensor, beam_size: int = 1, **kwargs) -> SearchResult:
    """Greedy for beam size 1, beam search otherwise."""
    if beam_size <= 1:
        kwargs.pop("n_best", None)
        kwargs.pop("alpha", None)
        return greedy_search(model, src, src_lengths, **kwargs)
    return beam_search(model, src, src_lengths, beam_size, **kwargs)


__all__ = ["SearchResult", "beam_search", "greedy_search", "search", "length_penalty"]
