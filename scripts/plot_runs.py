"""Learning curves of one or more runs on one figure: validation BLEU and loss against training
minutes and updates (PNG, SVG or PDF by the output's suffix).

    python scripts/plot_runs.py runs/multi30k_de_en/version_0 runs/multi30k_de_en/version_1 -o curves.png
    python scripts/plot_runs.py runs/multi30k_de_en -o curves.svg   # every version_N in it
"""

from __future__ import annotations

import argparse
import sys

from seq2seq.plot import plot_runs
from seq2seq.runs import find_runs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "runs", nargs="+", help="run folders (runs/NAME/version_N) or experiment folders (runs/NAME)"
    )
    p.add_argument("-o", "--output", required=True, help="the figure: .png, .svg or .pdf")
    args = p.parse_args(argv)
    try:
        runs = find_runs(args.runs)
        print(plot_runs(runs, args.output))
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
