"""Fast-path ablations: our train stage with one default of conf/train/default.yaml flipped at a time.

A default stays only if it is faster at equal quality. Short IMDB budget (1 epoch, no per-epoch
validation), accuracy from our evaluate stage on 500 test reviews; speed = median over reps of
the training loop (bench/measure.py), variants interleaved rep by rep so machine drift hits all
alike. Plus the quality check of bf16 against fp32 on the sarcasm headlines.
"""

from __future__ import annotations

from typing import Any

import pipeline
from common import WORK, Context, commands_block, fmt, median, table

NAME = "ablation"
TITLE = "6. Fast-path ablations (one switch flipped at a time)"
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "max_batch_tokens 2048 → null": {"max_batch_tokens": None},
    "bf16 auto → true": {"bf16": True},  # auto = fp32 on a CPU without AMX; forced bf16 shows why
    "group_by_length → random sampler": {"train_sampling_strategy": "random"},
    "pad_to_multiple_of 8 → null": {"pad_to_multiple_of": None},
}
SHORT = {"num_train_epochs": 1, "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False}
# task -> (data budget full, data budget quick (None: not in --quick), variants run on it)
SETS = {
    "sentiment": ({"max_train_samples": 192, "max_eval_samples": 500, "max_length": 256},
                  {"max_train_samples": 32, "max_eval_samples": 64, "max_length": 256}, list(VARIANTS)),
    "sarcasm": ({"max_train_samples": 2000, "max_eval_samples": None, "max_length": 64},
                None, ["defaults", "bf16 auto → true"]),  # quick: skipped
}
THRESHOLD = 0.03  # speed differences under 3% are called a tie


def run(ctx: Context) -> dict[str, Any]:
    reps = 1 if ctx.quick else 2
    out: dict[str, Any] = {"reps": reps, "sets": {}}
    for task, (full, quick, names) in SETS.items():
        if ctx.quick and quick is None:
            continue
        model = "tiny" if ctx.quick else "minilm"  # quick proves the path; tiny keeps it short
        data = pipeline.data_overrides(task, model, **(quick if ctx.quick else full))
        pipeline.prepare(ctx, data)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        accuracy: dict[str, float] = {}
        for rep in range(reps):
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
        budget = quick if ctx.quick else full
        out["sets"][task] = {"model": model, "budget": budget, "eval_examples": budget["max_eval_samples"],
                             "variants": rows}
    out["commands"] = list(ctx.commands)
    return out


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def verdict(default: dict[str, Any], flipped: dict[str, Any]) -> str:
    """Is the default faster than the flipped switch, at equal quality (within 1 point)?"""
    speedup = default["samples_per_s"] / flipped["samples_per_s"] - 1
    delta = 100 * (default["accuracy"] - flipped["accuracy"])
    speed = "default faster" if speedup > THRESHOLD else "default slower" if speedup < -THRESHOLD else "tie"
    quality = "equal quality" if abs(delta) <= 1.0 else f"quality {'+' if delta > 0 else '−'}{abs(delta):.1f} pt"
    return f"{speed} ({speedup:+.0%}), {quality}"


def render(result: dict[str, Any]) -> str:
    short = " ".join(f"train.{k}={pipeline.hydra_value(v)}" for k, v in SHORT.items())
    parts = [f"Budget: 1 epoch, no per-epoch validation (`{short}`); "
             f"speed = median of {result['reps']} runs of the training loop; accuracy from our evaluate stage "
             f"(first run). Verdict: speed differences under {THRESHOLD:.0%} are a tie; quality equal within 1 point."]
    for task, data in result["sets"].items():
        variants = data["variants"]
        default = variants["defaults"]
        rows = [[name, " ".join(f"{k}={pipeline.hydra_value(v)}" for k, v in spec["overrides"].items())
                 or "(conf/train/default.yaml)",
                 fmt(spec["samples_per_s"], 2), fmt(spec["real_tokens_per_s"], 0),
                 f"{100 * spec['padding_fraction']:.0f}%", f"{100 * spec['accuracy']:.2f}",
                 "" if name == "defaults" else verdict(default, spec)] for name, spec in variants.items()]
        budget = data["budget"]
        parts += ["", f"**{task}** (model `{data['model']}`): {budget['max_train_samples']} training examples, "
                  f"accuracy on "
                  f"{data['eval_examples'] or 'all'} {'test' if task == 'sentiment' else 'validation'} examples.", "",
                  table(["variant", "train overrides", "samples/s", "real tokens/s", "padding", "accuracy %",
                         "verdict for the default"], rows)]
    return "\n".join([*parts, "", commands_block(result.get("commands", []))])
