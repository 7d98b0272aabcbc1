"""Continuous batching for greedy decoding: sentences join the batch between decoder steps and
leave it the step they end.

``greedy_search`` takes a batch, decodes it to the end and returns it whole. A server that
batches that way waits twice: for a batch to fill before it starts, and for the longest sentence
of the batch to end before anyone is answered, while the other clients' next sentences queue.
``GreedyStream`` decodes whatever is in it one step at a time: sentences added between steps are
encoded together and join the batch (their encoder outputs padded to the longest source in it),
and a sentence that ends is handed back at once. Each sentence gets exactly ``greedy_search``'s
rules (length limit, ``min_length`` over text-showing tokens, scores), tested against it.

    stream = GreedyStream(model, silent)
    stream.add("a", src_ids)                 # subword ids, no EOS
    while stream:
        for key, tokens, score in stream.step(): ...
"""

from __future__ import annotations

from collections.abc import Hashable

import torch

from seq2seq.batching import collate
from seq2seq.decoder import DecoderState
from seq2seq.search import MAX_RATIO, counts, length_limits, split_eos
from seq2seq.tokenizer import BOS_ID

# Waiting sentences join once they are this share of the batch (or the batch is empty): an encoder
# call costs several sentences' worth on its own (the GRUs run step by step over the source), so
# sentences arriving one per step are encoded a few at a time.
ADMIT_SHARE = 0.5


class GreedyStream:
    """Greedy decoding of a batch whose sentences come and go between steps (see the module doc)."""

    def __init__(self, model, silent: torch.Tensor | None = None, device: torch.device | str = "cpu"):
        self.model, self.silent, self.device = model, silent, torch.device(device)
        self.waiting: list[tuple[Hashable, list[int], int, float | None, int]] = []
        self.keys: list[Hashable] = []  # per row of the batch
        self.tokens: list[list[int]] = []  # per row: the tokens chosen so far
        self.state: DecoderState | None = None
        empty = torch.zeros(0, dtype=torch.long, device=self.device)
        self.prev, self.steps, self.limits, self.shown, self.min_length = (empty,) * 5  # (rows,) each
        self.scores = torch.zeros(0, device=self.device)  # (rows,): running log-probability

    def __len__(self) -> int:
        """Sentences being decoded or waiting to join."""
        return len(self.keys) + len(self.waiting)

    def add(
        self,
        key: Hashable,
        src_ids: list[int],
        max_length: int = 200,
        max_ratio: float | None = MAX_RATIO,
        min_length: int = 1,
    ) -> None:
        """Queue a sentence (subword ids without EOS); it joins the batch at the next ``step``."""
        self.waiting.append((key, list(src_ids), max_length, max_ratio, min_length))

    @torch.inference_mode()
    def step(self) -> list[tuple[Hashable, list[int], float]]:
        """Admit the waiting sentences, run one decoder step for every row, and return the rows that
        ended: (key, tokens without EOS, log-probability of tokens + EOS)."""
        if self.waiting and len(self.waiting) >= ADMIT_SHARE * len(self.keys):
            self._admit()
        if not self.keys:
            return []
        log_probs, state, _ = self.model.decode_step(self.prev, self.state)  # (rows, vocab)
        eos = split_eos(log_probs)  # (rows,)
        best, token = log_probs.max(dim=-1)  # best non-EOS token (rows,)
        stop = (self.steps + 1 >= self.limits) | ((self.shown >= self.min_length) & (eos >= best))
        self.shown += counts(token, self.silent)
        self.scores += torch.where(stop, eos, best)
        self.steps += 1
        ended, chosen = stop.tolist(), token.tolist()
        done = []
        for row, (end, tok) in enumerate(zip(ended, chosen, strict=True)):
            if end:
                done.append((self.keys[row], self.tokens[row], float(self.scores[row])))
            else:
                self.tokens[row].append(tok)
        self.prev, self.state = token, state
        if done:
            keep = (~stop).nonzero().squeeze(1)
            self._keep(keep, [row for row, end in enumerate(ended) if not end])
        return done

    def _admit(self) -> None:
        """Encode the waiting sentences together and append them to the batch."""
        keys, ids, max_lengths, ratios, min_lengths = zip(*self.waiting, strict=True)
        self.waiting = []
        batch = collate(list(ids), [[] for _ in ids], list(range(len(ids))))
        src, lengths = batch.src.to(self.device), batch.src_lengths.to(self.device)
        state = self.model.encode(src, lengths)  # (new, ...)
        limits = torch.cat(
            [
                length_limits(lengths[i : i + 1], m, r)
                for i, (m, r) in enumerate(zip(max_lengths, ratios, strict=True))
            ]
        )
        new = len(keys)
        self.state = state if self.state is None else cat_states(self.state, state)
        self.prev = torch.cat([self.prev, torch.full((new,), BOS_ID, dtype=torch.long, device=self.device)])
        self.steps = torch.cat([self.steps, torch.zeros(new, dtype=torch.long, device=self.device)])
        self.limits = torch.cat([self.limits, limits])
        self.shown = torch.cat([self.shown, torch.zeros(new, dtype=torch.long, device=self.device)])
        self.min_length = torch.cat([self.min_length, torch.tensor(min_lengths, device=self.device)])
        self.scores = torch.cat([self.scores, torch.zeros(new, device=self.device)])
        self.keys += keys
        self.tokens += [[] for _ in keys]

    def _keep(self, keep: torch.Tensor, rows: list[int]) -> None:
        """Drop the rows that ended (``keep``: the others, as a tensor and as a list)."""
        self.keys = [self.keys[r] for r in rows]
        self.tokens = [self.tokens[r] for r in rows]
        if not rows:  # nothing left: the next sentences start a fresh batch
            self.state = None
        else:
            self.state = self.state.index_select(keep)
        self.prev, self.steps, self.limits, self.shown, self.min_length, self.scores = (
            t[keep] for t in (self.prev, self.steps, self.limits, self.shown, self.min_length, self.scores)
        )


def cat_states(a: DecoderState, b: DecoderState) -> DecoderState:
    """Stack two decoder states along the batch; the source side is padded to the longer source
    (masked positions get no attention, so a row decodes as it would alone)."""
    src_len = max(a.memory.size(1), b.memory.size(1))

    def pad(t: torch.Tensor) -> torch.Tensor:  # (rows, len, ...) -> (rows, src_len, ...)
        missing = src_len - t.size(1)
        if not missing:
            return t
        return torch.cat([t, t.new_zeros(t.size(0), missing, *t.shape[2:])], dim=1)

    att = None  # input feeding: a fresh state has no attentional vector yet, which means zeros
    if a.att_vector is not None or b.att_vector is not None:
        like = a.att_vector if a.att_vector is not None else b.att_vector
        att = torch.cat([v if v is not None else like.new_zeros(len(s.hidden), like.size(1))
                         for v, s in ((a.att_vector, a), (b.att_vector, b))])  # fmt: skip
    return DecoderState(
        torch.cat([a.hidden, b.hidden]),  # (rows, dec_layers, dec_hidden)
        torch.cat([pad(a.memory), pad(b.memory)]),  # (rows, src_len, 2 * enc_hidden)
        torch.cat([pad(a.proj_keys), pad(b.proj_keys)]),  # (rows, src_len, attn)
        torch.cat([pad(a.src_mask), pad(b.src_mask)]),  # (rows, src_len)
        att,
    )
