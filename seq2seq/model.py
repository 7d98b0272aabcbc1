"""The encoder-decoder as a plain ``nn.Module`` with a narrow decoding interface.

    state = model.encode(src, src_lengths)                 # once per batch
    log_probs, state, attn = model.decode_step(prev, state)  # once per output token

Teacher-forced training, greedy search and beam search all go through these two calls (or
the fused equivalent of many ``decode_step`` calls), so search code never touches layers.
"""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.decoder import Decoder, DecoderState
from seq2seq.encoder import Bridge, Encoder
from seq2seq.tokenizer import EOS_ID, PAD_ID, UNK_ID


def word_dropout(ids: torch.Tensor, p: float) -> torch.Tensor:
    """ids (batch, len) with each real token (not PAD, BOS, EOS) replaced by UNK with probability
    ``p``: word dropout (Sennrich & Zhang 2019, "Revisiting Low-Resource NMT"). Draws nothing at 0."""
    if p <= 0.0:
        return ids
    drop = (torch.rand(ids.shape, device=ids.device) < p) & (ids > EOS_ID)  # (batch, len)
    return ids.masked_fill(drop, UNK_ID)


class Seq2Seq(nn.Module):
    """Bidirectional GRU encoder, attention GRU decoder, output projection to the vocabulary.

    Regularizers off by default (0 draws no random numbers, so the model is then the plain one):
    ``src_word_dropout`` / ``tgt_word_dropout`` replace input tokens by UNK in training,
    ``enc_out_dropout`` drops encoder outputs (the attention values and keys). ``share_embeddings``
    makes the source embedding the target one (a joint vocabulary); with ``tie_embeddings`` too,
    one matrix serves source, target and output.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        emb_dim: int = 256,
        enc_hidden: int = 256,
        enc_layers: int = 2,
        dec_hidden: int = 512,
        dec_layers: int = 1,
        attention: str = "general",
        input_feeding: bool = False,
        dropout: float = 0.3,
        tie_embeddings: bool = False,
        src_word_dropout: float = 0.0,
        tgt_word_dropout: float = 0.0,
        enc_out_dropout: float = 0.0,
        share_embeddings: bool = False,
    ):
        super().__init__()
        sizes = {"src_vocab_size": src_vocab_size, "tgt_vocab_size": tgt_vocab_size, "emb_dim": emb_dim,
                 "enc_hidden": enc_hidden, "enc_layers": enc_layers, "dec_hidden": dec_hidden,
                 "dec_layers": dec_layers}  # fmt: skip
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        rates = {"src_word_dropout": src_word_dropout, "tgt_word_dropout": tgt_word_dropout,
                 "enc_out_dropout": enc_out_dropout}  # fmt: skip
        for name, value in rates.items():
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"share_embeddings needs one joint vocabulary (data.joint_vocab: true), but the source "
                f"has {src_vocab_size} subwords and the target {tgt_vocab_size}"
            )
        self.src_word_dropout, self.tgt_word_dropout = src_word_dropout, tgt_word_dropout
        # no module at 0: an nn.Dropout(0) in training mode would still draw random numbers
        self.enc_out_dropout = nn.Dropout(enc_out_dropout) if enc_out_dropout > 0 else None
        self.encoder = Encoder(src_vocab_size, emb_dim, enc_hidden, enc_layers, dropout)
        enc_size = self.encoder.output_size
        self.bridge = Bridge(enc_layers, enc_size, dec_layers, dec_hidden)
        # Tying shares the target embedding matrix with the output layer, so the attentional
        # vector must have the embedding's size.
        out_dim = emb_dim if tie_embeddings else dec_hidden
        self.decoder = Decoder(
            tgt_vocab_size, emb_dim, dec_hidden, dec_layers, enc_size, attention, input_feeding,
            dropout, out_dim,
        )  # fmt: skip
        self.output = nn.Linear(out_dim, tgt_vocab_size)
        if tie_embeddings:
            self.output.weight = self.decoder.embed.weight
        if share_embeddings:
            self.encoder.embed.weight = self.decoder.embed.weight

    @property
    def can_fuse(self) -> bool:
        """Teacher forcing can run the whole target in one GRU call (no input feeding)."""
        return not self.decoder.input_feeding

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> DecoderState:
        """src (batch, src_len) -> the decoder's initial state, attention keys precomputed."""
        memory, final = self.encoder(src, src_lengths)  # (batch, src_len, 2 * enc_hidden)
        if self.enc_out_dropout is not None:  # the bridge still sees the undropped final states
            memory = self.enc_out_dropout(memory)
        hidden = self.bridge(final).transpose(0, 1)  # (batch, dec_layers, dec_hidden)
        proj_keys = self.decoder.attention.project_keys(memory)  # (batch, src_len, attn)
        return DecoderState(hidden, memory, proj_keys, src != PAD_ID)

    def decode_step(
        self, prev: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """prev (batch,) -> log-probabilities (batch, vocab), next state, attention (batch, src_len)."""
        att, weights, state = self.decoder.step(prev, state)
        log_probs = torch.log_softmax(self.output(att).float(), dim=-1)  # (batch, tgt_vocab)
        return log_probs, state, weights

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        teacher_forcing: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: logits (batch, tgt_len, vocab) and attention (batch, tgt_len, src_len).

        With ``teacher_forcing`` < 1 (scheduled sampling), each step feeds the gold previous
        token with that probability and the model's own greedy prediction otherwise.
        Word dropout applies here, in training mode only: search never calls ``forward``.
        """
        if self.training:
            src = word_dropout(src, self.src_word_dropout)  # (batch, src_len)
            tgt_in = word_dropout(tgt_in, self.tgt_word_dropout)  # (batch, tgt_len); labels untouched
        state = self.encode(src, src_lengths)
        if self.can_fuse and teacher_forcing >= 1.0:
            att, weights = self.decoder.forward_fused(tgt_in, state)  # (batch, tgt_len, out_dim)
            return self.output(att), weights
        return self._forward_steps(tgt_in, state, teacher_forcing)

    def _forward_steps(
        self, tgt_in: torch.Tensor, state: DecoderState, teacher_forcing: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, weights, prev = [], [], tgt_in[:, 0]
        for t in range(tgt_in.size(1)):
            att, w, state = self.decoder.step(prev, state)
            step_logits = self.output(att)  # (batch, tgt_vocab)
            logits.append(step_logits)
            weights.append(w)
            if t + 1 < tgt_in.size(1):
                prev = tgt_in[:, t + 1]
                if teacher_forcing < 1.0:
                    own = step_logits.argmax(-1)
                    use_gold = torch.rand(prev.shape, device=prev.device) < teacher_forcing
                    prev = torch.where(use_gold | (prev == PAD_ID), prev, own)
        return torch.stack(logits, 1), torch.stack(weights, 1)  # (batch, tgt_len, ...)
