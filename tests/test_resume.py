"""Training survives preemption: SIGTERM/SIGUSR1 save last.ckpt and stop with a documented status,
a resumed run ends with the same weights, bit for bit, as one left alone (same batches, same
dropout masks), checkpoints are never half-written, and bf16-mixed stays close to fp32."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, tiny_train_args
from test_data import _stream_dm, write_hub_shards

from seq2seq.checkpoint import PREEMPTED_EXIT, AtomicCheckpointIO, Checkpoint
from seq2seq.cli import find_last_checkpoint, train_main

TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
TESTS = Path(__file__).resolve().parent


def subprocess_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))  # resume_callbacks
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=path)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("resume-cache")


VARIANTS = {
    # map-style token-budget sampler, preempted with SIGTERM
    "map": ([], signal.SIGTERM),
    # streaming batches (buffers of 200 pairs, about 2 batches each), preempted with SIGUSR1
    "stream": (["--data.streaming=true", "--data.stream_buffer_size=200"], signal.SIGUSR1),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_preempted_run_resumes_bit_for_bit(variant: str, tmp_path: Path, cache: Path) -> None:
    extra, signum = VARIANTS[variant]
    stop_at = 5  # optimizer steps before the signal: mid-way through the first epoch (12 or 15 steps)

    def args(name: str, *more: str) -> list[str]:
        return tiny_train_args(
            tmp_path / name, f"--data.cache_dir={cache}", "--model.dropout=0.3", "--trainer.max_epochs=2",
            "--trainer.num_sanity_val_steps=0", "--trainer.limit_val_batches=1", "--model.eval_max_length=20",
            "--trainer.callbacks+=resume_callbacks.RecordBatches",
            f"--trainer.callbacks.path={tmp_path / name}.jsonl", *extra, *more,
        )  # fmt: skip

    alone = train_main(args("alone")).trainer

    stopped = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args("resumed"), "--trainer.callbacks+=resume_callbacks.SignalAtStep",
         f"--trainer.callbacks.step={stop_at}", f"--trainer.callbacks.signum={int(signum)}"],
        capture_output=True, text=True, env=subprocess_env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert stopped.returncode == PREEMPTED_EXIT, stopped.stderr[-3000:]
    assert "Received SIGTERM" in stopped.stderr  # Lightning's own handler ran (SIGUSR1 forwarded)
    (saved,) = (tmp_path / "resumed").rglob("last.ckpt")
    ckpt = load(saved)
    assert ckpt["global_step"] == stop_at and ckpt["epoch"] == 0  # saved mid-epoch, at the signal
    (loader_state,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    # the position is what training consumed, not what was fetched ahead
    assert (loader_state["batches"] if variant == "stream" else loader_state["position"]) == stop_at

    resumed = train_main([*args("resumed"), "--ckpt_path=last"]).trainer
    assert resumed.ckpt_path == str(saved)
    assert resumed.global_step == alone.global_step > stop_at

    # the same batches in the same order: none seen twice, none skipped
    seen_alone, seen_resumed = records(tmp_path / "alone.jsonl"), records(tmp_path / "resumed.jsonl")
    assert [r["step"] for r in seen_resumed] == list(range(alone.global_step))
    assert seen_resumed == seen_alone
    # and the same weights, bit for bit (dropout 0.3: the random generators were restored too)
    ours, theirs = (
        dict(resumed.lightning_module.named_parameters()),
        dict(alone.lightning_module.named_parameters()),
    )
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_a_kill_during_the_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    last = tmp_path / "last.ckpt"
    weights = {"weight": torch.randn(256, 256), "bias": torch.randn(256)}  # about 260 KB
    AtomicCheckpointIO().save_checkpoint({"state_dict": weights, "global_step": 2}, last)
    before = last.read_bytes()
    # a child saves a newer checkpoint over it and is SIGKILLed half-way through writing the bytes
    child = (
        "import io, sys, time, torch\n"
        "from seq2seq.checkpoint import AtomicCheckpointIO\n"
        "ckpt = torch.load(sys.argv[1], weights_only=True)\n"
        "ckpt['global_step'] += 1\n"
        "save = torch.save\n"
        "def half_then_stall(obj, f):\n"
        "    buf = io.BytesIO(); save(obj, buf); data = buf.getvalue()\n"
        "    f.write(data[: len(data) // 2]); f.flush()\n"
        "    print('half written', flush=True); time.sleep(120)\n"
        "torch.save = half_then_stall\n"
        "AtomicCheckpointIO().save_checkpoint(ckpt, sys.argv[1])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(last)], stdout=subprocess.PIPE, text=True,
                            env=subprocess_env(), cwd=ROOT)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "half written"
        (partial,) = tmp_path.glob(".last.ckpt.tmp-*")
        assert 0 < partial.stat().st_size < len(before)  # the new file really is half there
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert last.read_bytes() == before  # the previous checkpoint, untouched
    previous = load(last)
    assert previous["global_step"] == 2 and all(
        torch.equal(previous["state_dict"][k], weights[k]) for k in weights
    )

    # the next save replaces it whole and removes the dead writer's leftover
    newer = load(last) | {"global_step": 3}
    AtomicCheckpointIO().save_checkpoint(newer, last)
    assert load(last)["global_step"] == 3 and not list(tmp_path.glob(".last.ckpt.tmp-*"))


def test_last_checkpoint_follows_the_wall_clock_interval(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves: list[int] = []
    save_last = Checkpoint._save_last_checkpoint

    def spy(self: Checkpoint, trainer, candidates) -> None:  # the real save, recorded
        saves.append(trainer.global_step)
        save_last(self, trainer, candidates)

    monkeypatch.setattr(Checkpoint, "_save_last_checkpoint", spy)
    no_validation = [
        "--trainer.max_steps=4",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.limit_val_batches=0",
    ]
    for interval, expected in (("0:00:00.000001", [1, 2, 3, 4]), ("0:10:00", [4])):
        saves.clear()
        train_main(tiny_train_args(tmp_path / interval.replace(":", "-"), f"--data.cache_dir={cache}",
                                   f"--checkpoint.last_interval={interval}", *no_validation))  # fmt: skip
        # every step when the interval is that short; else only Lightning's save when training ends
        assert saves == expected, interval


def positions(batches) -> list[tuple]:
    return [(batch.position, tuple(batch.index.tolist())) for batch in batches]


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A corpus in two JSON Lines shards: two DataLoader workers each stream one."""
    from seq2seq.corpus import generate_pairs

    return write_hub_shards(tmp_path_factory.mktemp("shards"), generate_pairs("en", "fr", 500, seed=5))


@pytest.mark.parametrize("variant", ["map", "stream"])
def test_loaders_with_workers_resume_after_what_training_consumed(
    variant: str, tmp_path: Path, two_shards: str
) -> None:
    """Two DataLoader workers fetch ahead, and Lightning holds one more batch: the state names
    the batches training consumed, and a fresh loader continues right after them."""
    dm = _stream_dm(two_shards, tmp_path, streaming=variant == "stream", num_workers=2)
    consumed = [0]
    dm._progress = lambda: (0, consumed[0])  # epoch 0, batches that finished a training step
    loader = dm.train_dataloader
    whole = positions(loader())
    first = loader()
    batches = iter(first)
    trained = [next(batches) for _ in range(5)]
    consumed[0] = 4
    next(batches)  # fetched ahead: not trained on
    state = first.state_dict()
    again = loader()
    again.load_state_dict(state)
    rest = positions(again)
    assert positions(trained[:4]) + rest == whole  # none twice, none skipped, same order
    assert len(whole) > 8


def test_a_checkpoint_of_another_data_seed_starts_the_epoch_over(caplog: pytest.LogCaptureFixture) -> None:
    import numpy as np

    from seq2seq.batching import TokenBatchSampler

    lengths = np.arange(1, 41)

    def sampler(seed: int) -> TokenBatchSampler:
        return TokenBatchSampler(lengths, lengths, max_tokens=100, max_sentences=8, seed=seed)

    ours = sampler(1)
    whole = list(ours)
    ours.load_state_dict({**ours.state_dict(), "position": 3})
    assert list(ours) == whole[3:]  # the same seed continues at its place
    ours.load_state_dict({**sampler(2).state_dict(), "position": 3})
    assert list(ours) == whole and "differs from the checkpoint's 2" in caplog.text


def test_ckpt_path_last_takes_the_newer_of_last_and_a_slurm_hpc_checkpoint(tmp_path: Path) -> None:
    """After SIGTERM (last.ckpt) or SLURM's SIGUSR1 requeue (hpc_ckpt_N.ckpt), one job script
    with ``--ckpt_path last`` resumes from whichever the run wrote last."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    trainer = pl.Trainer(default_root_dir=tmp_path, logger=CSVLogger(tmp_path / "runs", name="x"),
                         enable_progress_bar=False)  # fmt: skip
    assert find_last_checkpoint(trainer) is None
    last = tmp_path / "runs" / "x" / "version_0" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    for older, newer in ((hpc, last), (last, hpc)):
        older.write_bytes(b"old")
        newer.write_bytes(b"new")
        os.utime(older, (1_000_000, 1_000_000))
        os.utime(newer, (2_000_000, 2_000_000))
        assert find_last_checkpoint(trainer) == str(newer)
