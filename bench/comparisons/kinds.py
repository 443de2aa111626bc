"""Comparison 9: sentence pairs, regression and multi-label: our stages against the stock recipe.

For each preset (`task=mrpc` sentence pairs, `task=stsb` regression on pairs, `task=goemotions`
multi-label) at the preset's own budget (model, data, epochs, learning rate, batch), one run a side
per seed: our train + evaluate stages as shipped, and bench/baselines/stock_trainer.py (the stock
Trainer recipe of `run_glue.py` / `run_classification.py`, scored by the same metric functions).
Then what the options change on our side, on the same seeds:
- GoEmotions decision thresholds: 0.5 fixed, one global threshold tuned on dev (the preset), one
  per label tuned on dev; the evaluate stage re-run on the same trained model, scored on test.
- class weights on MRPC (single-label, 68 % positives) and GoEmotions (positive weights per label):
  the option toggled against the preset (on where the preset has none, off where it has them), a
  separate training run each.
`BENCH_KINDS_SETS=goemotions` re-runs only the named sets and keeps the others' saved results.

Check: for each set, our mean primary metric is not below the stock recipe's by more than the
seed spread measured here (the larger of the two sides' max - min over seeds).
"""

from __future__ import annotations

import json
import os
from statistics import fmean
from typing import Any

import pipeline
from common import (
    BENCH,
    PYTHON,
    WORK,
    Context,
    commands_block,
    fmt,
    load_result,
    provenance,
    provenance_text,
    read_json,
    table,
    verdict,
)

NAME = "kinds"
TITLE = "9. Sentence pairs, regression, multi-label: our stages vs the stock Trainer recipe"
SEEDS = (42, 43)
# primary metric first; the others are reported beside it
SETS = {
    "mrpc": {"metrics": ("accuracy", "per_class.equivalent.f1"), "context": "MiniLM-L12-H384: 89.5 (GLUE dev)"},
    "stsb": {"metrics": ("pearson", "spearman"), "context": "BERT-base: 85-89 Pearson/Spearman (dev)"},
    "goemotions": {"metrics": ("macro_f1", "micro_f1"),
                   "context": "BERT-base: macro F1 0.46 (test, threshold 0.3)"},
}
THRESHOLDS = ("none", "global", "per_label")
WEIGHTED = ("mrpc", "goemotions")
QUICK_DATA = {"max_train_samples": 256, "max_eval_samples": 128}


def metric(metrics: dict[str, Any], dotted: str) -> float:
    value: Any = metrics
    for part in dotted.split("."):
        value = value[part]
    return float(value)


PLOT = "kinds.png"
LABELS = {"stock": "stock recipe", "ours": "ours (preset)", "weighted": "ours, balanced\nclass weights",
          "unweighted": "ours, no\nclass weights",
          "threshold-none": "ours, threshold\n0.5", "threshold-global": "ours, global\nthreshold",
          "threshold-per_label": "ours, threshold\nper label"}


def run(ctx: Context) -> dict[str, Any]:
    """Every set, or those named in $BENCH_KINDS_SETS (comma-separated; the saved others are kept)."""
    chosen = [t for t in os.environ.get("BENCH_KINDS_SETS", "").split(",") if t] or list(SETS)
    saved = (load_result(ctx.results_dir, NAME) or {}) if len(chosen) < len(SETS) else {}
    sets = {task: run_set(ctx, task) if task in chosen else saved["sets"][task] for task in SETS}
    commands = [c for c in saved.get("commands", []) if not any(f"task={t} " in c or f"/{t}/" in c for t in chosen)]
    result = {"sets": sets, "seeds": list(SEEDS), "commands": commands + list(ctx.commands)}
    plot(result, ctx.results_dir / PLOT)
    return result


def plot(result: dict[str, Any], path) -> None:  # noqa: ANN001
    """Per set, the primary metric of each side and option (bar: mean, dots: the seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = result["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4.2))
    for ax, (task, s) in zip(axes, sets.items(), strict=True):
        primary = s["metrics"][0]
        variants = [v for v in ("stock", "ours", "weighted", "unweighted", "threshold-none", "threshold-per_label")
                    if v in s["runs"]]
        for i, variant in enumerate(variants):
            values = [100 * r[primary] for r in s["runs"][variant].values()]
            ax.bar(i, fmean(values), color="tab:gray" if variant == "stock" else "tab:blue")
            ax.plot([i] * len(values), values, "k.")
        weighted_stock = s.get("stock_pos_weight") == "balanced"
        names = [LABELS[v] + ("\n+ the preset's\npositive weights" if v == "stock" and weighted_stock else "")
                 for v in variants]
        ax.set_xticks(range(len(variants)), names, fontsize=8)
        low = min(100 * r[primary] for v in variants for r in s["runs"][v].values())
        ax.set_ylim(max(0, low - 10), None)
        ax.set_title(f"{task}: {primary} ×100 ({s['eval_split']})")
    fig.suptitle("Our stages against the stock Trainer recipe, same budget (bar: mean over seeds, dots: seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_set(ctx: Context, task: str) -> dict[str, Any]:
    names = SETS[task]["metrics"]
    data = pipeline.data_overrides(task, **(QUICK_DATA if ctx.quick else {}))
    train = pipeline.train_overrides(ctx, **({"num_train_epochs": 1} if ctx.quick else {}))
    cfg = pipeline.compose(data + train)
    root = WORK / NAME / task
    print(f"[{NAME}] {task}: preparing data", flush=True)
    tokenized = pipeline.prepare(ctx, data)
    labels = json.loads((tokenized / "codec.json").read_text())["labels"]
    split = cfg.data.eval_split
    files = pipeline.export_examples(tokenized, root / "examples", {"train": "train", "eval": split})
    t = cfg.train
    stock_cmd = [PYTHON, BENCH / "baselines" / "stock_trainer.py", "--train", files["train"], "--eval", files["eval"],
                 "--model", pipeline.model_path("minilm"), "--max-length", cfg.data.max_length,
                 "--epochs", t.num_train_epochs, "--lr", t.learning_rate, "--batch-size", t.per_device_train_batch_size,
                 "--eval-batch-size", t.per_device_eval_batch_size, "--weight-decay", t.weight_decay,
                 "--warmup", t.warmup_steps, "--problem-type", cfg.task.problem_type, "--num-labels", len(labels),
                 "--metrics-labels", ",".join(labels), "--output-dir", root / "stock-out"]
    # A stock recipe that predicts nothing is no baseline: where the preset weights positives (multi-label
    # at this budget learns nothing without them), the stock side gets the same weights.
    stock_weighted = cfg.task.problem_type == "multi_label_classification" and t.get("class_weights") == "balanced"
    if stock_weighted:
        stock_cmd += ["--pos-weight", "balanced"]
    runs: dict[str, dict[int, dict[str, Any]]] = {"stock": {}, "ours": {}}
    for seed in SEEDS:
        print(f"[{NAME}] {task}: seed {seed}, stock recipe", flush=True)
        meter = root / f"stock-{seed}.meter.json"
        ctx.run([*stock_cmd, "--seed", seed], cwd=root, log=root / f"stock-{seed}.log",
                env=ctx.env(BENCH_METER_OUT=str(meter)))
        stock = read_json(meter)
        runs["stock"][seed] = {"train_seconds": stock["train_seconds"], "bf16": stock["bf16"],
                               **{n: metric(stock["metrics"], n) for n in names}}
        seeded = train + [f"train.seed={seed}", f"train.data_seed={seed}"]
        # the class-weights option toggled against the preset: on where the preset has it off, and off where on
        toggled = ("unweighted", ["train.class_weights=null"]) if t.get("class_weights") else \
            ("weighted", ["train.class_weights=balanced"])
        for variant, extra in [("ours", [])] + ([toggled] if task in WEIGHTED else []):
            print(f"[{NAME}] {task}: seed {seed}, {variant}", flush=True)
            workdir = root / f"{variant}-{seed}"
            trained = pipeline.train(ctx, workdir, data, seeded + extra, tag=variant)
            evaluated = pipeline.evaluate(ctx, workdir, data, seeded + extra, tag=variant)
            runs.setdefault(variant, {})[seed] = {"train_seconds": trained["train_seconds"], "bf16": trained["bf16"],
                                                  **{n: metric(evaluated, n) for n in names},
                                                  "tuned": evaluated.get("tuned")}
            if task == "goemotions" and variant == "ours":
                for tuning in THRESHOLDS:
                    scored = pipeline.evaluate(ctx, workdir, data, seeded + [f"task.tune_threshold={tuning}"],
                                               tag=f"threshold-{tuning}")
                    runs.setdefault(f"threshold-{tuning}", {})[seed] = {n: metric(scored, n) for n in names}
    result = {"task": task, "metrics": list(names), "eval_split": split, "labels": len(labels),
              "problem_type": cfg.task.problem_type, "epochs": float(t.num_train_epochs),
              "learning_rate": float(t.learning_rate), "batch_size": int(t.per_device_train_batch_size),
              "train_examples": len(files["train"].read_text().splitlines()), "context": SETS[task]["context"],
              "runs": runs, "stock_pos_weight": "balanced" if stock_weighted else "none", "measured": provenance()}
    primary = names[0]
    means = {side: fmean(r[primary] for r in runs[side].values()) for side in ("stock", "ours")}
    spread = max(max(r[primary] for r in runs[s].values()) - min(r[primary] for r in runs[s].values())
                 for s in ("stock", "ours"))
    result |= {"mean": means, "spread": spread, "passed": means["ours"] >= means["stock"] - spread}
    return result


def _mean(runs: dict[Any, dict[str, Any]], key: str) -> float:
    return fmean(r[key] for r in runs.values())


def _cell(runs: dict[Any, dict[str, Any]], key: str, scale: float) -> str:
    values = [scale * r[key] for r in runs.values()]
    return f"{fmean(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def checks(kinds: dict[str, Any]) -> list[list[Any]]:
    """This comparison's targets: [target, measured, pass/fail, the set's provenance] rows for the checks."""
    rows: list[list[Any]] = []
    for task, s in kinds["sets"].items():
        rows.append([f"{task}: ours not below the stock recipe beyond the seed spread ({s['metrics'][0]})",
                     f"Δ {100 * (s['mean']['ours'] - s['mean']['stock']):+.2f} (spread {100 * s['spread']:.2f})",
                     verdict(s["passed"]), s.get("measured")])
    return rows


def render(result: dict[str, Any]) -> str:
    rows, options = [], []
    for task, s in result["sets"].items():
        primary, second = s["metrics"]
        stock = "stock recipe (stock_trainer.py)" + (
            ", the preset's positive weights" if s.get("stock_pos_weight") == "balanced" else "")
        for side, label in (("stock", stock), ("ours", "our stages (preset)")):
            runs = s["runs"][side]
            rows.append([task, label, _cell(runs, primary, 100), _cell(runs, second, 100),
                         fmt(_mean(runs, "train_seconds")), "bf16" if next(iter(runs.values()))["bf16"] else "fp32"])
        rows.append([task, f"**Δ ours - stock** (spread {100 * s['spread']:.2f})",
                     f"**{100 * (s['mean']['ours'] - s['mean']['stock']):+.2f}**", "", "",
                     "pass" if s["passed"] else "**FAIL**"])
        base = s["runs"]["ours"]
        for variant, runs in s["runs"].items():
            if variant in ("stock", "ours"):
                continue
            if variant in ("weighted", "unweighted"):  # Δ: weights on minus weights off
                on, off = (runs, base) if variant == "weighted" else (base, runs)
                what, delta = f"class_weights={'balanced' if variant == 'weighted' else 'null'}", \
                    _mean(on, primary) - _mean(off, primary)
            else:
                what, delta = f"tune_threshold={variant[10:]}", \
                    _mean(runs, primary) - _mean(s["runs"]["threshold-none"], primary)
            options.append([task, what, _cell(runs, primary, 100), _cell(runs, second, 100), f"{100 * delta:+.2f}"])
    seeds = ", ".join(map(str, result["seeds"]))
    contexts = "; ".join(f"{task}: {s['context']}" for task, s in result["sets"].items())
    stamps = [f"- **{task}**: measured on {provenance_text(s.get('measured'))}." for task, s in result["sets"].items()]
    return "\n".join([
        f"![our stages against the stock recipe](bench/results/{PLOT})",
        "",
        *stamps,
        "",
        f"Each cell: the mean over seeds {seeds} (each seed's value in brackets), ×100. Train time: the "
        "training epochs alone (evaluation excluded), mean over seeds. The stock recipe keeps its last "
        "epoch's model, fp32, random batches, threshold 0.5; ours is the preset as shipped (best epoch "
        "on dev, `bf16: auto`, length-grouped batches, GoEmotions' threshold tuned on dev). Where the preset "
        "weights positives (GoEmotions), the stock recipe gets the same BCE positive weights "
        "(`stock_trainer.py --pos-weight balanced`): with plain BCE it predicts no label at this budget and "
        "scores about zero, which no comparison should pass against.",
        "",
        table(["set", "side", "primary metric", "second metric", "train s", "precision"], rows),
        "",
        "What the options change (our stages, same seeds). Thresholds: Δ against the same model at 0.5. "
        "Class weights: the option toggled against the preset, a separate training run; Δ = weights on − off:",
        "",
        table(["set", "option", "primary metric", "second metric", "Δ primary"], options),
        "",
        "Metrics: mrpc accuracy / F1 of `equivalent` (GLUE's F1); stsb Pearson / Spearman; goemotions "
        f"macro / micro F1 on test. Published, for context only: {contexts}.",
        "",
        commands_block(result.get("commands", [])),
    ])
