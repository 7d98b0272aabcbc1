"""Continuous batching for beam search: sentences join a running beam search between decoder steps
and leave it the step their search is settled.

The greedy version (``seq2seq/stream.py``) explains why a server wants this. Beam search needs
more per sentence than a token list: ``beam_size`` state rows (hypothesis j of sentence i is row
i * beam_size + j), a step count of its own (the length penalty and the length limit depend on
it), and its ended hypotheses (``Finished``, with their tokens, since no ``History`` spans the
sentences' different first steps). Each sentence gets exactly ``beam_search``'s rules, tested
against it alone.

    stream = BeamStream(model, beam_size=5, n_best=1, alpha=0.6, silent=silent)
    stream.add("a", src_ids)
    while stream:
        for key, hypotheses in stream.step(): ...   # [(tokens, score)], best first
"""

from __future__ import annotations

from collections.abc import Hashable

import torch

from seq2seq.search import NEG_INF, Finished, counts, split_eos
from seq2seq.stream import Stream
from seq2seq.tokenizer import BOS_ID

WIDEN = 16  # token columns added at a time to the hypotheses' token tensors


class BeamStream(Stream):
    """Beam search over a batch whose sentences come and go between steps (see the module doc)."""

    TENSORS = ("steps", "limits", "min_length", "scores", "shown", "prev", "seqs", "ended")

    def __init__(
        self,
        model,
        beam_size: int = 5,
        n_best: int = 1,
        alpha: float = 0.0,
        silent: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ):
        if not 1 <= n_best <= beam_size:
            raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
        super().__init__(model, silent, device)
        self.k, self.n_best = beam_size, n_best
        self.finished = Finished(0, beam_size, alpha, self.device)  # (sentences, k) each
        self.scores: torch.Tensor | None = None  # (sentences, k): prefix log-probabilities
        self.prev: torch.Tensor | None = None  # (sentences, k): each hypothesis' last token
        self.seqs: torch.Tensor | None = None  # (sentences, k, width): each hypothesis' tokens
        self.ended: torch.Tensor | None = None  # (sentences, k, width): tokens of finished.ref's

    @torch.inference_mode()
    def step(self) -> list[tuple[Hashable, list[tuple[list[int], float]]]]:
        """Admit the waiting sentences, run one decoder step for every row, and return the sentences
        whose search is settled: (key, up to n_best (tokens without EOS, log-probability), best first)."""
        if self.admit_due():
            self._admit()
        if not self.keys:
            return []
        n, k = len(self.keys), self.k
        log_probs, state, _ = self.model.decode_step(self.prev.view(-1), self.state)  # (n * k, vocab)
        vocab = log_probs.size(-1)
        log_probs = log_probs.view(n, k, vocab)
        eos = split_eos(log_probs)  # (n, k)
        at_limit = self.steps + 1 >= self.limits  # (n,): these must end now

        # Continue: the best k non-EOS extensions of all beams (none at the limit).
        alive = self.scores.masked_fill(at_limit[:, None], NEG_INF)
        new_scores, flat = log_probs.add_(alive[:, :, None]).view(n, k * vocab).topk(k, dim=1)  # (n, k)
        parent, token = flat // vocab, flat % vocab

        # End: EOS after each beam, if allowed now and it ranks among the best k candidates.
        may_end = at_limit[:, None] | (self.shown >= self.min_length[:, None])  # (n, k)
        ending = torch.where(may_end, self.scores + eos, NEG_INF)
        kth = torch.cat([new_scores, ending], dim=1).topk(k, dim=1).values[:, -1:]
        pick = self.finished.add(slice(None), self.steps[:, None], ending.masked_fill(ending < kth, NEG_INF))
        width = self.seqs.size(2)
        self.ended = torch.cat([self.ended, self.seqs], dim=1).gather(1, pick[..., None].expand(n, k, width))
        settled = at_limit | self.finished.settled(slice(None), new_scores[:, 0], self.limits, self.n_best)
        done = self._results(settled)

        # Follow each hypothesis to its slot and append its token (column = the sentence's step).
        if int(self.steps.max()) >= width:
            self._widen()
        self.seqs = self.seqs.gather(1, parent[..., None].expand(n, k, self.seqs.size(2)))
        self.seqs.scatter_(2, self.steps[:, None, None].expand(n, k, 1), token[..., None])
        self.shown = self.shown.gather(1, parent) + counts(token, self.silent)
        self.scores, self.prev, self.state = new_scores, token, state
        self.steps = self.steps + 1
        rows = torch.arange(n, device=self.device)[:, None] * k + parent  # (n, k): state row of each
        if done:
            keep = (~settled).nonzero().squeeze(1)
            self.keep(keep, rows[keep].view(-1))
        else:
            self.state = state.reorder_beams(rows.view(-1))
        return done

    def _results(self, settled: torch.Tensor) -> list[tuple[Hashable, list[tuple[list[int], float]]]]:
        """The n-best ended hypotheses of the settled sentences."""
        if not settled.any():
            return []
        done = []
        norm, raw, ref = (
            t[:, : self.n_best].tolist() for t in (self.finished.norm, self.finished.raw, self.finished.ref)
        )
        for i in settled.nonzero().squeeze(1).tolist():
            hyps = [
                (self.ended[i, j, : ref[i][j] // self.k].tolist(), raw[i][j])
                for j in range(self.n_best)
                if norm[i][j] > NEG_INF
            ]
            done.append((self.keys[i], hyps))
        return done

    def _widen(self) -> None:
        """Room for more tokens per hypothesis."""
        pad = self.seqs.new_zeros(*self.seqs.shape[:2], WIDEN)
        self.seqs, self.ended = torch.cat([self.seqs, pad], dim=2), torch.cat([self.ended, pad], dim=2)

    def _admit(self) -> None:
        """Encode the waiting sentences together and append k rows each to the batch."""
        keys, state, limits, min_length = self.encode_waiting()
        new, k = len(keys), self.k
        sentences = torch.arange(new, device=self.device)
        state = state.index_select(sentences.repeat_interleave(k), sentences)  # (new * k,) rows
        scores = torch.full((new, k), NEG_INF, device=self.device)
        scores[:, 0] = 0.0  # all beams start identical: keep one so the first step fans out
        width = 0 if self.seqs is None else self.seqs.size(2)
        seqs = torch.zeros(new, k, width, dtype=torch.long, device=self.device)  # (new, k, width)
        zeros = torch.zeros(new, k, dtype=torch.long, device=self.device)  # (new, k)
        self.join(
            keys, state, steps=zeros[:, 0].clone(), limits=limits, min_length=min_length, scores=scores,
            shown=zeros, prev=zeros.clone().fill_(BOS_ID), seqs=seqs, ended=seqs.clone(),
        )  # fmt: skip
        self.finished.join(new)

    def keep(self, keep: torch.Tensor, rows: torch.Tensor) -> None:
        """``Stream.keep``, and the kept sentences' ended hypotheses."""
        super().keep(keep, rows)
        self.finished.select(keep)
