"""Comparison 7: bf16 against fp32 quality, one task family at a time (the check behind `bf16: auto`).

`bf16: auto` turns bf16 autocast on wherever it is measured faster and within the family's
tolerance. Whether it costs quality is a property of the task family, not of the machine, so each family's task is
trained and evaluated twice with its preset's budget, fp32 and bf16 (`train.bf16=true`), same
seed and examples, and the primary metric compared. A drop of more than 1 point means that
family keeps fp32 (`train.bf16: false` in its preset). Evaluation runs in bf16 too, as the
evaluate stage does.

Where the machine has bf16 units (a bf16 matmul not much slower than fp32), the bf16 side is the real
autocast. Elsewhere a bf16 matmul runs ~100x slower than fp32, so the bf16 side runs under probes/bf16_emulation.py:
real autocast, with its bf16 matrix products and fused attention computed by fp32 kernels on the
same bf16 values and rounded to bf16 (bit-exact for the products; its fidelity check is recorded).
"""

from __future__ import annotations

import json
from typing import Any

import pipeline
from ablation import SHORT
from common import PROBES, PYTHON, WORK, Context, commands_block, fmt, table

NAME = "precision"
TITLE = "7. bf16 vs fp32 quality by task family"
# One task per family, each at its preset's budget (the default `dvc repro` matrix).
FAMILIES: dict[str, dict[str, Any]] = {
    "classification": {"task": "sarcasm", "metric": "accuracy", "scale": 100, "quick": {"max_train_samples": 64}},
    "token_classification": {"task": "ner", "metric": "f1", "scale": 100, "quick": {"max_train_samples": 64}},
    "question_answering": {"task": "qa", "metric": "f1", "scale": 1,  # SQuAD F1 is in points already
                           "quick": {"max_train_samples": 32}},
}
QUICK_EVAL = 64
EMULATOR = PROBES / "bf16_emulation.py"
TOLERANCE = 1.0  # points


def run(ctx: Context) -> dict[str, Any]:
    real_bf16 = _bf16_auto_picks_bf16(ctx)
    out: dict[str, Any] = {"bf16_side": "real autocast" if real_bf16 else "emulated (bench/probes/bf16_emulation.py)"}
    if not real_bf16:
        log = WORK / NAME / "emulation-check.log"
        ctx.run([PYTHON, EMULATOR, "--check"], log=log)
        out["emulation_check"] = json.loads(log.read_text().strip().splitlines()[-1])
    model = "tiny" if ctx.quick else "minilm"
    families = {}
    for family, spec in FAMILIES.items():
        budget = spec["quick"] | {"max_eval_samples": QUICK_EVAL} if ctx.quick else {}
        data = pipeline.data_overrides(spec["task"], model, **budget)
        pipeline.prepare(ctx, data)
        cfg = pipeline.compose(data)
        sides = {}
        for precision in ("fp32", "bf16"):
            print(f"[{NAME}] {family} ({spec['task']}): {precision}", flush=True)
            workdir = WORK / NAME / family / precision
            # One epoch (every preset here trains one) with no per-epoch validation: the final model is scored.
            train = pipeline.train_overrides(ctx, **(SHORT | {"bf16": precision == "bf16"}))
            wrap = [EMULATOR] if precision == "bf16" and not real_bf16 else []
            meter = pipeline.train(ctx, workdir, data, train, tag="train", wrap=wrap)
            metrics = pipeline.evaluate(ctx, workdir, data, train, tag="train", wrap=wrap)
            sides[precision] = {"score": spec["scale"] * metrics[spec["metric"]], "bf16": meter["bf16"],
                                "train_seconds": meter["train_seconds"], "samples": meter["samples"],
                                "evaluated_on": f"{metrics['split']} ({cfg.data.max_eval_samples or 'all'})",
                                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}}
        delta = sides["bf16"]["score"] - sides["fp32"]["score"]
        families[family] = {"task": spec["task"], "model": model, "metric": spec["metric"], "budget": budget,
                            "sides": sides, "delta_pt": delta, "keeps_fp32": delta < -TOLERANCE}
    return out | {"families": families, "commands": list(ctx.commands)}


def _bf16_auto_picks_bf16(ctx: Context) -> bool:
    """Whether this machine runs bf16 products in hardware (finetune.calibration.bf16_matmul_ratio)."""
    log = WORK / NAME / "bf16-ratio.log"
    ctx.run([PYTHON, "-c", "from finetune.calibration import HOPELESS, bf16_matmul_ratio; "
             "print(bf16_matmul_ratio(1024) <= HOPELESS)"], log=log, record=False)
    return log.read_text().strip().splitlines()[-1] == "True"


def checks(pr: dict[str, Any]) -> list[list[str]]:
    """This comparison's targets: [target, measured, pass/fail] rows for BENCHMARKS.md's checks."""
    rows: list[list[str]] = []
    worst = min(pr["families"].items(), key=lambda item: item[1]["delta_pt"])
    kept = ", ".join(family for family, r in pr["families"].items() if r["keeps_fp32"]) or "none"
    rows.append(["bf16 quality by task family (a drop > 1 pt keeps fp32 for that family)",
                 f"smallest Δ (bf16 − fp32) {worst[1]['delta_pt']:+.2f} pt ({worst[0]}); fp32 kept for: {kept}",
                 "pass" if kept == "none" else "fp32 kept"])
    return rows


def render(result: dict[str, Any]) -> str:
    rows = []
    for family, r in result["families"].items():
        fp32, bf16 = r["sides"]["fp32"], r["sides"]["bf16"]
        outcome = f"bf16 −{-r['delta_pt']:.2f} pt: keep fp32" if r["keeps_fp32"] else f"equal within {TOLERANCE:g} pt"
        rows.append([family, f"`{r['task']}`", fp32["samples"], fp32["evaluated_on"], r["metric"],
                     fmt(fp32["score"], 2), fmt(bf16["score"], 2), f"{r['delta_pt']:+.2f}",
                     fmt(fp32["train_seconds"]), fmt(bf16["train_seconds"]), outcome])
    parts = [f"Each family's task at its preset's budget (one epoch), scored on its evaluation split twice: fp32 "
             f"and bf16 autocast (`train.bf16=true`, evaluation in bf16 too), same seed and examples, one run each. "
             f"bf16 side: **{result['bf16_side']}**. Points: accuracy and entity F1 ×100, SQuAD F1 as is. A family "
             f"whose bf16 score falls more than {TOLERANCE:g} pt below fp32 keeps fp32 (`train.bf16: false` in its "
             "preset).", "",
             table(["family", "task", "training samples", "evaluated on", "metric", "fp32", "bf16", "Δ pt",
                    "fp32 train s", "bf16 train s", "verdict"], rows)]
    check = result.get("emulation_check")
    if check:
        parts += ["", "Fidelity of the emulation (`python bench/probes/bf16_emulation.py --check`: a 2-layer BERT, one "
                  "forward and backward; relative distance of the logits and of all gradients). `bf16` is real "
                  "autocast with the fused attention kernel, `bf16-math` real autocast with attention as bf16 "
                  "matmuls and softmax, another legitimate bf16 kernel; without attention the emulation is "
                  "bit-exact. Its train seconds above are emulation seconds, not bf16 speed.", "",
                  table(["compared", "relative distance"], [[name, f"{value:.2e}"] for name, value in check.items()])]
    return "\n".join([*parts, "", commands_block(result.get("commands", []))])
