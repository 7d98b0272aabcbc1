"""Print the learning curve of a run (validation BLEU/chrF against wall-clock training time).

python bench/learning_curve.py runs/multi30k_de_en/version_0/metrics.csv
"""

from __future__ import annotations

import argparse
import csv


def learning_curve(path: str) -> list[dict[str, float]]:
    """Rows of the CSV logger's metrics.csv that carry validation results."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/bleu")]
    return [
        {
            "epoch": int(r["epoch"]),
            "step": int(r["step"]),
            "minutes": float(r.get("val/train_minutes") or "nan"),
            "bleu": float(r["val/bleu"]),
            "chrf": float(r.get("val/chrf") or "nan"),
            "loss": float(r.get("val/loss") or "nan"),
        }
        for r in rows
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metrics", help="a CSV logger's runs/<name>/version_N/metrics.csv")
    args = p.parse_args()
    print(f"{'epoch':>5} {'step':>6} {'minutes':>8} {'val BLEU':>8} {'val chrF':>8} {'val loss':>8}")
    for r in learning_curve(args.metrics):
        print(
            f"{r['epoch']:5d} {r['step']:6d} {r['minutes']:8.1f} {r['bleu']:8.2f} {r['chrf']:8.2f} {r['loss']:8.3f}"
        )


if __name__ == "__main__":
    main()
