"""The set-up the two commands rely on: Makefile rules, .ci/run, the default config, pyproject."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make not installed")


def make_dry_run(directory: Path, target: str) -> list[str]:
    """The commands ``make TARGET`` would run in ``directory`` (``make -n``), one per line."""
    # under `make test` the outer make's variables would turn this into a sub-make
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line.strip() for line in result.stdout.splitlines()]
    return [line for line in lines if line and not re.match(r"make(\[\d+\])?:", line)]


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The Makefile and pyproject.toml alone: make -n never touches the real .venv."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


@needs_make
def test_install_pins_torch_before_the_project(project_copy: Path) -> None:
    lines = make_dry_run(project_copy, "install")
    assert lines[0] == "python3 -m venv .venv"
    pip = [line for line in lines if " install " in line]
    assert "torch==2.13.0" in pip[0], "torch must be installed first, pinned"
    assert pip[1].endswith("install --quiet -e '.[dev]'")
    assert lines[-1] == "touch .venv/.installed"


@needs_make
def test_install_is_skipped_until_pyproject_changes(project_copy: Path) -> None:
    stamp = project_copy / ".venv" / ".installed"
    stamp.parent.mkdir()
    stamp.touch()
    old = time.time() - 60
    os.utime(project_copy / "pyproject.toml", (old, old))
    assert make_dry_run(project_copy, "install") == []  # "Nothing to be done"
    test = make_dry_run(project_copy, "test")  # the Chromium check (tests/test_web.py), then pytest
    assert test[-1] == "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/pytest -q"
    assert not any("pip" in line for line in test)
    (project_copy / "pyproject.toml").touch()  # newer than the stamp: install again
    assert "torch==2.13.0" in " ".join(make_dry_run(project_copy, "install"))


@needs_make
def test_demo_and_lint_targets(project_copy: Path) -> None:
    demo = make_dry_run(project_copy, "demo")
    assert demo[-1].startswith("HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python scripts/demo.py")
    lint = make_dry_run(project_copy, "lint")
    assert lint[-2:] == [".venv/bin/ruff check .", ".venv/bin/ruff format --check ."]


def test_ci_entry_point_runs_make_test() -> None:
    script = ROOT / ".ci" / "run"
    assert script.stat().st_mode & stat.S_IXUSR, ".ci/run must be executable"
    lines = [line.strip() for line in script.read_text().splitlines()]
    assert lines[0] in ("#!/usr/bin/env bash", "#!/bin/bash")
    assert "set -euo pipefail" in lines
    commands = [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]
    assert commands[-1] == "make test"
    required = "export SEQ2SEQ_REQUIRE_BROWSER=1 SEQ2SEQ_REQUIRE_REDIS=1 SEQ2SEQ_REQUIRE_NGINX=1 SEQ2SEQ_REQUIRE_CONTAINER=1"
    assert commands[0] == required  # those tests may not skip in CI


def test_pyproject_names_files_that_exist() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (ROOT / project["readme"]).is_file()  # pip install -e fails without it
    assert any(dep.startswith("torch") for dep in project["dependencies"])
    assert "dev" in project["optional-dependencies"]


def test_default_config_is_the_builtin_task_and_parses() -> None:
    """The training CLI accepts configs/default.yaml and resolves it to the built-in en->fr task."""
    result = subprocess.run(
        [
            sys.executable,
            "scripts/train.py",
            "fit",
            "--config",
            "configs/default.yaml",
            "--print_config",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    assert config["data"]["source"] == "builtin"
    assert (config["data"]["src_lang"], config["data"]["tgt_lang"]) == ("en", "fr")
    assert config["trainer"]["max_time"], "a safety cap on training time"
    assert config["checkpoint"]["monitor"] == "val/bleu"
