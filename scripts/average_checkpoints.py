"""Average the weights of several checkpoints of one run into a new checkpoint.

    python scripts/average_checkpoints.py runs/multi30k_de_en/version_0/checkpoints/best-*.ckpt -o avg.ckpt

Averaging the last few good checkpoints smooths out the noise of the final updates and
usually gains a little BLEU for free. Everything but the weights is taken from the first file.
"""

from __future__ import annotations

import argparse
import sys

import torch

from seq2seq.translator import CheckpointError, load_checkpoint


def average(paths: list[str]) -> dict:
    """A checkpoint dict whose floating-point weights are the mean over ``paths``."""
    checkpoints = [load_checkpoint(p) for p in paths]
    first = checkpoints[0]
    keys = first["state_dict"].keys()
    for path, ckpt in zip(paths, checkpoints, strict=True):
        if ckpt["state_dict"].keys() != keys:
            raise CheckpointError(f"{path} has different parameters from {paths[0]}")
    averaged = {}
    for key, value in first["state_dict"].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([c["state_dict"][key] for c in checkpoints]).mean(0)
        else:
            averaged[key] = value
    # Keep only what a translator needs: the optimizer state would not match the new weights.
    keep = ("hyper_parameters", "seq2seq", "epoch", "global_step", "pytorch-lightning_version")
    return {**{k: first[k] for k in keep if k in first}, "state_dict": averaged, "averaged_from": list(paths)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    try:
        torch.save(average(args.checkpoints), args.output)
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    print(f"averaged {len(args.checkpoints)} checkpoints into {args.output}")


if __name__ == "__main__":
    main()
