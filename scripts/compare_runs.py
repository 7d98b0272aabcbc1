"""A Markdown table comparing runs: the hyperparameters that differ, best and last validation BLEU,
test BLEU and chrF (``test_results.json``), training minutes, updates and seed.

    python scripts/compare_runs.py runs/multi30k_de_en runs/multi30k_de_en_wdrop > table.md
    python scripts/compare_runs.py runs/*/version_*
"""

from __future__ import annotations

import argparse
import sys

from seq2seq.runs import compare_table, find_runs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "runs", nargs="+", help="run folders (runs/NAME/version_N) or experiment folders (runs/NAME)"
    )
    args = p.parse_args(argv)
    try:
        sys.stdout.write(compare_table(find_runs(args.runs)))
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
