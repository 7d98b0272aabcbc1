"""Bidirectional multilayer GRU encoder over packed sequences, plus the bridge to the decoder."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.tokenizer import PAD_ID


class Encoder(nn.Module):
    """Embeds source ids and runs a bidirectional GRU; each position sees the whole sentence.

    Packing the batch by true lengths means the backward direction starts at each sentence's
    last real token and padding never leaks into any state.
    """

    def __init__(self, vocab_size: int, emb_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.rnn = nn.GRU(
            emb_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )  # fmt: skip
        self.layers, self.hidden = layers, hidden

    @property
    def output_size(self) -> int:
        return 2 * self.hidden

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns outputs (batch, src_len, 2 * hidden) and final states (layers, batch, 2 * hidden)."""
        x = self.dropout(self.embed(src))  # (batch, src_len, emb)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, h_n = self.rnn(packed)  # h_n: (layers * 2, batch, hidden)
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))
        # (batch, src_len, 2 * hidden); padded positions are zeros
        batch = src.size(0)
        # h_n is ordered layer0-fwd, layer0-bwd, layer1-fwd, ...: pair each layer's two directions
        final = h_n.view(self.layers, 2, batch, self.hidden).transpose(1, 2)  # (layers, batch, 2, hidden)
        final = final.reshape(self.layers, batch, 2 * self.hidden)  # (layers, batch, 2 * hidden)
        return out, final


class Bridge(nn.Module):
    """Maps all encoder layers' final states to the decoder's initial states (any layer counts)."""

    def __init__(self, enc_layers: int, enc_size: int, dec_layers: int, dec_hidden: int):
        super().__init__()
        self.proj = nn.Linear(enc_layers * enc_size, dec_layers * dec_hidden)
        self.dec_layers, self.dec_hidden = dec_layers, dec_hidden

    def forward(self, final: torch.Tensor) -> torch.Tensor:
        layers, batch, size = final.shape
        flat = final.transpose(0, 1).reshape(batch, layers * size)  # (batch, enc_layers * 2 * hidden)
        h0 = torch.tanh(self.proj(flat))  # (batch, dec_layers * dec_hidden)
        return h0.view(batch, self.dec_layers, self.dec_hidden).transpose(0, 1).contiguous()
        # (dec_layers, batch, dec_hidden)
