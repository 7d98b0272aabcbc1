"""Tests for the encoder, attention, decoder and ``Seq2Seq``: shapes, masking, padding
invariance, the fused vs step-by-step paths, scheduled sampling, and learning a tiny task."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from seq2seq.attention import build_attention
from seq2seq.batching import Batch, collate
from seq2seq.encoder import Bridge, Encoder
from seq2seq.model import Seq2Seq
from seq2seq.module import TranslationModule
from seq2seq.search import greedy_search
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID

SRC_VOCAB, TGT_VOCAB = 17, 13
EMB, ENC_HIDDEN, DEC_HIDDEN = 8, 6, 12  # DEC_HIDDEN == 2 * ENC_HIDDEN so "dot" works
ATTENTIONS = ("additive", "dot", "general")
LAYERS = ((1, 1), (2, 1), (1, 2), (3, 2))  # (enc_layers, dec_layers)
ATOL = 1e-5


def make_model(
    attention: str = "general",
    enc_layers: int = 1,
    dec_layers: int = 1,
    input_feeding: bool = False,
    tie_embeddings: bool = False,
    seed: int = 0,
    **sizes: int,
) -> Seq2Seq:
    """A tiny model with dropout off, in eval mode, with reproducible weights."""
    torch.manual_seed(seed)
    kwargs = dict(emb_dim=EMB, enc_hidden=ENC_HIDDEN, dec_hidden=DEC_HIDDEN) | sizes
    model = Seq2Seq(
        SRC_VOCAB, TGT_VOCAB, enc_layers=enc_layers, dec_layers=dec_layers, attention=attention,
        input_feeding=input_feeding, dropout=0.0, tie_embeddings=tie_embeddings, **kwargs,
    )  # fmt: skip
    return model.eval()


def random_ids(length: int, vocab: int, gen: torch.Generator) -> list[int]:
    """Ids of real tokens only (no PAD/UNK/BOS/EOS)."""
    return torch.randint(4, vocab, (length,), generator=gen).tolist()


def make_batch(src_lens: list[int], tgt_lens: list[int], seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    src = [random_ids(n, SRC_VOCAB, gen) for n in src_lens]
    tgt = [random_ids(n, TGT_VOCAB, gen) for n in tgt_lens]
    return collate(src, tgt, list(range(len(src_lens))))


# -- shapes and masking -------------------------------------------------------------------


@pytest.mark.parametrize(("enc_layers", "dec_layers"), LAYERS)
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize(("input_feeding", "tie"), list(itertools.product([False, True], repeat=2)))
def test_output_shapes_and_attention_masking(
    attention: str, enc_layers: int, dec_layers: int, input_feeding: bool, tie: bool
) -> None:
    model = make_model(attention, enc_layers, dec_layers, input_feeding, tie)
    batch = make_batch([5, 2, 7], [4, 6, 1])  # src padded to 8 (with EOS), tgt to 7 (with BOS)
    b, src_len, tgt_len = 3, batch.src.size(1), batch.tgt_in.size(1)
    real = batch.src != PAD_ID  # (batch, src_len)

    memory, final = model.encoder(batch.src, batch.src_lengths)
    assert memory.shape == (b, src_len, 2 * ENC_HIDDEN)
    assert final.shape == (enc_layers, b, 2 * ENC_HIDDEN)
    assert torch.all(memory[~real] == 0), "encoder outputs at padding must be zero"

    logits, attn = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert logits.shape == (b, tgt_len, TGT_VOCAB)
    assert attn.shape == (b, tgt_len, src_len)
    torch.testing.assert_close(attn.sum(-1), torch.ones(b, tgt_len))
    assert torch.all(attn.masked_select(~real[:, None, :]) == 0), "attention on source padding"
    assert torch.all(attn[real[:, None, :].expand_as(attn)] > 0)

    state = model.encode(batch.src, batch.src_lengths)
    assert state.hidden.shape == (b, dec_layers, DEC_HIDDEN)
    log_probs, state, step_attn = model.decode_step(batch.tgt_in[:, 0], state)
    assert log_probs.shape == (b, TGT_VOCAB) and step_attn.shape == (b, src_len)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(b))
    assert torch.all(step_attn[~real] == 0)
    assert state.hidden.shape == (b, dec_layers, DEC_HIDDEN)
    if input_feeding:
        assert state.att_vector is not None and state.att_vector.shape == (
            b,
            EMB if tie else DEC_HIDDEN,
        )


def test_tied_embeddings_share_one_matrix() -> None:
    tied, untied = make_model(tie_embeddings=True), make_model(tie_embeddings=False)
    assert tied.output.weight is tied.decoder.embed.weight
    assert untied.output.weight is not untied.decoder.embed.weight
    n_params = sum(p.numel() for p in tied.parameters())  # parameters() counts a shared tensor once
    assert n_params < sum(p.numel() for p in untied.parameters())
    # a gradient step through the output layer moves the embedding too
    batch = make_batch([3], [3])
    logits, _ = tied(batch.src, batch.src_lengths, batch.tgt_in)
    logits.sum().backward()
    assert tied.decoder.embed.weight.grad is not None and tied.decoder.embed.weight.grad.abs().sum() > 0


def test_dot_attention_with_mismatched_sizes_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError, match=r"dot attention needs decoder hidden \(10\) == encoder output \(12\)"
    ):
        make_model("dot", dec_hidden=10)
    with pytest.raises(ValueError, match="unknown attention 'luong'"):
        build_attention("luong", 12, 12)


# -- padding never changes a sentence's result --------------------------------------------


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_padding_does_not_change_encoding_or_decoding(attention: str, input_feeding: bool) -> None:
    model = make_model(attention, enc_layers=2, dec_layers=2, input_feeding=input_feeding)
    gen = torch.Generator().manual_seed(1)
    short_src, long_src = random_ids(3, SRC_VOCAB, gen), random_ids(9, SRC_VOCAB, gen)
    short_tgt, long_tgt = random_ids(2, TGT_VOCAB, gen), random_ids(8, TGT_VOCAB, gen)
    alone = collate([short_src], [short_tgt], [0])
    padded = collate([short_src, long_src], [short_tgt, long_tgt], [0, 1])
    n_src, n_tgt = alone.src.size(1), alone.tgt_in.size(1)
    assert padded.src.size(1) > n_src and padded.tgt_in.size(1) > n_tgt

    with torch.no_grad():
        mem_alone, final_alone = model.encoder(alone.src, alone.src_lengths)
        mem_pad, final_pad = model.encoder(padded.src, padded.src_lengths)
        torch.testing.assert_close(mem_pad[0, :n_src], mem_alone[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(final_pad[:, 0], final_alone[:, 0], atol=ATOL, rtol=0)

        logits_alone, attn_alone = model(alone.src, alone.src_lengths, alone.tgt_in)
        logits_pad, attn_pad = model(padded.src, padded.src_lengths, padded.tgt_in)
        torch.testing.assert_close(logits_pad[0, :n_tgt], logits_alone[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(attn_pad[0, :n_tgt, :n_src], attn_alone[0], atol=ATOL, rtol=0)

        state_alone = model.encode(alone.src, alone.src_lengths)
        state_pad = model.encode(padded.src, padded.src_lengths)
        for t in range(n_tgt):  # feed the short sentence's tokens to both rows
            prev = alone.tgt_in[:, t]
            lp_alone, state_alone, _ = model.decode_step(prev, state_alone)
            lp_pad, state_pad, _ = model.decode_step(torch.cat([prev, padded.tgt_in[1:, t]]), state_pad)
            torch.testing.assert_close(lp_pad[0], lp_alone[0], atol=ATOL, rtol=0)


def test_packed_encoder_equals_a_plain_gru_call() -> None:
    """Packing is only bookkeeping: without padding it must match nn.GRU on the same weights,
    and with padding each row must match nn.GRU run on that sentence alone."""
    encoder = Encoder(SRC_VOCAB, EMB, ENC_HIDDEN, layers=2, dropout=0.0).eval()
    batch = make_batch([6, 6, 6], [1, 1, 1])
    with torch.no_grad():
        out, final = encoder(batch.src, batch.src_lengths)
        ref_out, ref_h = encoder.rnn(encoder.embed(batch.src))  # no packing
        torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
        # final: (layers, batch, 2 * hidden) = [forward state; backward state] of each layer
        ref_final = torch.cat([ref_h[0::2], ref_h[1::2]], dim=-1)
        torch.testing.assert_close(final, ref_final, atol=ATOL, rtol=0)

        ragged = make_batch([2, 7, 4], [1, 1, 1], seed=3)
        out, final = encoder(ragged.src, ragged.src_lengths)
        for row, n in enumerate(ragged.src_lengths.tolist()):
            one_out, one_h = encoder.rnn(encoder.embed(ragged.src[row : row + 1, :n]))
            torch.testing.assert_close(out[row, :n], one_out[0], atol=ATOL, rtol=0)
            torch.testing.assert_close(final[:, row], torch.cat([one_h[0::2], one_h[1::2]], -1)[:, 0])


# -- teacher forcing ----------------------------------------------------------------------


@pytest.mark.parametrize(("enc_layers", "dec_layers"), LAYERS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_fused_teacher_forcing_equals_step_by_step(attention: str, enc_layers: int, dec_layers: int) -> None:
    model = make_model(attention, enc_layers, dec_layers, input_feeding=False)
    assert model.can_fuse
    batch = make_batch([5, 3, 8], [6, 2, 4])
    with torch.no_grad():
        fused_logits, fused_attn = model(batch.src, batch.src_lengths, batch.tgt_in)
        state = model.encode(batch.src, batch.src_lengths)
        step_logits, step_attn = model._forward_steps(batch.tgt_in, state, teacher_forcing=1.0)
    torch.testing.assert_close(fused_logits, step_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(fused_attn, step_attn, atol=ATOL, rtol=0)


@pytest.mark.parametrize("input_feeding", [False, True])
def test_scheduled_sampling_feeds_own_predictions(input_feeding: bool) -> None:
    model = make_model("additive", input_feeding=input_feeding)
    batch = make_batch([5, 4], [9, 9])  # no target padding: every position can be replaced
    args = (batch.src, batch.src_lengths, batch.tgt_in)
    with torch.no_grad():
        gold, _ = model(*args)
        torch.manual_seed(0)
        sampled, sampled_attn = model(*args, teacher_forcing=0.5)
        own, _ = model(*args, teacher_forcing=0.0)
    assert sampled.shape == gold.shape and sampled_attn.shape == (2, 10, batch.src.size(1))
    torch.testing.assert_close(sampled[:, 0], gold[:, 0])  # the first step always sees BOS
    assert not torch.allclose(sampled, gold), "teacher_forcing=0.5 must sometimes feed predictions"

    # teacher_forcing=0 feeds only the model's argmax: that is greedy decoding (before EOS)
    state = model.encode(batch.src, batch.src_lengths)
    prev = torch.full((2,), BOS_ID)
    for t in range(own.size(1)):
        log_probs, state, _ = model.decode_step(prev, state)
        torch.testing.assert_close(torch.log_softmax(own[:, t], -1), log_probs, atol=ATOL, rtol=0)
        prev = log_probs.argmax(-1)

    # gradients flow through the sampled path
    model.train()
    logits, _ = model(*args, teacher_forcing=0.5)
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None for p in model.decoder.parameters() if p.requires_grad)


# -- learning -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attention", "input_feeding", "tie"), [("general", False, False), ("additive", True, True)]
)
def test_tiny_model_overfits_a_batch(attention: str, input_feeding: bool, tie: bool) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(
        SRC_VOCAB, TGT_VOCAB, emb_dim=32, enc_hidden=32, enc_layers=1, dec_hidden=64, dec_layers=1,
        attention=attention, input_feeding=input_feeding, dropout=0.0, tie_embeddings=tie,
    )  # fmt: skip
    batch = make_batch([3, 5, 7, 4, 6, 2], [4, 6, 3, 7, 5, 2], seed=5)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD_ID)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)  # (batch, tgt_len, vocab)
        loss = loss_fn(logits.flatten(0, 1), batch.tgt_out.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    assert loss.item() < 0.05

    model.eval()
    result = greedy_search(model, batch.src, batch.src_lengths, max_length=20)
    targets = [[t for t in row if t not in (PAD_ID, EOS_ID)] for row in batch.tgt_out.tolist()]
    assert [nbest[0] for nbest in result.tokens] == targets


# -- bridge and loss ----------------------------------------------------------------------


@pytest.mark.parametrize(("enc_layers", "dec_layers"), [(1, 3), (3, 1), (2, 2), (4, 2)])
def test_bridge_maps_any_layer_counts(enc_layers: int, dec_layers: int) -> None:
    torch.manual_seed(0)
    bridge = Bridge(enc_layers, 2 * ENC_HIDDEN, dec_layers, DEC_HIDDEN)
    final = torch.randn(enc_layers, 4, 2 * ENC_HIDDEN)  # (enc_layers, batch, enc_size)
    h0 = bridge(final)
    assert h0.shape == (dec_layers, 4, DEC_HIDDEN) and h0.is_contiguous()
    for b in range(4):  # each sentence: all its encoder layers -> all its decoder layers
        expected = torch.tanh(bridge.proj(final[:, b].reshape(-1))).view(dec_layers, DEC_HIDDEN)
        torch.testing.assert_close(h0[:, b], expected)
    # end to end, the decoder's initial state has dec_layers layers
    model = make_model("general", enc_layers, dec_layers)
    batch = make_batch([3, 5], [2, 2])
    assert model.encode(batch.src, batch.src_lengths).hidden.shape == (2, dec_layers, DEC_HIDDEN)


@pytest.mark.parametrize(("input_feeding", "label_smoothing"), [(False, 0.1), (True, 0.0)])
def test_loss_ignores_padding(input_feeding: bool, label_smoothing: float) -> None:
    torch.manual_seed(0)
    module = TranslationModule(
        SRC_VOCAB, TGT_VOCAB, emb_dim=EMB, enc_hidden=ENC_HIDDEN, dec_hidden=DEC_HIDDEN,
        input_feeding=input_feeding, dropout=0.0, label_smoothing=label_smoothing,
    ).eval()  # fmt: skip
    batch = make_batch([4, 6], [3, 5])
    extra = torch.full((2, 4), PAD_ID)
    padded = Batch(
        batch.src, batch.src_lengths, torch.cat([batch.tgt_in, extra], 1),
        torch.cat([batch.tgt_out, extra], 1), batch.index,
    )  # fmt: skip
    with torch.no_grad():
        loss, loss_padded = module.loss(batch), module.loss(padded)
    torch.testing.assert_close(loss_padded, loss, atol=ATOL, rtol=0)
    # and the loss does depend on the real target tokens
    changed = batch.tgt_out.clone()
    changed[0, 0] = 4 if changed[0, 0] != 4 else 5
    with torch.no_grad():
        other = module.loss(Batch(batch.src, batch.src_lengths, batch.tgt_in, changed, batch.index))
    assert not torch.isclose(other, loss)


# -- mixed precision ----------------------------------------------------------------------


@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_bf16_autocast_forward_backward_and_decode(attention: str, input_feeding: bool) -> None:
    """Under CPU bf16 autocast the GRUs stay fp32 and the Linears run in bf16: the dtypes
    must meet cleanly in training and decoding (``--trainer.precision=bf16-mixed``)."""
    model = make_model(attention, 2, 2, input_feeding).train()
    batch = make_batch([5, 3], [4, 6])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = nn.functional.cross_entropy(
            logits.float().flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID
        )
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        result = greedy_search(model, batch.src, batch.src_lengths, max_length=5)
    assert len(result.tokens) == 2 and torch.isfinite(result.scores).all()
