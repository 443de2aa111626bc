"""Comparison 2: training FLOP rate against this machine's own matmul ceiling, measured in the run.

Training FLOPs counted on real tokens only (padding is waste, not work), per sequence of real
length s:  6 · N · s  +  12 · L · h · s²
N = non-embedding parameters (the 6 = 2 forward + 4 backward FLOPs per parameter per token),
L = layers, h = hidden size (12·L·h·s² = QKᵀ and attention·V, forward and backward). Summed over
every training sequence (Σs and Σs² come from the attention masks, bench/helpers/measure.py) and divided
by the training time. The ceiling: torch.matmul 2048×2048 in fp32 and in bf16 (bench/probes/matmul.py).
"""

from __future__ import annotations

import json
from typing import Any

from common import PROBES, PYTHON, WORK, Context, commands_block, fmt, has_bf16_units, load_result, table

NAME = "efficiency"
TITLE = "2. Efficiency against the machine (matmul ceiling)"
SIZE = 2048


def run(ctx: Context) -> dict[str, Any]:
    log = WORK / NAME / "matmul.log"
    ctx.run([PYTHON, PROBES / "matmul.py", "--size", SIZE, "--reps", 5 if ctx.quick else 20], log=log)
    matmul = json.loads(log.read_text().strip().splitlines()[-1])
    throughput = load_result(ctx.results_dir, "throughput")
    rows = []
    for name, pair in (throughput or {}).get("pairs", {}).items():
        for side in ("baseline", "ours"):
            run_ = pair[side]
            rate = training_flops(run_) / run_["train_seconds"] / 1e9
            rows.append({"pair": name, "side": side, "script": pair["baseline_script"] if side == "baseline"
                         else "stages/train.py", "bf16": run_["bf16"], "gflops": rate,
                         "of_fp32": rate / matmul["fp32"]["median_gflops"],
                         "of_bf16": rate / matmul["bf16"]["median_gflops"]})
    return {"matmul": matmul, "training": rows, "throughput_found": throughput is not None,
            "commands": list(ctx.commands)}


def training_flops(run: dict[str, Any]) -> float:
    """6·N·Σs + 12·L·h·Σs² over the training sequences (real lengths s)."""
    return 6 * run["non_embedding_params"] * run["real_tokens"] + 12 * run["layers"] * run["hidden"] * \
        run["sum_sq_lengths"]


def render(result: dict[str, Any]) -> str:
    m = result["matmul"]
    ceiling = table(["matmul", "GFLOP/s (median)", "best"],
                    [[f"fp32 {m['size']}²", fmt(m["fp32"]["median_gflops"]), fmt(m["fp32"]["best_gflops"])],
                     [f"bf16 {m['size']}²", fmt(m["bf16"]["median_gflops"]), fmt(m["bf16"]["best_gflops"])]])
    if not result["training"]:
        training = "_No throughput result in this results folder: run `--only throughput efficiency`._"
    else:
        bf16_units = has_bf16_units(m)  # without them a fraction of the bf16 rate means nothing
        training = table(["pair", "side", "precision", "training GFLOP/s (real tokens)", "of fp32 matmul",
                          "of bf16 matmul"],
                         [[r["pair"], f"{r['side']} ({r['script']})", "bf16" if r["bf16"] else "fp32",
                           fmt(r["gflops"]), f"{100 * r['of_fp32']:.0f}%",
                           f"{100 * r['of_bf16']:.0f}%" if bf16_units else "n/a (no bf16 units)"]
                          for r in result["training"]])
    return "\n".join([f"Threads: {m['threads']}. Training FLOPs per sequence of real length s: "
                      "**6 · N · s + 12 · L · h · s²** (N = non-embedding parameters, L = layers, h = hidden "
                      "size), summed over the training sequences of comparison 1 and divided by its train "
                      "seconds. Padding FLOPs are not counted as work.", "", ceiling, "", training, "",
                      commands_block(result.get("commands", []))])
