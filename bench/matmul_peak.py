"""This CPU's measured fp32 matrix-multiply peak, the yardstick for model FLOP utilization.

python bench/matmul_peak.py [--threads 2] [--sizes 1024 2048]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def matmul_peak(n: int = 2048, repeats: int = 10, threads: int | None = None) -> float:
    """Median GFLOP/s of an n x n x n fp32 matmul (large enough to be compute-bound)."""
    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048], help="matrix sizes n (n x n x n)")
    args = p.parse_args()
    for n in args.sizes:
        print(
            f"fp32 matmul {n}^3: {matmul_peak(n, threads=args.threads):.1f} GFLOP/s median ({args.threads} threads)"
        )


if __name__ == "__main__":
    main()
