"""Our training step on this machine, by precision and compilation: real tokens/s and GFLOP/s.

    python bench/probes/step_rates.py [--rows 8] [--rounds 3] [--quick]   (prints JSON)

MiniLM with a classification head, the step the train stage takes (finetune.calibration's
`training_step`: forward + loss under autocast, backward, fused AdamW), on micro-batches shaped like
the default IMDB run's (8 rows at max_length 256, length-grouped, so each batch is nearly free of
padding: lengths below). Sides, warmed up on every batch, then timed in alternating rounds:
fp32; bf16 as the stage trains it (autocast, fused attention kept in fp32); bf16 autocast
throughout (the fused attention in bf16 too); and each precision compiled (torch.compile; its
compilation is the warm-up minus a timed round). First, with empty caches, what `bf16: auto` and
`compile: auto` choose for a whole default-budget IMDB run (the sentiment preset's reviews and
epochs), and how long choosing takes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))  # also when run by hand
from measure import attention_in_bf16, model_shape, set_threads  # noqa: E402

LENGTHS = (256, 256, 241, 256, 187, 256)  # per micro-batch; most IMDB reviews pass 256 tokens


def flops_per_batch(shape: dict[str, int], batch: dict[str, Any]) -> float:
    """6·N·s + 12·L·h·s² per sequence of real length s (as comparison 2 counts)."""
    lengths = batch["attention_mask"].sum(dim=1).double()
    return float(6 * shape["non_embedding_params"] * lengths.sum()
                 + 12 * shape["layers"] * shape["hidden"] * (lengths ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the tiny model, short batches")
    args = parser.parse_args()
    set_threads()
    os.environ["FINETUNE_CACHE"] = tempfile.mkdtemp(prefix="step-rates-")  # `auto` measures afresh
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="step-rates-inductor-")  # compiles afresh
    from transformers import AutoModelForSequenceClassification

    from finetune import calibration
    from finetune.config import compose
    from finetune.models import load_model
    from finetune.precision import keep_cpu_attention_fp32
    from finetune.training import run_steps

    keep_cpu_attention_fp32()
    model_name = "tiny" if args.quick else "minilm"
    cfg = compose(Path(__file__).resolve().parents[2], ["task=sentiment", f"model={model_name}"])
    model = load_model(cfg.model, AutoModelForSequenceClassification.__name__, 42, attention_dropout=0.0,
                       num_labels=2).train()
    lengths = (24, 31) if args.quick else LENGTHS
    generator = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(1000, 20000, (args.rows, n), generator=generator),
                "attention_mask": torch.ones(args.rows, n, dtype=torch.long),
                "labels": torch.randint(0, 2, (args.rows,), generator=generator)} for n in lengths]
    shape = model_shape(model)

    def step(bf16: bool, compiled: bool, plain_attention: bool = False) -> Any:
        twin = copy.deepcopy(model)
        inner = calibration.training_step(torch.compile(twin) if compiled else twin, bf16)
        if not plain_attention:
            return inner

        def with_bf16_attention(batch: dict[str, Any]) -> None:
            with attention_in_bf16():
                inner(batch)
        return with_bf16_attention

    # First, with empty caches (ours and inductor's), what `auto` picks for the default-budget IMDB
    # run (the sentiment preset's reviews and epochs), and what choosing costs.
    steps = run_steps(cfg.train, int(cfg.data.max_train_samples), args.rows)
    started = time.perf_counter()
    bf16 = calibration.training_bf16(model, batches, tolerance=0.05)
    eager_rate = bf16.rates.get("bf16" if bf16.use else "fp32")
    compiled = calibration.training_compile(model, batches, steps, bf16.use, eager_rate)
    auto = {"steps": steps, "bf16": bf16.use, "bf16_reason": bf16.reason, "bf16_rates": bf16.rates,
            "compile": compiled.use, "compile_reason": compiled.reason, "compile_rates": compiled.rates,
            "compile_cost_s": compiled.cost_s,
            "calibration_s": time.perf_counter() - started}
    sides = [calibration.Side("fp32", step(False, False)), calibration.Side("bf16", step(True, False)),
             calibration.Side("bf16, attention in bf16", step(True, False, plain_attention=True)),
             calibration.Side("fp32 compiled", step(False, True)), calibration.Side("bf16 compiled", step(True, True))]
    noise = calibration.time_sides(sides, batches, rounds=args.rounds, give_up=None, decisive=None, warm_all=True)
    tokens = calibration.real_tokens(batches)
    flops = sum(flops_per_batch(shape, b) for b in batches)
    result: dict[str, Any] = {
        "model": cfg.model.name, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "batches": [list(b["input_ids"].shape) for b in batches], "noise": noise, "shape": shape,
        "sides": {s.name: {"round_s": s.round_s, "rounds_s": s.rounds_s, "warm_s": s.warm_s,
                           "step_ms": 1e3 * s.round_s / len(batches), "tokens_per_s": tokens / s.round_s,
                           "gflops": flops / s.round_s / 1e9,
                           "compile_s": max(0.0, s.warm_s - s.round_s) if "compiled" in s.name else None}
                  for s in sides}, "auto": auto}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
