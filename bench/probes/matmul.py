"""Matmul GFLOP/s of this machine: torch.matmul on n×n, fp32 and bf16, warm-up then median.

    python bench/probes/matmul.py --size 2048 --reps 20 [--device cuda]   (prints JSON)

The ceiling that training FLOP rates are compared with (bench/comparisons/efficiency.py, bench/comparisons/gpu.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))  # also when run by hand
from measure import set_threads  # noqa: E402


def gflops(size: int, dtype: torch.dtype, device: str, reps: int, warmup: int = 3,
           budget_s: float = 60.0) -> dict[str, float]:
    """Median and best GFLOP/s over `reps` timed products after `warmup`; a product so slow that the
    whole would outlast `budget_s` (bf16 without bf16 units: ~1 min each at 2048²) gets 3 reps, 1 warm-up."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)

    def timed() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    first = timed()
    if first * (warmup + reps) > budget_s:
        warmup, reps = 1, min(reps, 3)
    for _ in range(warmup - 1):
        timed()
    times = [timed() for _ in range(reps)]
    flops = 2 * size**3
    return {"median_gflops": flops / statistics.median(times) / 1e9, "best_gflops": flops / min(times) / 1e9,
            "median_s": statistics.median(times), "reps": reps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    set_threads()
    result = {"size": args.size, "device": args.device, "threads": torch.get_num_threads()}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        result[name] = gflops(args.size, dtype, args.device, args.reps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
