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
        for key, [(tokens, score)] in stream.step(): ...

``seq2seq/beam_stream.py`` does the same for beam search (and returns up to n-best hypotheses).
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


class Stream:
    """What greedy and beam streams share: sentences waiting to join, their encoding, and the
    per-sentence tensors named in ``TENSORS`` (all in the order of ``keys``), joined and dropped together."""

    TENSORS: tuple[str, ...] = ()

    def __init__(self, model, silent: torch.Tensor | None = None, device: torch.device | str = "cpu"):
        self.model, self.silent, self.device = model, silent, torch.device(device)
        self.waiting: list[tuple[Hashable, list[int], int, float | None, int]] = []
        self.keys: list[Hashable] = []  # per sentence being decoded
        self.state: DecoderState | None = None

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

    def admit_due(self) -> bool:
        """Whether the waiting sentences join at this step (see ``ADMIT_SHARE``)."""
        return bool(self.waiting) and len(self.waiting) >= ADMIT_SHARE * len(self.keys)

    def encode_waiting(self) -> tuple[list[Hashable], DecoderState, torch.Tensor, torch.Tensor]:
        """Encode the waiting sentences together: their keys, state, length limits and min_lengths."""
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
        return list(keys), state, limits, torch.tensor(min_lengths, device=self.device)

    def join(self, keys: list[Hashable], state: DecoderState, **values: torch.Tensor | list) -> None:
        """Append sentences: their state rows and a value (a tensor or a list) for each of ``TENSORS``."""
        self.state = state if self.state is None else cat_states(self.state, state)
        for name in self.TENSORS:
            old, new = getattr(self, name, None), values[name]
            setattr(
                self,
                name,
                new if old is None else old + new if isinstance(old, list) else torch.cat([old, new]),
            )
        self.keys += keys

    def keep(self, keep: torch.Tensor, rows: torch.Tensor) -> None:
        """Keep the sentences ``keep`` (an index) and the state rows ``rows`` (their hypotheses); an
        empty stream resets."""
        kept = keep.tolist()
        self.keys = [self.keys[i] for i in kept]
        if not self.keys:  # nothing left: the next sentences start a fresh batch
            self.state = None
            for name in self.TENSORS:
                setattr(self, name, None)
            return
        self.state = self.state.index_select(rows, keep)
        for name in self.TENSORS:
            old = getattr(self, name)
            setattr(self, name, [old[i] for i in kept] if isinstance(old, list) else old[keep])


class GreedyStream(Stream):
    """Greedy decoding of a batch whose sentences come and go between steps (see the module doc)."""

    TENSORS = ("prev", "steps", "limits", "shown", "min_length", "scores", "tokens")

    def __init__(self, model, silent: torch.Tensor | None = None, device: torch.device | str = "cpu"):
        super().__init__(model, silent, device)
        self.tokens: list[list[int]] | None = None  # per sentence: the tokens chosen so far
        self.prev: torch.Tensor | None = None  # (rows,): the last token of each; steps, limits... alike

    @torch.inference_mode()
    def step(self) -> list[tuple[Hashable, list[tuple[list[int], float]]]]:
        """Admit the waiting sentences, run one decoder step for every row, and return the rows that
        ended: (key, [(tokens without EOS, log-probability of tokens + EOS)]), as ``BeamStream``."""
        if self.admit_due():
            self._admit()
        if not self.keys:
            return []
        log_probs, self.state, _ = self.model.decode_step(self.prev, self.state)  # (rows, vocab)
        eos = split_eos(log_probs)  # (rows,)
        best, token = log_probs.max(dim=-1)  # best non-EOS token (rows,)
        stop = (self.steps + 1 >= self.limits) | ((self.shown >= self.min_length) & (eos >= best))
        self.shown += counts(token, self.silent)
        self.scores += torch.where(stop, eos, best)
        self.steps += 1
        self.prev = token
        ended, chosen = stop.tolist(), token.tolist()
        done = []
        for row, (end, tok) in enumerate(zip(ended, chosen, strict=True)):
            if end:
                done.append((self.keys[row], [(self.tokens[row], float(self.scores[row]))]))
            else:
                self.tokens[row].append(tok)
        if done:
            keep = (~stop).nonzero().squeeze(1)
            self.keep(keep, keep)
        return done

    def _admit(self) -> None:
        """Encode the waiting sentences together and append them to the batch."""
        keys, state, limits, min_length = self.encode_waiting()

        def zeros() -> torch.Tensor:  # (new,): a fresh one each, as steps and shown grow in place
            return torch.zeros(len(keys), dtype=torch.long, device=self.device)

        self.join(
            keys, state, prev=zeros().fill_(BOS_ID), steps=zeros(), limits=limits, shown=zeros(),
            min_length=min_length, scores=torch.zeros(len(keys), device=self.device),
            tokens=[[] for _ in keys],
        )  # fmt: skip


def cat_states(a: DecoderState, b: DecoderState) -> DecoderState:
    """Stack two decoder states (with as many beams each) along the batch; the source side is padded
    to the longer source (masked positions get no attention, so a row decodes as it would alone)."""
    src_len = max(a.memory.size(1), b.memory.size(1))

    def pad(t: torch.Tensor) -> torch.Tensor:  # (batch, len, ...) -> (batch, src_len, ...)
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
        torch.cat([pad(a.memory), pad(b.memory)]),  # (batch, src_len, 2 * enc_hidden)
        torch.cat([pad(a.proj_keys), pad(b.proj_keys)]),  # (batch, src_len, attn)
        torch.cat([pad(a.src_mask), pad(b.src_mask)]),  # (batch, src_len)
        att,
    )
