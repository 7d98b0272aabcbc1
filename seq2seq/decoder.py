"""GRU decoder with attention, one step at a time or a whole teacher-forced target at once."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from seq2seq.attention import build_attention
from seq2seq.tokenizer import PAD_ID


@dataclass
class DecoderState:
    """Everything a decoder step needs. The recurrent part has a row per hypothesis; the encoder
    side a row per sentence, shared by its hypotheses (beam search: hypothesis j of sentence i is
    row i * beams + j), so following the beams never copies the encoder outputs.

    The encoder outputs and their projected attention keys are computed once per sentence and
    carried here, so each decoder step only pays for its own query.
    """

    hidden: torch.Tensor  # (rows, dec_layers, dec_hidden): batch first, unlike nn.GRU's
    memory: torch.Tensor  # (batch, src_len, 2 * enc_hidden): encoder outputs, the attention values
    proj_keys: torch.Tensor  # (batch, src_len, attn): encoder outputs projected for scoring
    src_mask: torch.Tensor  # (batch, src_len): True for real source tokens
    att_vector: torch.Tensor | None = None  # (rows, out_dim): last attentional vector (input feeding)

    def index_select(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> DecoderState:
        """Keep, reorder or repeat rows (beam search follows its choices with this); ``sentences``:
        the encoder rows to keep when there are several rows per sentence (default: ``rows``)."""
        sentences = rows if sentences is None else sentences
        att = None if self.att_vector is None else self.att_vector.index_select(0, rows)
        return DecoderState(
            self.hidden.index_select(0, rows),
            *(t.index_select(0, sentences) for t in (self.memory, self.proj_keys, self.src_mask)),
            att,
        )

    def reorder_beams(self, rows: torch.Tensor) -> DecoderState:
        """``index_select`` for rows that only move among the beams of one sentence: the encoder side
        stays as it is."""
        att = None if self.att_vector is None else self.att_vector.index_select(0, rows)
        return replace(self, hidden=self.hidden.index_select(0, rows), att_vector=att)


class Decoder(nn.Module):
    """Luong-style step: h_t = GRU(y_{t-1} [; a_{t-1}], h_{t-1}); c_t = attend(h_t); a_t = tanh(W[h_t; c_t]).

    Without input feeding (``a_{t-1}`` in the GRU input) no step depends on the previous
    step's attention, so teacher-forced training runs the GRU over the whole target in one
    fused call and attends for all positions at once: no Python loop over time.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden: int,
        layers: int,
        enc_size: int,
        attention: str,
        input_feeding: bool,
        dropout: float,
        out_dim: int,
    ):
        super().__init__()
        self.input_feeding, self.out_dim = input_feeding, out_dim
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD_ID)
        self.rnn = nn.GRU(
            emb_dim + (out_dim if input_feeding else 0), hidden, num_layers=layers,
            batch_first=True, dropout=dropout if layers > 1 else 0.0,
        )  # fmt: skip
        self.attention = build_attention(attention, hidden, enc_size)
        self.combine = nn.Linear(hidden + enc_size, out_dim)
        self.dropout = nn.Dropout(dropout)

    def _attend(self, rnn_out: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, torch.Tensor]:
        # rnn_out: (rows, tgt_len, dec_hidden); rows = batch * beams, the beams of a sentence attend
        # to its one copy of the encoder outputs as that many queries
        rows, tgt_len, batch = rnn_out.size(0), rnn_out.size(1), state.memory.size(0)
        query = rnn_out.reshape(batch, -1, rnn_out.size(2))  # (batch, beams * tgt_len, dec_hidden)
        context, weights = self.attention(query, state.proj_keys, state.memory, state.src_mask)
        context = context.reshape(rows, tgt_len, -1)  # (rows, tgt_len, 2 * enc_hidden)
        weights = weights.reshape(rows, tgt_len, -1)  # (rows, tgt_len, src_len)
        att = torch.tanh(self.combine(torch.cat([rnn_out, context], dim=-1)))  # (rows, tgt_len, out_dim)
        return self.dropout(att), weights

    def forward_fused(self, tgt_in: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, torch.Tensor]:
        """All target positions in one GRU call (teacher forcing, no input feeding)."""
        assert not self.input_feeding, "input feeding needs the step-by-step path"
        x = self.dropout(self.embed(tgt_in))  # (batch, tgt_len, emb)
        # Padding sits only after EOS, so it cannot affect any real position: no packing needed.
        rnn_out, _ = self.rnn(x, state.hidden.transpose(0, 1).contiguous())  # (batch, tgt_len, dec_hidden)
        return self._attend(rnn_out, state)

    def step(
        self, prev: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        """One step for every row: prev (batch,) -> attentional vector (batch, out_dim), weights (batch, src_len)."""
        x = self.dropout(self.embed(prev))[:, None, :]  # (batch, 1, emb)
        if self.input_feeding:
            fed = state.att_vector if state.att_vector is not None else x.new_zeros(x.size(0), self.out_dim)
            x = torch.cat([x, fed[:, None, :]], dim=-1)  # (batch, 1, emb + out_dim)
        rnn_out, h = self.rnn(x, state.hidden.transpose(0, 1).contiguous())  # (batch, 1, dec_hidden)
        att, weights = self._attend(rnn_out, state)
        new_state = DecoderState(h.transpose(0, 1), state.memory, state.proj_keys, state.src_mask, att[:, 0])
        return att[:, 0], weights[:, 0], new_state
