"""Working with experiments: test after fit, what each validation leaves behind (samples, hypotheses,
attention), throughput in the logs, scored checkpoint names with best.ckpt, one run folder across a
resume, TensorBoard next to CSV, and the plot and compare commands, on two tiny runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, tiny_train_args
from sacrebleu.metrics import BLEU, CHRF
from test_resume import subprocess_env

from seq2seq import Translator
from seq2seq.cli import TrainCLI, train_main
from seq2seq.runs import find_runs, read_metrics
from seq2seq.sources import load_corpus

SIZES = (1500, 60, 60)  # tiny_train_args' builtin_sizes
RUN_ARGS = ["--test_after_fit.checkpoints=[best, last]", "--monitor.attention_plot=true",
            "--trainer.log_every_n_steps=4", "--trainer.num_sanity_val_steps=0", "--model.eval_max_length=30"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny runs that differ in learning rate and seed: name -> run folder."""
    work = tmp_path_factory.mktemp("experiments")
    found = {}
    for name, lr, seed in (("a", 0.005, 1), ("b", 0.003, 2)):
        args = tiny_train_args(work, f"--data.cache_dir={work / 'cache'}", f"--trainer.logger.init_args.name={name}",
                               f"--model.lr={lr}", f"--seed_everything={seed}", *RUN_ARGS)  # fmt: skip
        train_main(args)
        (found[name],) = (work / "runs" / name).glob("version_*")
    return found


@pytest.fixture(scope="module")
def test_split() -> tuple[list[str], list[str]]:
    corpus = load_corpus("builtin", "en", "fr", builtin_sizes=SIZES)
    return list(corpus["test"]["src"]), list(corpus["test"]["tgt"])


def val_rows(run: Path) -> list[dict]:
    return read_metrics(run / "metrics.csv")[0]


def test_fit_ends_with_test_results_that_sacrebleu_reproduces(runs: dict[str, Path], test_split) -> None:
    sources, refs = test_split
    for run in runs.values():
        report = json.loads((run / "test_results.json").read_text())
        assert (report["split"], report["beam_size"], report["length_penalty"]) == ("test", 5, 0.0)
        last_ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert report["updates"] == last_ckpt["global_step"] == 36  # 12 batches x 3 epochs
        assert report["minutes"] >= round(val_rows(run)[-1]["minutes"], 3) > 0
        assert set(report["results"]) == {"best", "last"}
        for kind, result in report["results"].items():
            assert result["hypotheses"] == f"hypotheses/test-{kind}.txt"
            hyps = (run / result["hypotheses"]).read_text().splitlines()
            translator = Translator.from_checkpoint(result["checkpoint"])
            assert hyps == [t.text for t in translator.translate(sources, beam_size=5, length_penalty=0.0)]
            bleu, chrf = BLEU(), CHRF()
            assert result["bleu"] == round(bleu.corpus_score(hyps, [refs]).score, 2)
            assert result["chrf"] == round(chrf.corpus_score(hyps, [refs]).score, 2)
            assert result["bleu_signature"] == str(bleu.get_signature())
            assert result["chrf_signature"] == str(chrf.get_signature())
        assert report["results"]["last"]["step"] == 36
        assert Path(report["results"]["best"]["checkpoint"]).name.startswith("best-")


def test_each_validation_writes_hypotheses_samples_and_attention(runs: dict[str, Path]) -> None:
    corpus = load_corpus("builtin", "en", "fr", builtin_sizes=SIZES)
    val_src, val_ref = list(corpus["validation"]["src"]), list(corpus["validation"]["tgt"])
    run = runs["a"]
    rows = val_rows(run)
    files = sorted((run / "hypotheses").glob("val-step*.txt"))
    assert (
        [int(f.stem.removeprefix("val-step")) for f in files] == [r["step"] + 1 for r in rows] == [12, 24, 36]
    )
    samples = (run / "samples.txt").read_text()
    blocks = samples.split("step ")[1:]
    assert len(blocks) == 3
    for row, f, block in zip(rows, files, blocks, strict=True):
        hyps = f.read_text().splitlines()
        assert len(hyps) == len(val_src) == 60
        # the validation BLEU Lightning logged (torchmetrics: 13a, no smoothing) is sacreBLEU's on this file
        unsmoothed = BLEU(smooth_method="none").corpus_score(hyps, [val_ref]).score
        assert row["bleu"] == pytest.approx(unsmoothed, abs=0.01)
        expected = [f"{row['step'] + 1} (epoch {row['epoch']})"]
        for i in range(3):  # the same three sentences every time: the first three of validation
            expected += [
                f"  source      {val_src[i]}",
                f"  reference   {val_ref[i]}",
                f"  hypothesis  {hyps[i]}",
            ]
        assert block.rstrip("\n").split("\n") == expected
    pngs = sorted((run / "attention").glob("val-step*.png"))
    assert [p.name for p in pngs] == [f.name.replace(".txt", ".png") for f in files]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_checkpoint_names_carry_the_score_and_best_links_the_best(runs: dict[str, Path]) -> None:
    for run in runs.values():
        ckpts = run / "checkpoints"
        (best,) = ckpts.glob("best-*.ckpt")
        match = re.fullmatch(r"best-(\d+)-(\d+)-bleu(\d+\.\d\d)\.ckpt", best.name)
        assert match, best.name
        rows = val_rows(run)
        top = max(rows, key=lambda r: r["bleu"])  # the first of equal scores, as ModelCheckpoint keeps
        assert (int(match[1]), int(match[2]), match[3]) == (
            top["epoch"],
            top["step"] + 1,
            f"{top['bleu']:.2f}",
        )
        link = ckpts / "best.ckpt"
        assert link.is_symlink() and link.readlink() == Path(best.name)
        state = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)["callbacks"]
        recorded = next(v["best_model_path"] for k, v in state.items() if k.startswith("Checkpoint"))
        assert Path(recorded) == best


def test_throughput_is_logged_per_window(runs: dict[str, Path]) -> None:
    run = runs["a"]
    val, train = read_metrics(run / "metrics.csv")
    rates = [t["tokens_per_s"] for t in train]
    assert [t["step"] + 1 for t in train] == list(range(4, 37, 4))  # log_every_n_steps=4
    # a lower bound: an epoch's target tokens over its whole wall time, validation included
    tokens = sum(len(ids) + 1 for ids in Translator.from_checkpoint(run / "checkpoints" / "last.ckpt")
                 .tgt_tokenizer.encode(list(load_corpus("builtin", "en", "fr", builtin_sizes=SIZES)["train"]["tgt"])))  # fmt: skip
    epoch_seconds = 60 * (val[2]["minutes"] - val[1]["minutes"])
    assert min(rates[3:]) > 0.5 * tokens / epoch_seconds
    assert max(rates) < 50 * tokens / epoch_seconds


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip


def test_plot_runs_writes_png_and_svg(runs: dict[str, Path], tmp_path: Path) -> None:
    png, svg = tmp_path / "curves.png", tmp_path / "curves.svg"
    for out in (png, svg):
        proc = run_script("plot_runs.py", runs["a"], runs["b"].parent, "-o", out)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "a/version_0" in text and "b/version_0" in text  # the legend names both runs
    bad = run_script("plot_runs.py", runs["a"], "-o", tmp_path / "curves.gif")
    assert bad.returncode == 2 and "the suffix must be one of .png, .svg, .pdf" in bad.stderr
    missing = run_script("plot_runs.py", tmp_path / "nothing", "-o", png)
    assert missing.returncode == 2 and "is not a run folder" in missing.stderr


def test_compare_runs_tabulates_what_differs(runs: dict[str, Path]) -> None:
    proc = run_script("compare_runs.py", runs["a"], runs["b"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    header, rule, *rows = proc.stdout.strip().splitlines()
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[:3] == ["run", "model.lr", "seed"]  # the only differing choices, then the seed
    assert "trainer.max_epochs" not in cols and "trainer.logger" not in cols
    table = [dict(zip(cols, (c.strip() for c in row.strip("|").split("|")), strict=True)) for row in rows]
    for cells, (name, run), lr, seed in zip(table, runs.items(), ("0.005", "0.003"), ("1", "2"), strict=True):
        report = json.loads((run / "test_results.json").read_text())
        vals = [r["bleu"] for r in val_rows(run)]
        assert cells["run"] == f"{name}/version_0" and cells["model.lr"] == lr and cells["seed"] == seed
        assert cells["best val BLEU"] == f"{max(vals):.2f}" and cells["last val BLEU"] == f"{vals[-1]:.2f}"
        assert cells["test BLEU"] == f"{report['results']['best']['bleu']:.2f}"
        assert cells["test chrF (last)"] == f"{report['results']['last']['chrf']:.2f}"
        assert cells["updates"] == "36" and cells["minutes"] == f"{report['minutes']:.1f}"


def test_a_resumed_run_keeps_one_folder_and_one_curve(tmp_path: Path, runs: dict[str, Path]) -> None:
    cache = runs["a"].parents[2] / "cache"
    args = tiny_train_args(tmp_path, f"--data.cache_dir={cache}", "--trainer.log_every_n_steps=4",
                           "--trainer.num_sanity_val_steps=0", "--model.eval_max_length=20")  # fmt: skip
    stopped = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args, "--trainer.callbacks+=resume_callbacks.SignalAtStep",
         "--trainer.callbacks.step=18"],
        capture_output=True, text=True, env=subprocess_env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert stopped.returncode == 75, stopped.stderr[-3000:]  # PREEMPTED_EXIT, mid-way through epoch 1
    train_main([*args, "--ckpt_path=last"])
    (run,) = find_runs([tmp_path / "runs" / "lightning_logs"])  # one version folder, not two
    assert [v["epoch"] for v in run.val] == [0, 1, 2]
    assert [v["step"] + 1 for v in run.val] == [12, 24, 36]
    minutes = [v["minutes"] for v in run.val]
    assert minutes == sorted(minutes) and minutes[0] > 0  # the clock went on from the stopped run
    assert [t["step"] + 1 for t in run.train] == list(range(4, 37, 4))  # every window once
    assert len(list(run.path.glob("checkpoints/best-*.ckpt"))) == 1  # save_top_k=1 kept across the resume


def test_tensorboard_logs_next_to_csv_in_one_folder(tmp_path: Path, runs: dict[str, Path]) -> None:
    pytest.importorskip("tensorboard", reason="the TensorBoard logger needs: pip install -e '.[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cache = runs["a"].parents[2] / "cache"
    loggers = [{"class_path": f"lightning.pytorch.loggers.{cls}", "init_args": {"save_dir": str(tmp_path / "runs"), "name": "tb"}}
               for cls in ("CSVLogger", "TensorBoardLogger")]  # fmt: skip
    args = [
        *tiny_train_args(tmp_path, f"--data.cache_dir={cache}", *RUN_ARGS[1:]),
        f"--trainer.logger={json.dumps(loggers)}",
    ]
    train_main(args)
    (run,) = (tmp_path / "runs" / "tb").glob("version_*")
    assert (run / "metrics.csv").is_file() and list(run.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run), size_guidance={"images": 0, "tensors": 0}).Reload()
    csv_bleu = [v["bleu"] for v in val_rows(run)]
    assert [e.value for e in events.Scalars("val/bleu")] == pytest.approx(csv_bleu, abs=1e-4)
    assert len(events.Scalars("train/tgt_tokens_per_s")) == 9
    assert len(events.Images("val/attention")) == 3
    texts = events.Tensors("val/samples/text_summary")
    assert len(texts) == 3 and b"source" in texts[-1].tensor_proto.string_val[0]


def print_config(*configs: str) -> dict:
    import yaml

    args = ["fit", *(f"--config={ROOT / 'configs' / c}" for c in configs), "--print_config"]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return yaml.safe_load(proc.stdout)


@pytest.mark.parametrize("pair", ["de_en", "en_de"])
def test_benchmark_budget_is_updates_and_the_wall_clock_one_an_overlay(pair: str) -> None:
    config = print_config(f"multi30k_{pair}.yaml")
    trainer = config["trainer"]
    assert (trainer["max_steps"], trainer["max_epochs"], trainer["max_time"]) == (7200, -1, None)
    assert config["model"]["scheduler"] == "budget"
    assert config["test_after_fit"]["checkpoints"] == ["best", "last"]
    timed = print_config(f"multi30k_{pair}.yaml", "multi30k_60min.yaml")
    trainer = timed["trainer"]
    assert (trainer["max_steps"], trainer["max_epochs"], trainer["max_time"]) == (-1, -1, "00:01:00:00")
    assert timed["data"] == config["data"] and timed["model"] == config["model"]
    finetune = print_config("finetune.yaml")
    assert finetune["model"]["scheduler"] == "budget" and finetune["data"]["mix_ratio"] == 1.0


def test_budget_schedule_ends_at_max_steps_without_an_epoch_cap(
    tmp_path: Path, runs: dict[str, Path]
) -> None:
    cache = runs["a"].parents[2] / "cache"
    sched = ["--model.scheduler=budget", "--model.warmup_steps=2", "--model.final_lr_ratio=0.1"]
    args = tiny_train_args(tmp_path, f"--data.cache_dir={cache}", "--trainer.max_steps=20", "--trainer.max_epochs=-1",
                           "--trainer.num_sanity_val_steps=0", "--trainer.limit_val_batches=0", *sched)  # fmt: skip
    cli: TrainCLI = train_main(args)
    assert cli.trainer.estimated_stepping_batches == 20 and cli.trainer.global_step == 20
    # the last scheduler step saw 20 of 20 planned steps: the floor, 10% of the peak lr 0.005
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.005 * 0.1, rel=1e-6)
    assert cli.model.training_progress() == 1.0
