"""scripts/demo.py end to end on tiny settings: real training, a real server process, real HTTP."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scripts" / "demo.py"


def run_demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(DEMO), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load_demo_module():
    spec = importlib.util.spec_from_file_location("demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_trains_serves_translates_and_shuts_down(tmp_path: Path) -> None:
    """The whole demo with a seconds-long training run; the threshold is off (tiny model)."""
    result = run_demo(
        f"--workdir={tmp_path}",
        "--num-sentences=12",
        "--beam-size=2",
        "--request-size=5",  # several requests
        "--examples=3",
        "--min-accuracy=0",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--data.builtin_sizes=[400, 20, 20]",
        "--data.spm_vocab_size=120",
        f"--data.cache_dir={tmp_path}/cache",
        "--model.emb_dim=16",
        "--model.enc_hidden=16",
        "--model.dec_hidden=32",
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    checkpoints = list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert checkpoints, "the demo's training wrote no checkpoint"
    # the best checkpoint (by val/bleu, as the checkpoint callback recorded it) is served
    assert re.search(
        rf"checkpoint: {re.escape(str(tmp_path))}/checkpoints/best-\d+-\d+-bleu\d+\.\d\d\.ckpt\n", out
    )
    assert re.search(r"healthy at http://127\.0\.0\.1:\d+", out)
    assert "translating 12 sentences of the test split over HTTP" in out
    assert out.count("  source      ") >= 3  # the examples: source, translation, reference
    assert out.count("  reference   ") == out.count("  source      ")
    match = re.search(r"exact match: (\d+)/12 = ", out)
    assert match and 0 <= int(match.group(1)) <= 12
    assert "server exited with code 0" in out and "no process left, port free" in out
    assert "demo: OK" in out


def test_demo_fails_below_the_accuracy_threshold(tiny_checkpoint: Path) -> None:
    """A tiny model cannot reach 100% exact match: the demo must say so and exit 1."""
    result = run_demo(
        f"--checkpoint={tiny_checkpoint}",
        "--split=validation",
        "--num-sentences=30",
        "--beam-size=1",
        "--min-accuracy=1.0",
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "exact match: " in result.stdout
    assert "below --min-accuracy 100.0%" in result.stderr
    # the server was still stopped cleanly before the verdict
    assert "no process left, port free" in result.stdout


def test_demo_reports_a_missing_checkpoint(tmp_path: Path, capsys) -> None:
    demo = load_demo_module()
    code = demo.main([f"--checkpoint={tmp_path / 'nope.ckpt'}"])
    assert code == 1
    assert f"demo: error: checkpoint {tmp_path / 'nope.ckpt'} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-accuracy=1.5"], "--min-accuracy must be between 0 and 1"),
        (["--beam-size=0"], "must be >= 1"),
        (["--checkpoint=x.ckpt", "--trainer.max_epochs=1"], "make no sense with --checkpoint"),
    ],
)
def test_demo_rejects_bad_options(args: list[str], message: str, capsys) -> None:
    demo = load_demo_module()
    with pytest.raises(SystemExit) as exc:
        demo.parse_args(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
