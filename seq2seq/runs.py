"""Reading finished (or running) training runs back: learning curves, configuration and test scores of
``runs/<name>/version_N`` folders, for ``scripts/plot_runs.py`` and ``scripts/compare_runs.py``.

A run folder holds ``metrics.csv`` (CSV logger), ``config.yaml`` (LightningCLI) and, after a test after
fit, ``test_results.json``. A resumed run appends to its folder's ``metrics.csv``; rows logged after its
last checkpoint and logged again after the resume are counted once (the later value wins).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Configuration keys that differ between runs without being a choice of the experiment.
IGNORED = ("trainer.logger", "trainer.default_root_dir", "trainer.callbacks", "ckpt_path", "data.cache_dir",
           "checkpoint.dirpath", "config", "seed_everything")  # fmt: skip


@dataclass
class Run:
    path: Path
    name: str
    config: dict  # flattened config.yaml: {"model.lr": 0.002, ...}
    val: list[dict[str, float]] = field(default_factory=list)  # step, minutes, bleu, chrf, loss
    train: list[dict[str, float]] = field(default_factory=list)  # step, loss, tokens_per_s
    test: dict | None = None  # test_results.json

    @property
    def seed(self):
        return self.config.get("seed_everything")

    @property
    def minutes(self) -> float:
        if self.test is not None:
            return float(self.test["minutes"])
        return self.val[-1]["minutes"] if self.val else math.nan

    @property
    def updates(self) -> int | None:
        if self.test is not None:
            return int(self.test["updates"])
        return int(self.val[-1]["step"]) + 1 if self.val else None


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and "class_path" not in value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _float(value: str | None) -> float:
    return float(value) if value not in (None, "") else math.nan


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """Validation and training rows of a ``metrics.csv``, one per step, in step order."""
    val: dict[int, dict] = {}
    train: dict[int, dict] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            if row.get("val/bleu"):
                val[step] = {
                    "step": step, "epoch": int(row["epoch"]), "minutes": _float(row.get("val/train_minutes")),
                    "bleu": _float(row["val/bleu"]), "chrf": _float(row.get("val/chrf")),
                    "loss": _float(row.get("val/loss")),
                }  # fmt: skip
            if row.get("train/loss"):
                train[step] = {
                    "step": step, "loss": _float(row["train/loss"]),
                    "tokens_per_s": _float(row.get("train/tgt_tokens_per_s")),
                }  # fmt: skip
    return [val[s] for s in sorted(val)], [train[s] for s in sorted(train)]


def load_run(path: Path) -> Run:
    path = Path(path)
    metrics = path / "metrics.csv"
    if not metrics.is_file():
        raise FileNotFoundError(f"{path} is not a run folder: it has no metrics.csv")
    config_file = path / "config.yaml"
    config = flatten(yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
    val, train = read_metrics(metrics)
    results = path / "test_results.json"
    test = json.loads(results.read_text()) if results.is_file() else None
    return Run(path, f"{path.parent.name}/{path.name}", config, val, train, test)


def find_runs(paths: list[str | Path]) -> list[Run]:
    """Runs from run folders, or from experiment folders (each ``version_N`` in them is a run)."""
    runs = []
    for p in map(Path, paths):
        if (p / "metrics.csv").is_file():
            runs.append(load_run(p))
            continue
        versions = sorted((v for v in p.glob("version_*") if (v / "metrics.csv").is_file()), key=_version_key)
        if not versions:
            raise FileNotFoundError(
                f"{p} is not a run folder (no metrics.csv) nor holds version_N run folders"
            )
        runs += [load_run(v) for v in versions]
    return runs


def _version_key(path: Path) -> tuple[int, str]:
    tail = path.name.removeprefix("version_")
    return (int(tail), "") if tail.isdigit() else (1 << 30, tail)


def differing(runs: list[Run]) -> list[str]:
    """Configuration keys whose values are not the same in every run."""
    keys = sorted({k for r in runs for k in r.config if not k.startswith(IGNORED)})
    missing = object()
    return [k for k in keys if len({repr(r.config.get(k, missing)) for r in runs}) > 1]


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def _cell(value) -> str:
    return "-" if value is None else str(value).replace("|", "\\|")


def compare_table(runs: list[Run]) -> str:
    """A Markdown table: the differing hyperparameters, then validation and test scores, time, seed."""
    keys = differing(runs)
    header = ["run", *keys, "seed", "best val BLEU", "last val BLEU", "test BLEU", "test chrF",
              "test BLEU (last)", "test chrF (last)", "minutes", "updates"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in runs:
        tests = (r.test or {}).get("results", {})
        best, last = tests.get("best", {}), tests.get("last", {})
        cells = [
            r.name, *(_cell(r.config.get(k)) for k in keys), _fmt(r.seed),
            _fmt(max((v["bleu"] for v in r.val), default=None)), _fmt(r.val[-1]["bleu"] if r.val else None),
            _fmt(best.get("bleu")), _fmt(best.get("chrf")), _fmt(last.get("bleu")), _fmt(last.get("chrf")),
            _fmt(r.minutes, 1), _fmt(r.updates),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
