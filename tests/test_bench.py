"""The benchmark scripts run from a clean clone: each parses its options, and the padding
benchmark measures real batches of the built-in corpus (the others need the Multi30k model)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

BENCH = sorted((ROOT / "bench").glob("*.py"))
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


@pytest.mark.parametrize("script", BENCH, ids=lambda p: p.name)
def test_bench_script_starts(script) -> None:
    proc = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:")


def test_padding_bench_on_the_builtin_task(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "bench/padding.py", "--config", "configs/default.yaml", "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    share = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"(bucketed|random order): \d+ batches, .* total ([\d.]+)%", proc.stdout)
    }
    assert set(share) == {"bucketed", "random order"}, proc.stdout
    assert share["bucketed"] < 10 < share["random order"]
