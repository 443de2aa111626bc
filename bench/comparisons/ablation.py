"""Fast-path ablations: our train stage with one default of conf/train/default.yaml flipped at a time.

A default stays only if it is faster at equal quality. Short IMDB budget (1 epoch, no per-epoch
validation), accuracy from our evaluate stage on 500 test reviews; speed = median over reps of
the training loop (bench/helpers/measure.py), variants interleaved rep by rep so machine drift hits all
alike. bf16's quality is checked per task family in bench/comparisons/precision.py.
"""

from __future__ import annotations

from typing import Any

import pipeline
from common import WORK, Context, commands_block, fmt, has_bf16_units, load_result, median, table

NAME = "ablation"
TITLE = "6. Fast-path ablations (one switch flipped at a time)"
BF16 = "bf16 auto → true"
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "attention_dropout 0 → null (checkpoint's 0.1)": {"attention_dropout": None},
    "max_batch_tokens 2048 → null": {"max_batch_tokens": None},
    BF16: {"bf16": True},  # auto = fp32 on a CPU without AMX; forced bf16 shows why
    "group_by_length → random sampler": {"train_sampling_strategy": "random"},
    "length_bucket_batches 8 → 50 (transformers' grouping)": {"length_bucket_batches": 50},
    "pad_to_multiple_of auto → 8": {"pad_to_multiple_of": 8},  # auto = none on a CPU
    "dataloader_num_workers 0 → 1": {"dataloader_num_workers": 1},
}
SHORT = {"num_train_epochs": 1, "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False}
# Two sets: speed (IMDB at length 256, short, >= 3 reps) and quality (headlines, a budget where
# accuracy means something: one run each, for the switches that can change the numbers).
SETS: dict[str, dict[str, Any]] = {
    "sentiment": {"judges": "speed", "reps": 3, "variants": list(VARIANTS),
                  "full": {"max_train_samples": 192, "max_eval_samples": 500, "max_length": 256},
                  "quick": {"max_train_samples": 32, "max_eval_samples": 64, "max_length": 256}},
    "sarcasm": {"judges": "quality", "reps": 1,
                "variants": ["defaults", "attention_dropout 0 → null (checkpoint's 0.1)",
                             "group_by_length → random sampler",
                             "length_bucket_batches 8 → 50 (transformers' grouping)"],
                "full": {"max_train_samples": 5000, "max_eval_samples": None, "max_length": 64},
                "quick": None},  # quick: skipped
}
THRESHOLD = 0.03  # speed differences under 3% are called a tie


def run(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"sets": {}}
    skipped = not_worth_running(ctx)
    for task, spec in SETS.items():
        budget = spec["quick"] if ctx.quick else spec["full"]
        if budget is None:
            continue
        reps, names = 1 if ctx.quick else spec["reps"], [n for n in spec["variants"] if n not in skipped]
        model = "tiny" if ctx.quick else "minilm"  # quick proves the path; tiny keeps it short
        data = pipeline.data_overrides(task, model, **budget)
        pipeline.prepare(ctx, data)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        accuracy: dict[str, float] = {}
        for rep in range(reps):  # variants interleaved rep by rep
            for name in names:
                print(f"[{NAME}] {task}: {name}, rep {rep + 1}/{reps}", flush=True)
                workdir = WORK / NAME / task / slug(name)
                train = pipeline.train_overrides(ctx, **(SHORT | VARIANTS[name]))
                runs[name].append(pipeline.train(ctx, workdir, data, train, tag=f"rep{rep}"))
                if rep == 0:
                    accuracy[name] = pipeline.evaluate(ctx, workdir, data, train, tag="rep0")["accuracy"]
        rows = {name: {"overrides": VARIANTS[name], "accuracy": accuracy[name],
                       "samples_per_s": median(r["samples_per_s"] for r in runs[name]),
                       "real_tokens_per_s": median(r["real_tokens_per_s"] for r in runs[name]),
                       "padding_fraction": runs[name][0]["padding_fraction"],
                       "all_samples_per_s": [r["samples_per_s"] for r in runs[name]]} for name in names}
        out["sets"][task] = {"model": model, "budget": budget, "eval_examples": budget["max_eval_samples"],
                             "judges": spec["judges"], "reps": reps, "variants": rows,
                             "skipped": {n: skipped[n] for n in spec["variants"] if n in skipped}}
    out["commands"] = list(ctx.commands)
    return out


def not_worth_running(ctx: Context) -> dict[str, str]:
    """Variants skipped on this machine, with the reason: forced bf16 where a bf16 matmul runs more
    than 10x slower than fp32 (no bf16 units; comparison 2 measured it in this run)."""
    matmul = (load_result(ctx.results_dir, "efficiency") or {}).get("matmul")
    if not matmul or has_bf16_units(matmul):
        return {}
    fp32, bf16 = matmul["fp32"]["median_gflops"], matmul["bf16"]["median_gflops"]
    return {BF16: f"not run: bf16 matmul {bf16:.1f} GFLOP/s vs fp32 {fp32:.0f} here (comparison 2), so a bf16 "
                  f"step would take ~{fp32 / bf16:.0f}x as long; `bf16: auto` = fp32 on this CPU"}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def verdict(default: dict[str, Any], flipped: dict[str, Any], judges: str) -> str:
    """Is the default faster than the flipped switch (speed set), at equal quality (quality set)?"""
    speedup = default["samples_per_s"] / flipped["samples_per_s"] - 1
    speed = "default faster" if speedup > THRESHOLD else "default slower" if speedup < -THRESHOLD else "tie"
    if judges == "speed":
        return f"{speed} ({speedup:+.0%})"
    delta = 100 * (default["accuracy"] - flipped["accuracy"])
    quality = "equal quality" if abs(delta) <= 1.0 else f"quality {'+' if delta > 0 else '−'}{abs(delta):.1f} pt"
    return f"{quality} ({delta:+.2f} pt); {speed} ({speedup:+.0%}, one run)"


def render(result: dict[str, Any]) -> str:
    short = " ".join(f"train.{k}={pipeline.hydra_value(v)}" for k, v in SHORT.items())
    parts = [f"Budget: 1 epoch, no per-epoch validation (`{short}`). Two sets: **speed** (IMDB at length 256: "
             "median of the reps of the training loop, variants interleaved; its accuracy after 192 reviews is "
             "near chance and judges nothing) and **quality** (headlines, 5000 training examples, accuracy on all "
             f"6709 validation rows, one run per variant). Speed differences under {THRESHOLD:.0%} are a tie; "
             "quality is equal within 1 point."]
    for task, data in result["sets"].items():
        variants, judges = data["variants"], data.get("judges", "speed")
        default = variants["defaults"]
        rows = [[name, " ".join(f"{k}={pipeline.hydra_value(v)}" for k, v in spec["overrides"].items())
                 or "(conf/train/default.yaml)",
                 fmt(spec["samples_per_s"], 2), ", ".join(fmt(x, 2) for x in spec["all_samples_per_s"]),
                 fmt(spec["real_tokens_per_s"], 0), f"{100 * spec['padding_fraction']:.0f}%",
                 f"{100 * spec['accuracy']:.2f}",
                 "" if name == "defaults" else verdict(default, spec, judges)] for name, spec in variants.items()]
        rows += [[name, " ".join(f"{k}={pipeline.hydra_value(v)}" for k, v in VARIANTS[name].items()),
                  "", "", "", "", "", why] for name, why in data.get("skipped", {}).items()]
        budget = data["budget"]
        parts += ["", f"**{task}** ({judges} set, model `{data['model']}`, {data.get('reps', 1)} rep(s)): "
                  f"{budget['max_train_samples']} training examples, accuracy on "
                  f"{data['eval_examples'] or 'all'} {'test' if task == 'sentiment' else 'validation'} examples.", "",
                  table(["variant", "train overrides", "samples/s (median)", "runs", "real tokens/s", "padding",
                         "accuracy %", "verdict for the default"], rows)]
    return "\n".join([*parts, "", commands_block(result.get("commands", []))])
