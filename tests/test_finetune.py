"""Fine-tuning from a served checkpoint (``--model.init_from``): the base's weights, architecture and
tokenizers (byte for byte), a fresh optimizer and schedule, new pairs mixed with a sample of the
original data; on the built-in task the model then outputs the new targets more often than the base.
The served path too: users' corrections, exported by ``seq2seq-suggestions``, with ``configs/finetune.yaml``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT, tiny_train_args

from seq2seq import Translator
from seq2seq.cli import train_main
from seq2seq.corpus import generate_pairs
from seq2seq.export import export_checkpoint
from seq2seq.module import CHECKPOINT_KEY
from serve.store.suggestions import open_suggestions
from serve.store.suggestions_cli import main as suggestions_main

STEPS = 150


@pytest.fixture(scope="module")
def new_pairs(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> tuple[Path, list[tuple[str, str]]]:
    """20 pairs the base model does not know (train, validation and test all of them) as TSV files."""
    folder = tmp_path_factory.mktemp("corrections")
    pairs = list(dict(generate_pairs("en", "fr", 40, seed=1234)).items())[:20]
    for split in ("train", "validation", "test"):
        lines = ["en\tfr", *(f"{s}\t{t}" for s, t in pairs)]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder, pairs


def exact(checkpoint: Path, pairs: list[tuple[str, str]]) -> int:
    outputs = Translator.from_checkpoint(checkpoint).translate([s for s, _ in pairs], beam_size=1)
    return sum(out.text == tgt for out, (_, tgt) in zip(outputs, pairs, strict=True))


def test_fine_tuning_learns_the_new_pairs_with_the_base_vocabulary(
    tiny_checkpoint: Path, new_pairs, tmp_path: Path
) -> None:
    folder, pairs = new_pairs
    base = export_checkpoint(tiny_checkpoint, tmp_path / "served.ckpt")  # what a server runs
    before = exact(base, pairs)
    args = tiny_train_args(
        tmp_path, f"--model.init_from={base}", f"--data.source={folder}/{{split}}.tsv", "--data.mix_with=builtin",
        "--data.mix_ratio=1.0", f"--trainer.max_steps={STEPS}", "--trainer.max_epochs=-1",
        "--trainer.check_val_every_n_epoch=50", "--trainer.num_sanity_val_steps=0", "--model.lr=0.005",
        "--model.scheduler=budget", "--model.warmup_steps=5",
        "--model.emb_dim=48",  # ignored: the architecture is the base's
    )  # fmt: skip
    cli = train_main(args)
    assert len(cli.datamodule.splits["train"]) == 40  # 20 new pairs and 20 of the original 1500
    train_src = set(cli.datamodule.splits["train"].texts_src)
    assert {s for s, _ in pairs} <= train_src
    (last,) = tmp_path.rglob("last.ckpt")
    tuned, original = (torch.load(p, map_location="cpu", weights_only=True) for p in (last, tiny_checkpoint))
    assert tuned["global_step"] == STEPS  # a fresh run: its own steps, not the base's plus these
    assert tuned["hyper_parameters"]["emb_dim"] == original["hyper_parameters"]["emb_dim"] == 32
    assert tuned[CHECKPOINT_KEY]["src_spm"] == original[CHECKPOINT_KEY]["src_spm"]  # byte for byte
    assert tuned[CHECKPOINT_KEY]["tgt_spm"] == original[CHECKPOINT_KEY]["tgt_spm"]
    after = exact(last, pairs)
    assert after >= max(15, before + 10), f"exact matches on the 20 new pairs: {before} before, {after} after"


def test_init_from_a_missing_checkpoint_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(tiny_train_args(tmp_path, f"--model.init_from={tmp_path / 'nope.ckpt'}"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: invalid configuration: checkpoint {tmp_path / 'nope.ckpt'} does not exist" in err


def test_the_recipe_fine_tunes_on_exported_suggestions(
    tiny_checkpoint: Path, new_pairs, tmp_path: Path
) -> None:
    """POST /suggest's store -> ``seq2seq-suggestions export --format tsv OUT`` -> ``scripts/train.py fit
    --config configs/finetune.yaml --data.source OUT``: the export is read as it is written."""
    _, pairs = new_pairs
    db, out = tmp_path / "suggestions.db", tmp_path / "corrections"
    store = open_suggestions(db)
    store.add(pairs[0][0], "une correction plus ancienne", "en", "fr", at=1.0)  # superseded below
    for src, tgt in pairs:
        store.add(src, tgt, "en", "fr", at=2.0)
    store.close()
    export = ["--suggestions-db-path", str(db), "export", "--pair", "en-fr", "--format", "tsv", str(out)]
    assert suggestions_main([*export, "--validation-fraction", "0"]) == 0  # validate on every correction
    assert (out / "train.tsv").read_text(encoding="utf-8").splitlines()[:2] == ["en\tfr", "\t".join(pairs[0])]

    base = export_checkpoint(tiny_checkpoint, tmp_path / "served.ckpt")
    before = exact(base, pairs)
    cli = train_main([
        "fit", f"--config={ROOT / 'configs' / 'finetune.yaml'}", f"--model.init_from={base}",
        "--data.src_lang=en", "--data.tgt_lang=fr", f"--data.source={out}", "--data.mix_with=builtin",
        "--data.builtin_sizes=[1500, 60, 60]",  # the base's corpus (conftest.tiny_train_args)
        f"--data.cache_dir={tmp_path}/cache", f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}/runs", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", f"--trainer.max_steps={STEPS}",
        "--model.lr=0.005",  # the recipe's rate is for a real model's thousands of updates, not these
    ])  # fmt: skip
    dm = cli.datamodule
    validation = dm.splits["validation"]
    assert list(zip(validation.texts_src, validation.texts_tgt, strict=True)) == pairs
    assert len(dm.splits["train"]) == 2 * len(pairs)  # the corrections and as many original pairs
    assert {s for s, _ in pairs} <= set(dm.splits["train"].texts_src)
    (last,) = tmp_path.rglob("last.ckpt")
    tuned, original = (torch.load(p, map_location="cpu", weights_only=True) for p in (last, tiny_checkpoint))
    assert tuned["global_step"] == STEPS
    assert tuned[CHECKPOINT_KEY]["src_spm"] == original[CHECKPOINT_KEY]["src_spm"]
    assert tuned[CHECKPOINT_KEY]["tgt_spm"] == original[CHECKPOINT_KEY]["tgt_spm"]
    after = exact(last, pairs)
    assert after >= max(15, before + 10), f"exact matches on 20 corrections: {before} before, {after} after"
