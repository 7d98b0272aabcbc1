"""Attention: how the decoder looks back at the encoder outputs.

Each module splits its work in two: ``project_keys`` runs once per source sentence (the
Annotated Encoder-Decoder's ``proj_key``), ``forward`` runs for every decoder query. Queries may
be one step ``(batch, 1, dec_hidden)`` or a whole teacher-forced target ``(batch, tgt_len, ...)``.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_softmax(scores: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
    """Softmax over source positions that are real tokens; padding gets exactly zero weight."""
    # scores: (batch, tgt_len, src_len); src_mask: (batch, src_len), True for real tokens
    scores = scores.masked_fill(~src_mask[:, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1)


class AdditiveAttention(nn.Module):
    """Bahdanau et al. (2015): score(q, k) = v^T tanh(W_q q + W_k k)."""

    def __init__(self, query_size: int, key_size: int, attn_size: int | None = None):
        super().__init__()
        attn_size = attn_size or query_size
        self.key_layer = nn.Linear(key_size, attn_size, bias=False)
        self.query_layer = nn.Linear(query_size, attn_size, bias=False)
        self.energy = nn.Linear(attn_size, 1, bias=False)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return self.key_layer(keys)  # (batch, src_len, attn)

    def forward(
        self, query: torch.Tensor, proj_keys: torch.Tensor, values: torch.Tensor, src_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.query_layer(query)  # (batch, tgt_len, attn)
        energy = torch.tanh(q[:, :, None, :] + proj_keys[:, None, :, :])  # (batch, tgt_len, src_len, attn)
        scores = self.energy(energy).squeeze(-1)  # (batch, tgt_len, src_len)
        weights = masked_softmax(scores, src_mask)
        return torch.bmm(weights, values), weights  # (batch, tgt_len, key), (batch, tgt_len, src_len)


class MultiplicativeAttention(nn.Module):
    """Luong et al. (2015): "dot" score(q, k) = q . k, "general" score(q, k) = q . W k."""

    def __init__(self, query_size: int, key_size: int, kind: str = "general"):
        super().__init__()
        if kind == "dot" and query_size != key_size:
            raise ValueError(
                f"dot attention needs decoder hidden ({query_size}) == encoder output ({key_size}); "
                "use attention: general"
            )
        self.key_layer = nn.Linear(key_size, query_size, bias=False) if kind == "general" else None

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return keys if self.key_layer is None else self.key_layer(keys)  # (batch, src_len, query)

    def forward(
        self, query: torch.Tensor, proj_keys: torch.Tensor, values: torch.Tensor, src_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.bmm(query, proj_keys.transpose(1, 2))  # (batch, tgt_len, src_len)
        weights = masked_softmax(scores, src_mask)
        return torch.bmm(weights, values), weights  # (batch, tgt_len, key), (batch, tgt_len, src_len)


def build_attention(kind: str, query_size: int, key_size: int) -> nn.Module:
    if kind == "additive":
        return AdditiveAttention(query_size, key_size)
    if kind in ("dot", "general"):
        return MultiplicativeAttention(query_size, key_size, kind)
    raise ValueError(f"unknown attention {kind!r}: choose additive, dot or general")
