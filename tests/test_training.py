"""Tests for Lightning training through the real CLI: checkpoints, reload in a fresh process,
validate/test, logging, resuming a killed run, precision, accumulation, schedules,
and clear errors for bad configuration."""

from __future__ import annotations

import csv
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, tiny_train_args

from seq2seq import Translator
from seq2seq.cli import TrainCLI, train_main
from seq2seq.module import CHECKPOINT_KEY
from seq2seq.tokenizer import Tokenizer

TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
QUICK_EVAL = ["--trainer.num_sanity_val_steps=0", "--model.eval_max_length=20"]
SENTENCES = ["twenty-one", "three hundred and five", "Monday, December 5, 2050", "seven"]


def subprocess_env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def tiny_workdir(tiny_checkpoint: Path) -> Path:
    """The fixture run's folder: its ``cache`` holds the tokenized corpus that later runs reuse."""
    return next(p for p in tiny_checkpoint.parents if (p / "cache").is_dir())


def run_args(workdir: Path, tiny_workdir: Path, *extra: str) -> list[str]:
    """Tiny fit arguments writing under ``workdir`` but reusing the fixture's data cache."""
    return tiny_train_args(workdir, f"--data.cache_dir={tiny_workdir / 'cache'}", *extra)


def read_metrics(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# -- the checkpoint -----------------------------------------------------------------------


def test_checkpoint_loads_safely_and_is_self_contained(tiny_checkpoint: Path) -> None:
    ckpt = load(tiny_checkpoint)  # weights_only=True: plain tensors, dicts, strings and bytes
    hp = ckpt["hyper_parameters"]
    assert hp["emb_dim"] == 32 and hp["dec_hidden"] == 64 and hp["attention"] == "general"
    entry = ckpt[CHECKPOINT_KEY]
    assert entry["src_lang"] == "en" and entry["tgt_lang"] == "fr" and entry["data"] == "builtin"
    src, tgt = Tokenizer(entry["src_spm"]), Tokenizer(entry["tgt_spm"])
    assert (src.vocab_size, tgt.vocab_size) == (hp["src_vocab_size"], hp["tgt_vocab_size"])
    assert src.decode(src.encode(["twenty-one"])) == ["twenty-one"]
    # the protos live in their own entry, not in the hyperparameters (nor hparams.yaml)
    assert not any(isinstance(v, bytes) for v in hp.values())
    state = ckpt["state_dict"]
    assert state["model.encoder.embed.weight"].shape == (hp["src_vocab_size"], 32)
    assert state["model.output.weight"].shape == (hp["tgt_vocab_size"], 64)
    assert all(k.startswith("model.") for k in state)
    # last.ckpt is the end of training (max_epochs=3), not the best epoch's copy
    assert ckpt["epoch"] == 2 and ckpt["global_step"] > 0


def test_translations_reproduce_in_a_fresh_process(tiny_checkpoint: Path) -> None:
    code = (
        "import json, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from seq2seq import Translator\n"
        "t = Translator.from_checkpoint(sys.argv[1])\n"
        "out = {b: [[x.text, x.score] for x in t.translate(json.loads(sys.argv[2]), beam_size=b)]"
        " for b in (1, 3)}\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tiny_checkpoint), json.dumps(SENTENCES)],
        capture_output=True, text=True, env=subprocess_env(), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])

    translator = Translator.from_checkpoint(tiny_checkpoint)
    for beam in (1, 3):
        here = translator.translate(SENTENCES, beam_size=beam)
        assert [t.text for t in here] == [text for text, _ in fresh[str(beam)]]
        assert [t.score for t in here] == pytest.approx([s for _, s in fresh[str(beam)]], abs=1e-5)
        assert any(t.text for t in here) and all(t.score < 0 for t in here)


def test_csv_logger_writes_val_bleu_every_epoch(tiny_checkpoint: Path) -> None:
    rows = read_metrics(tiny_checkpoint.parent.parent / "metrics.csv")
    val = [r for r in rows if r.get("val/bleu")]
    assert [int(r["epoch"]) for r in val] == [0, 1, 2]  # tiny_train_args: max_epochs=3
    assert all(0.0 <= float(r["val/bleu"]) <= 100.0 for r in val)
    assert all(float(r["val/chrf"]) > 0.0 for r in val)
    losses = [float(r["val/loss"]) for r in val]
    assert losses[-1] < losses[0], f"validation loss did not fall: {losses}"


# -- the CLI ------------------------------------------------------------------------------


def run_train_script(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run scripts/train.py as ``__main__`` in this process; returns the exit code."""
    monkeypatch.setattr(sys, "argv", [str(TRAIN_SCRIPT), *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(TRAIN_SCRIPT), run_name="__main__")
    return exit_info.value.code or 0


def test_print_config_omits_linked_vocab_sizes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_train_script(monkeypatch, "fit", "--print_config") == 0
    config = yaml.safe_load(capsys.readouterr().out)
    # the vocabulary sizes are linked from the data module at instantiation, never configured
    assert "src_vocab_size" not in config["model"] and "tgt_vocab_size" not in config["model"]
    assert config["model"]["attention"] == "general" and config["data"]["spm_vocab_size"] == 8000
    assert config["checkpoint"]["monitor"] == "val/bleu" and config["checkpoint"]["save_last"] is True
    assert config["early_stopping"]["check_on_train_epoch_end"] is False
    assert config["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.CSVLogger"

    config_file = ROOT / "configs" / "multi30k_en_de.yaml"
    assert run_train_script(monkeypatch, "fit", f"--config={config_file}", "--print_config") == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["tie_embeddings"] is True and config["data"]["tgt_lang"] == "de"
    assert "src_vocab_size" not in config["model"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.atention=dot"], "unrecognized arguments: --model.atention=dot"),
        (["--model.attention=luong"], 'Parser key "model.attention"'),
        (["--model.dropout=abc"], 'Parser key "model.dropout"'),
        (["--trainer.max_epochs=many"], 'Parser key "trainer.max_epochs"'),
    ],
)
def test_cli_rejects_unknown_keys_and_mistyped_values(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(["fit", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_a_typo_in_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("model:\n  emb_dim: 32\n  hiden: 64\n")
    with pytest.raises(SystemExit) as exit_info:
        train_main(["fit", f"--config={config}"])
    assert exit_info.value.code == 2
    assert "does not accept option 'model.hiden'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.dropout=1.5"], "dropout probability has to be between 0 and 1, but got 1.5"),
        (["--model.emb_dim=0"], "emb_dim must be at least 1, got 0"),
        (["--model.teacher_forcing=2"], "teacher_forcing must be between 0 and 1, got 2.0"),
        (
            ["--model.attention=dot", "--model.dec_hidden=48"],
            "dot attention needs decoder hidden (48) == encoder output (64)",
        ),
        (["--trainer.devices=0"], "`Trainer(devices='0')` value is not a valid input"),
    ],
)
def test_cli_rejects_values_the_constructors_refuse(
    args: list[str],
    message: str,
    tmp_path: Path,
    tiny_workdir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(run_args(tmp_path, tiny_workdir, *args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: invalid configuration: {message}" in err and "Traceback" not in err


def test_validate_and_test_reproduce_the_training_metrics(tiny_checkpoint: Path, tmp_path: Path) -> None:
    config = tiny_checkpoint.parent.parent / "config.yaml"  # saved by the fit run
    elsewhere = [
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    cli = train_main(["validate", f"--config={config}", f"--ckpt_path={tiny_checkpoint}", *elsewhere])
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    # last.ckpt holds the weights of the last validation during fit: same numbers again
    last = [r for r in read_metrics(config.parent / "metrics.csv") if r.get("val/bleu")][-1]
    assert metrics["val/loss"] == pytest.approx(float(last["val/loss"]), abs=1e-4)
    assert metrics["val/bleu"] == pytest.approx(float(last["val/bleu"]), abs=1e-4)
    assert metrics["val/chrf"] == pytest.approx(float(last["val/chrf"]), abs=1e-4)

    cli = train_main(["test", f"--config={config}", f"--ckpt_path={tiny_checkpoint}", *elsewhere])
    metrics = cli.trainer.callback_metrics
    assert {"test/bleu", "test/chrf", "test/loss"} <= set(metrics)
    assert 0.0 <= float(metrics["test/bleu"]) <= 100.0 and float(metrics["test/chrf"]) > 0.0
    logged = read_metrics(Path(cli.trainer.logger.log_dir) / "metrics.csv")
    assert any(r.get("test/bleu") for r in logged)


# -- training variants --------------------------------------------------------------------


def fit_steps(tmp_path: Path, tiny_workdir: Path, steps: int, *extra: str) -> TrainCLI:
    """A fit that stops after ``steps`` optimizer steps, before any validation."""
    args = [f"--trainer.max_steps={steps}", "--trainer.num_sanity_val_steps=0", *extra]
    return train_main(run_args(tmp_path, tiny_workdir, *args))


def test_bf16_mixed_precision_matches_fp32_within_bf16_tolerance(
    tmp_path: Path, tiny_workdir: Path, tiny_checkpoint: Path
) -> None:
    from lightning.pytorch.plugins.precision import MixedPrecision

    from seq2seq.batching import collate

    # the context Lightning runs each bf16-mixed step in: nn.Linear in bf16, nn.GRU stays fp32
    translator = Translator.from_checkpoint(tiny_checkpoint)
    targets = ["vingt et un", "trois cent cinq", "lundi 5 décembre 2050", "sept"]
    batch = collate(
        translator.src_tokenizer.encode(SENTENCES), translator.tgt_tokenizer.encode(targets), [0] * 4
    )
    with torch.no_grad():
        full, _ = translator.model(batch.src, batch.src_lengths, batch.tgt_in)
        with MixedPrecision("bf16-mixed", "cpu").forward_context():
            mixed, _ = translator.model(batch.src, batch.src_lengths, batch.tgt_in)
    assert full.dtype == torch.float32 and mixed.dtype == torch.bfloat16  # really computed in bf16
    assert not torch.equal(mixed.float(), full)
    bf16_eps = torch.finfo(torch.bfloat16).eps  # 2**-7
    torch.testing.assert_close(mixed.float(), full, rtol=4 * bf16_eps, atol=4 * bf16_eps)

    # and through the CLI: three training steps in bf16-mixed land close to the fp32 ones
    cli = fit_steps(tmp_path / "bf16", tiny_workdir, 3, "--trainer.precision=bf16-mixed")
    reference = fit_steps(tmp_path / "fp32", tiny_workdir, 3)
    assert cli.trainer.precision == "bf16-mixed" and cli.trainer.global_step == 3
    assert all(p.dtype == torch.float32 for p in cli.model.parameters())  # fp32 master weights
    loss, reference_loss = (float(c.trainer.callback_metrics["train/loss"]) for c in (cli, reference))
    assert loss == pytest.approx(reference_loss, rel=4 * bf16_eps) and loss != reference_loss


def test_gradient_accumulation_steps_every_second_batch(tmp_path: Path, tiny_workdir: Path) -> None:
    cli = fit_steps(tmp_path, tiny_workdir, 3, "--trainer.accumulate_grad_batches=2")
    assert cli.trainer.global_step == 3
    assert cli.trainer.fit_loop.epoch_loop.batch_progress.total.completed == 6


def test_warmup_decay_schedule_sets_the_learning_rate(tmp_path: Path, tiny_workdir: Path) -> None:
    sched = ["--model.scheduler=warmup_decay", "--model.warmup_steps=2", "--model.decay_steps=4"]
    cli = fit_steps(tmp_path, tiny_workdir, 3, *sched)
    # after 3 steps: past the 2 warmup steps, halfway through the cosine decay to 10%
    lr = cli.trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(0.005 * (0.1 + 0.9 * 0.5), rel=1e-6)
    assert cli.trainer.lr_scheduler_configs[0].interval == "step"


def test_budget_schedule_reaches_its_floor_when_the_budget_ends(tmp_path: Path, tiny_workdir: Path) -> None:
    sched = ["--model.scheduler=budget", "--model.warmup_steps=2", "--model.final_lr_ratio=0.1"]
    cli = fit_steps(tmp_path, tiny_workdir, 4, *sched)
    # the last scheduler step saw 4 of 4 planned steps: the floor, 10% of the peak
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.005 * 0.1, rel=1e-6)
    assert cli.trainer.lr_scheduler_configs[0].interval == "step"
    # warmup and decay multiply: at the first of 2 warmup steps, half of the floor
    assert cli.model._budget_lr_factor(0) == pytest.approx(0.5 * 0.1)


def test_budget_schedule_follows_max_time(tmp_path: Path, tiny_workdir: Path) -> None:
    from lightning.pytorch.callbacks import Timer

    sched = ["--model.scheduler=budget", "--trainer.max_time=00:01:00:00"]
    cli = fit_steps(tmp_path, tiny_workdir, 1, *sched)
    timer = next(cb for cb in cli.trainer.callbacks if isinstance(cb, Timer))
    timer._offset = 45 * 60  # as if resumed after 45 of the 60 minutes
    cli.trainer.fit_loop.epoch_loop.max_steps = -1  # leave only max_epochs: a far smaller share
    assert cli.model.training_progress() == pytest.approx(0.75, abs=0.01)


def test_killed_run_resumes_from_last_checkpoint(tmp_path: Path, tiny_workdir: Path) -> None:
    # save every 5 steps without waiting for val/bleu, so the kill lands mid-epoch
    args = run_args(
        tmp_path, tiny_workdir, "--checkpoint.every_n_train_steps=5", "--checkpoint.save_last=true",
        "--checkpoint.monitor=null", "--trainer.max_epochs=1", *QUICK_EVAL,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=subprocess_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.rglob("last.ckpt")):
            assert proc.poll() is None, f"training ended before a checkpoint: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no last.ckpt within 300 s"
            time.sleep(0.05)  # polling interval
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_path = next(tmp_path.rglob("last.ckpt"))
    killed = load(killed_path)
    assert killed["global_step"] % 5 == 0 and killed["global_step"] > 0

    cli = train_main([*args, "--ckpt_path=last"])
    trainer = cli.trainer
    assert trainer.ckpt_path == str(killed_path), "did not resume from the killed run's last.ckpt"
    assert trainer.current_epoch == 1 and trainer.global_step > killed["global_step"]
    resumed = load(Path(trainer.checkpoint_callback.last_model_path))
    assert resumed["global_step"] > killed["global_step"]
