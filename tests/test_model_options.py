"""The model's optional regularizers and three-way tying, each against an independent reference:
off, the forward is the plain model's bit for bit; word dropout is the plain model on inputs with
tokens replaced by UNK at the configured rate, in training only; encoder-output dropout zeroes the
attention values at its rate; shared embeddings are one matrix."""

from __future__ import annotations

import pytest
import torch
from test_model import make_batch

from seq2seq.model import Seq2Seq, word_dropout
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID

VOCAB = 50
OPTIONS = {"src_word_dropout": 0.2, "tgt_word_dropout": 0.3, "enc_out_dropout": 0.4}


def build(seed: int = 0, dropout: float = 0.0, **options) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(
        VOCAB, VOCAB, emb_dim=8, enc_hidden=6, dec_hidden=12, enc_layers=2, dropout=dropout, **options
    )


def batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    src = [torch.randint(4, VOCAB, (n,), generator=gen).tolist() for n in (7, 3, 9, 5)]
    tgt = [torch.randint(4, VOCAB, (n,), generator=gen).tolist() for n in (4, 8, 2, 6)]
    from seq2seq.batching import collate

    return collate(src, tgt, list(range(4)))


def forward(model: Seq2Seq, b, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return model(b.src, b.src_lengths, b.tgt_in)[0]


def test_options_off_are_the_plain_model_bit_for_bit() -> None:
    b = batch()
    plain = build(dropout=0.3).train()  # dropout on: any extra random draw would shift its masks
    off = build(dropout=0.3, **dict.fromkeys(OPTIONS, 0.0), share_embeddings=False).train()
    assert plain.state_dict().keys() == off.state_dict().keys()
    assert torch.equal(forward(plain, b), forward(off, b))
    torch.manual_seed(1)
    forward(off, b, seed=1)
    after = torch.random.get_rng_state()
    torch.manual_seed(1)
    forward(plain, b, seed=1)
    assert torch.equal(after, torch.random.get_rng_state())  # the same number of random draws


def test_word_dropout_is_the_plain_model_on_unk_replaced_inputs() -> None:
    b = batch()
    model = build(src_word_dropout=0.5, tgt_word_dropout=0.25).train()
    plain = build().train()
    torch.manual_seed(3)
    got = model(b.src, b.src_lengths, b.tgt_in)[0]
    # the reference: draw the same two uniform tensors, replace by hand, run the plain model
    torch.manual_seed(3)
    u_src, u_tgt = torch.rand(b.src.shape), torch.rand(b.tgt_in.shape)
    src = torch.where((u_src < 0.5) & (b.src > EOS_ID), UNK_ID, b.src)
    tgt_in = torch.where((u_tgt < 0.25) & (b.tgt_in > EOS_ID), UNK_ID, b.tgt_in)
    assert (src != b.src).any() and (tgt_in != b.tgt_in).any()
    assert torch.equal(got, plain(src, b.src_lengths, tgt_in)[0])
    # evaluation mode: no replacement at all
    assert torch.equal(
        model.eval()(b.src, b.src_lengths, b.tgt_in)[0], plain.eval()(b.src, b.src_lengths, b.tgt_in)[0]
    )


@pytest.mark.parametrize("p", [0.1, 0.35])
def test_word_dropout_replaces_real_tokens_at_its_rate(p: float) -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, VOCAB, (400, 500), generator=gen)
    ids[:, 0], ids[:, -1], ids[::3, 250:] = BOS_ID, EOS_ID, PAD_ID
    out = word_dropout(ids, p)
    special = ids <= EOS_ID
    assert torch.equal(out[special], ids[special])  # PAD, BOS and EOS stay
    changed = out != ids
    assert torch.all(out[changed] == UNK_ID)
    rate = changed.sum().item() / (~special).sum().item()  # about 160,000 tokens: sd 0.0012
    assert rate == pytest.approx(p, abs=0.006)
    assert word_dropout(ids, 0.0) is ids


def test_encoder_output_dropout_zeroes_attention_values_at_its_rate() -> None:
    b = make_batch([30] * 64, [5] * 64)  # test_model's vocabularies: 17 source, 13 target
    torch.manual_seed(0)
    model = Seq2Seq(17, 13, emb_dim=8, enc_hidden=6, dec_hidden=12, dropout=0.0, enc_out_dropout=0.4).train()
    memory, _ = model.encoder(b.src, b.src_lengths)  # the undropped reference (no randomness here)
    state = model.encode(b.src, b.src_lengths)
    real = memory != 0
    zeroed = (state.memory == 0) & real
    assert zeroed.sum().item() / real.sum().item() == pytest.approx(0.4, abs=0.02)
    kept = real & ~zeroed
    torch.testing.assert_close(state.memory[kept], memory[kept] / 0.6)
    assert torch.equal(model.eval().encode(b.src, b.src_lengths).memory, memory)


def test_three_way_tying_is_one_matrix() -> None:
    model = build(tie_embeddings=True, share_embeddings=True)
    two_way = build(tie_embeddings=True)  # target embedding = output projection only
    weight = model.decoder.embed.weight
    assert model.encoder.embed.weight is weight and model.output.weight is weight
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731  (shared tensors count once)
    assert count(two_way) - count(model) == VOCAB * 8  # one source embedding matrix fewer
    b = batch()
    model(b.src, b.src_lengths, b.tgt_in)[0].sum().backward()
    src_rows, tgt_rows = set(b.src.unique().tolist()), set(b.tgt_in.unique().tolist())
    grad_rows = set((weight.grad.abs().sum(1) > 0).nonzero().flatten().tolist())
    assert src_rows - {PAD_ID} <= grad_rows  # the source side trains the shared matrix too
    assert tgt_rows - {PAD_ID} <= grad_rows


def test_bad_option_values_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"src_word_dropout must be in \[0, 1\), got 1.0"):
        build(src_word_dropout=1.0)
    with pytest.raises(ValueError, match=r"enc_out_dropout must be in \[0, 1\), got -0.1"):
        build(enc_out_dropout=-0.1)
    with pytest.raises(ValueError, match="share_embeddings needs one joint vocabulary"):
        Seq2Seq(40, 30, share_embeddings=True)
