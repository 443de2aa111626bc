"""Comparison 5 (only where CUDA is available): a bert-base-sized encoder on the GPU, bf16.

A randomly initialised BertConfig matching bert-base-uncased (weights do not change the speed):
the stock recipe (a, fp32) vs our train stage (bf16 auto → bf16 on a GPU that supports it) on the
IMDB pair of comparison 1, samples/s and MFU = training FLOPs (bench/comparisons/efficiency.py's formula) /
train seconds / the GPU's measured bf16 matmul rate (8192², bench/probes/matmul.py). Without CUDA it
records why it did not run. Untested on a GPU so far (none was lent when it was written).
"""

from __future__ import annotations

import json
from typing import Any

import throughput
from common import PROBES, PYTHON, WORK, Context, commands_block, fmt, table
from efficiency import training_flops

NAME = "gpu"
TITLE = "5. GPU: bert-base-sized encoder, bf16"
BERT_BASE = {"name": "bert_base_random", "config.hidden_size": 768, "config.num_hidden_layers": 12,
             "config.num_attention_heads": 12, "config.intermediate_size": 3072}


def run(ctx: Context) -> dict[str, Any]:
    log = WORK / NAME / "cuda.log"
    ctx.run([PYTHON, "-c", "import torch; print(torch.cuda.is_available()); print(torch.__version__); "
             "print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"], log=log, record=False)
    lines = log.read_text().splitlines()
    if lines[0].strip() != "True":
        return {"skipped": f"`torch.cuda.is_available()` is False here (torch {lines[1].strip()})"}
    ctx.run([PYTHON, PROBES / "matmul.py", "--device", "cuda", "--size", 8192, "--reps", 20],
            log=WORK / NAME / "mm.log")
    matmul = json.loads((WORK / NAME / "mm.log").read_text().strip().splitlines()[-1])
    pair = throughput.run_pair(ctx, "imdb", seeds=(42,) if ctx.quick else (42, 43, 44), model="tiny",
                               model_overrides=[f"model.{k}={v}" for k, v in BERT_BASE.items()],
                               baseline_flags=("--random-bert-base",))
    peak = matmul["bf16"]["median_gflops"]
    for side in ("baseline", "ours"):
        run_ = pair[side]
        run_["mfu"] = training_flops(run_) / run_["train_seconds"] / 1e9 / peak
    return {"device": lines[2].strip(), "matmul": matmul, "pair": pair, "commands": list(ctx.commands)}


def render(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return (f"**Not run**: {result['skipped']}. The code path is `bench/comparisons/gpu.py`; it runs by itself "
                "on a machine where torch sees a CUDA device. No GPU was lent to the task that wrote the harness "
                "(the device tool's status said `can_start_another: false`), so that path has never run.")
    pair, m = result["pair"], result["matmul"]
    rows = [[f"({pair['baseline_label']}) {pair['baseline_script']}" if side == "baseline" else "(c) stages/train.py",
             "bf16" if pair[side]["bf16"] else "fp32", fmt(pair[side]["samples_per_s"], 1),
             fmt(pair[side]["real_tokens_per_s"], 0), f"{100 * pair[side]['mfu']:.1f}%"]
            for side in ("baseline", "ours")]
    return "\n".join([f"Device: {result['device']}; bf16 matmul {m['size']}²: "
                      f"{m['bf16']['median_gflops'] / 1000:,.0f} TFLOP/s (fp32: "
                      f"{m['fp32']['median_gflops'] / 1000:,.0f}).", "",
                      table(["side", "precision", "samples/s", "real tokens/s", "MFU (of measured bf16 matmul)"],
                            rows), "", f"Ratio c/a samples/s: {pair['ratio_samples_per_s']:.2f}×.", "",
                      commands_block(result.get("commands", []))])
