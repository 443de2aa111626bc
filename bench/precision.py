"""Comparison 7: bf16 against fp32 quality, one task family at a time (the check behind `bf16: auto`).

`bf16: auto` turns bf16 autocast on wherever it is fast (CUDA bf16, CPUs with AMX). Whether it
costs quality is a property of the task family, not of the machine, so each family's preset is
trained and evaluated twice here, fp32 and bf16 forced (`train.bf16=true`: the same autocast,
slow on a CPU without bf16 units), same seed, same examples, and its primary metric compared.
A drop of more than 1 point means that family keeps fp32 (`train.bf16: false` in its preset).
Evaluation runs in the training precision too: that is what the evaluate stage does.
"""

from __future__ import annotations

from typing import Any

import pipeline
from ablation import SHORT
from common import WORK, Context, commands_block, fmt, table

NAME = "precision"
TITLE = "7. bf16 vs fp32 quality by task family"
# One task per family. Budgets are the presets' own where the bf16 run stays affordable on a CPU
# without bf16 units (every bf16 matmul there is emulated), else the largest that is.
FAMILIES: dict[str, dict[str, Any]] = {
    "classification": {"task": "sarcasm", "metric": "accuracy", "scale": 100,
                       "full": {"max_train_samples": 5000, "max_eval_samples": None, "max_length": 64},
                       "quick": {"max_train_samples": 64, "max_eval_samples": 64, "max_length": 64}},
    "token_classification": {"task": "ner", "metric": "f1", "scale": 100,
                             "full": {"max_train_samples": 5000, "max_eval_samples": None},
                             "quick": {"max_train_samples": 64, "max_eval_samples": 64}},
    "question_answering": {"task": "qa", "metric": "f1", "scale": 1,  # already in points
                           "full": {"max_train_samples": 2000, "max_eval_samples": 1000},
                           "quick": {"max_train_samples": 32, "max_eval_samples": 32}},
}
PRECISIONS = {"fp32": {"bf16": False}, "bf16": {"bf16": True}}
TOLERANCE = 1.0  # points


def run(ctx: Context) -> dict[str, Any]:
    families = {}
    for family, spec in FAMILIES.items():
        model = "tiny" if ctx.quick else "minilm"
        data = pipeline.data_overrides(spec["task"], model, **spec["quick" if ctx.quick else "full"])
        pipeline.prepare(ctx, data)
        sides = {}
        for precision, switch in PRECISIONS.items():
            print(f"[{NAME}] {family} ({spec['task']}): {precision}", flush=True)
            workdir = WORK / NAME / family / precision
            train = pipeline.train_overrides(ctx, **(SHORT | switch))  # 1 epoch, the final model scored
            meter = pipeline.train(ctx, workdir, data, train, tag="train")
            metrics = pipeline.evaluate(ctx, workdir, data, train, tag="train")
            sides[precision] = {"score": spec["scale"] * metrics[spec["metric"]], "metrics": _scalars(metrics),
                                "bf16": meter["bf16"], "train_seconds": meter["train_seconds"],
                                "samples": meter["samples"], "evaluate_wall": metrics["process_wall"]}
        delta = sides["bf16"]["score"] - sides["fp32"]["score"]
        families[family] = {"task": spec["task"], "model": model, "metric": spec["metric"],
                            "budget": spec["quick" if ctx.quick else "full"], "sides": sides, "delta_pt": delta,
                            "keeps_fp32": delta < -TOLERANCE}
    return {"families": families, "commands": list(ctx.commands)}


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def render(result: dict[str, Any]) -> str:
    rows = []
    for family, r in result["families"].items():
        fp32, bf16 = r["sides"]["fp32"], r["sides"]["bf16"]
        budget = ", ".join(f"{k}={pipeline.hydra_value(v)}" for k, v in r["budget"].items())
        verdict = (f"bf16 −{-r['delta_pt']:.2f} pt: keep fp32" if r["keeps_fp32"]
                   else f"equal within {TOLERANCE:g} pt")
        rows.append([family, f"`{r['task']}` ({budget})", r["metric"], fmt(fp32["score"], 2), fmt(bf16["score"], 2),
                     f"{r['delta_pt']:+.2f}", fmt(fp32["train_seconds"]), fmt(bf16["train_seconds"]), verdict])
    return "\n".join([
        "Each family's task trained for one epoch and scored on its evaluation split twice: fp32 and bf16 autocast "
        "(`train.bf16=true`, evaluation in bf16 too), same seed and examples, one run each. Points: accuracy and "
        "entity F1 ×100, SQuAD F1 as is. A family whose bf16 score falls more than "
        f"{TOLERANCE:g} pt below fp32 keeps fp32 (`train.bf16: false` in its preset). Train seconds are this "
        "machine's and say nothing of bf16 speed where bf16 has hardware support.", "",
        table(["family", "task (budget)", "metric", "fp32", "bf16", "Δ pt", "fp32 train s", "bf16 train s",
               "verdict"], rows), "",
        commands_block(result.get("commands", []))])
