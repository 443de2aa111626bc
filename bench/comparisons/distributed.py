"""Comparison 12: training across 2 processes (torchrun, gloo, the Trainer's DDP) vs one process.

Sarcasm headlines at a small budget (`tiny`: 4000 headlines x 3 epochs, `minilm`: 2000 x 1), each
seed run both ways, interleaved:
- single: 1 process x 2 torch threads, batches of 32;
- ddp: `torchrun --nproc_per_node=2`, 2 processes x 1 thread, 16 rows per process (the same
  global batch of 32, so the same number of optimizer steps and learning-rate schedule).

The two are not bitwise equal and should not be: each process length-groups its own batches of
16, so a step's 32 rows differ from the single process's, and the gradients are summed in another
order. That is a change of data order, the kind a change of seed makes, so the tolerance is the
seed-to-seed spread measured here: the mean validation accuracy of the DDP runs must be within the
spread (max - min) of the single-process runs' (or within one example of it when they all agree).
"""

from __future__ import annotations

import shutil
from typing import Any

from common import PYTHON, REPO, WORK, Context, commands_block, median, read_json, table, verdict
from pipeline import data_overrides, hydra_value, pair_name, paths, prepare

from finetune.pipeline.stage_table import SCRIPTS

NAME = "distributed"
TITLE = "12. Training across processes: 2 DDP processes (torchrun, gloo) vs one process"
SEEDS = (42, 43, 44)
# tiny learns slowly from random weights: at 1 epoch some seeds stay at the majority class.
MODELS = {"tiny": {"max_train_samples": 4000, "learning_rate": 3e-3, "epochs": 3},
          "minilm": {"max_train_samples": 2000, "learning_rate": 1e-4, "epochs": 1}}
EVAL_SAMPLES = 1000
BATCH = 32
SIDES = ("single", "ddp")


def run(ctx: Context) -> dict[str, Any]:
    seeds = SEEDS[:2] if ctx.quick else SEEDS
    result: dict[str, Any] = {"seeds": list(seeds), "eval_samples": EVAL_SAMPLES, "batch": BATCH, "models": {}}
    for model, budget in MODELS.items():
        train_samples = 200 if ctx.quick else budget["max_train_samples"]
        data = data_overrides("sarcasm", model, max_train_samples=train_samples,
                              max_eval_samples=100 if ctx.quick else EVAL_SAMPLES)
        prepare(ctx, data)
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for seed in seeds:
            for side in SIDES:
                runs[side].append(train(ctx, side, data, seed, budget["learning_rate"], budget["epochs"]))
        accuracy = {side: [r["best_metric"] for r in runs[side]] for side in SIDES}
        mean = {side: sum(values) / len(values) for side, values in accuracy.items()}
        spread = max(accuracy["single"]) - min(accuracy["single"])
        tolerance = max(spread, 1 / (100 if ctx.quick else EVAL_SAMPLES))
        runtime = {side: median(r["train_runtime"] for r in runs[side]) for side in SIDES}
        result["models"][model] = {
            "train_samples": train_samples, "learning_rate": budget["learning_rate"], "epochs": budget["epochs"],
            "runs": runs,
            "mean_accuracy": mean, "seed_spread": spread, "tolerance": tolerance,
            "median_train_runtime_s": runtime, "time_ratio": runtime["ddp"] / runtime["single"],
            "passed": abs(mean["ddp"] - mean["single"]) <= tolerance
            and all(r["processes"] == 2 for r in runs["ddp"])}
    result["passed"] = all(m["passed"] for m in result["models"].values())
    result["commands"] = list(ctx.commands)
    return result


def train(ctx: Context, side: str, data: list[str], seed: int, learning_rate: float, epochs: int) -> dict[str, Any]:
    """One train stage run; its train_summary.json plus the process's wall time."""
    task, model = pair_name(data)
    workdir = WORK / NAME / f"{model}-{side}-{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    processes = 2 if side == "ddp" else 1
    threads = 1 if side == "ddp" else ctx.threads
    overrides = [*data, *paths(data), "tracking=none", f"train.num_train_epochs={epochs}", "train.disable_tqdm=true",
                 f"train.seed={seed}", f"train.data_seed={seed}", f"train.learning_rate={hydra_value(learning_rate)}",
                 f"train.per_device_train_batch_size={BATCH // processes}", f"train.torch_threads={threads}"]
    stage = REPO / "stages" / SCRIPTS["train"]
    launcher = [PYTHON, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [PYTHON]
    workdir.mkdir(parents=True)
    print(f"[{NAME}] {model} {side} seed {seed}", flush=True)
    wall = ctx.run([*launcher, stage, *overrides], cwd=workdir, log=workdir / "train.log",
                   env=ctx.env(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)))
    summary = read_json(workdir / "models" / f"{task}-{model}" / "train_summary.json")
    return {"seed": seed, "process_wall_s": wall, **{key: summary[key] for key in (
        "best_metric", "train_loss", "train_runtime", "train_samples_per_second", "global_step", "processes", "bf16")}}


def checks(dist: dict[str, Any]) -> list[list[str]]:
    """This comparison's targets: [target, measured, pass/fail] rows for BENCHMARKS.md's checks."""
    rows: list[list[str]] = []
    worst = max(dist["models"].items(), key=lambda item: abs(item[1]["mean_accuracy"]["ddp"]
                                                             - item[1]["mean_accuracy"]["single"]))
    rows.append(["2 DDP processes: mean accuracy within the seed spread of one process (tiny, minilm)",
                 f"largest Δ {worst[1]['mean_accuracy']['ddp'] - worst[1]['mean_accuracy']['single']:+.4f} "
                 f"({worst[0]}, spread {worst[1]['seed_spread']:.4f})", verdict(dist["passed"])])
    return rows


def render(result: dict[str, Any]) -> str:
    rows = []
    for model, r in result["models"].items():
        for side in SIDES:
            runs = r["runs"][side]
            rows.append([
                model, "1 × 2 threads, batch 32" if side == "single" else "2 × 1 thread, 16 + 16",
                ", ".join(f"{x['best_metric']:.4f}" for x in runs), f"**{r['mean_accuracy'][side]:.4f}**",
                ", ".join(f"{x['train_loss']:.4f}" for x in runs), str(runs[0]["global_step"]),
                f"{r['median_train_runtime_s'][side]:.1f}",
                f"{median(x['process_wall_s'] for x in runs):.1f}"])
    verdicts = [f"- `{model}`: Δ mean accuracy (ddp − single) "
                f"{r['mean_accuracy']['ddp'] - r['mean_accuracy']['single']:+.4f}, "
                f"tolerance {r['tolerance']:.4f} (the single runs' seed spread) — "
                f"{'within' if r['passed'] else '**outside**'}; training time ratio ddp / single "
                f"**{r['time_ratio']:.2f}**" for model, r in result["models"].items()]
    first = next(iter(result["models"].values()))
    budgets = "; ".join(f"`{model}` {r['train_samples']} training headlines × {r.get('epochs', 1)} epoch(s) at "
                        f"learning rate {r['learning_rate']:g}" for model, r in result["models"].items())
    return "\n".join([
        f"Sarcasm headlines, validation accuracy on {result['eval_samples']} headlines (the Trainer's "
        f"evaluation of the best checkpoint), seeds {', '.join(map(str, result['seeds']))}, each seed both ways, "
        f"interleaved; {budgets}; bf16: {first['runs']['single'][0]['bf16']} (`auto`):", "",
        table(["model", "processes", "validation accuracy per seed", "mean", "train loss per seed", "steps",
               "training s (median)", "process wall s (median)"], rows), "",
        *verdicts, "",
        "Training time is the Trainer's `train_runtime` (all epochs and evaluations); the process wall adds "
        "start-up (torchrun's rendezvous and one Python per process).", "",
        commands_block(result.get("commands", []))])
