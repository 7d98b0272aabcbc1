"""Export a training checkpoint for serving: weights, hyperparameters and tokenizers only.

python scripts/export.py runs/multi30k_de_en/version_0/checkpoints/best.ckpt -o de-en.ckpt
python -m serve --checkpoint de-en.ckpt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seq2seq.export import export_checkpoint
from seq2seq.translator import CheckpointError


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a .ckpt written by scripts/train.py")
    p.add_argument("-o", "--output", required=True, help="the slim checkpoint to write")
    args = p.parse_args(argv)
    try:
        if not Path(args.output).resolve().parent.is_dir():
            raise ValueError(f"cannot write {args.output}: its directory does not exist")
        out = export_checkpoint(args.checkpoint, args.output)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    before, after = Path(args.checkpoint).stat().st_size, out.stat().st_size
    print(f"{out}: {after / 1e6:.1f} MB ({before / 1e6:.1f} MB before)")


if __name__ == "__main__":
    main()
