"""LoRA adapters against full fine-tuning at the presets' budgets (same data, epochs, batches).

    python bench/probes/adapters.py                      # sentiment, ner, qa; MiniLM
    python bench/probes/adapters.py --tasks sentiment --lora-lr 1e-3

For each task: the preset (full fine-tuning, its own learning rate) and `train.peft=lora` (rank 8
on query and value, the head in full, `--lora-lr`: adapters want a larger step than full
fine-tuning). Measured: the test metric with its 95% interval, the train stage's wall time and
the Trainer's train time, the train stage's peak resident memory (a fresh process), the
trainable parameters, and what the export holds (the merged model; the adapter alone).

Writes bench/results/adapters.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE.parent / "helpers"), str(REPO / "src")]
from common import provenance, provenance_text, table  # noqa: E402
from pipeline import run_stages  # noqa: E402

from finetune.adapters import ADAPTER, adapter_size_mb  # noqa: E402

WORK = REPO / "bench" / "work" / "adapters"
METRIC = {"sentiment": "accuracy", "ner": "f1", "qa": "f1"}


def measured_train(out: Path, overrides: list[str]) -> dict:
    """The train stage in a fresh process: wall seconds and peak resident memory."""
    with open(out.parent / f"{out.name}-train.log", "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "stages/train.py", *overrides, "tracking=none",
                                    f"paths.out={out}"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"train failed: see {log.name}")
    return {"stage_s": round(time.perf_counter() - start, 1), "peak_gb": round(usage.ru_maxrss / 2**20, 2)}


def one(task: str, mode: str, lora_lr: float) -> dict:
    out = WORK / f"{task}-{mode}"
    overrides = [f"task={task}", "model=minilm", "export.onnx=false"]
    if mode == "lora":
        overrides += ["train.peft=lora", f"train.learning_rate={lora_lr}"]
    run_stages(out, overrides, "download,tokenize", WORK / f"{task}-{mode}-data.log")
    train = measured_train(out, overrides)
    run_stages(out, overrides, "evaluate,export", WORK / f"{task}-{mode}-evaluate.log")
    pair = f"{task}-minilm"
    metrics = json.loads((out / "metrics" / f"{pair}.json").read_text())["test"]
    summary = json.loads((out / "models" / pair / "train_summary.json").read_text())
    export = out / "exports" / pair
    metric = METRIC[task]
    return {"metric": metric, "value": metrics[metric],
            "ci": [metrics.get(f"{metric}_ci_low"), metrics.get(f"{metric}_ci_high")],
            "train_s": round(summary["train_runtime"], 1), **train,
            "trainable": summary["trainable_parameters"],
            "model_mb": round((export / "model.safetensors").stat().st_size / 1e6, 1),
            "adapter_mb": adapter_size_mb(export) if (export / ADAPTER).is_dir() else None,
            "learning_rate": lora_lr if mode == "lora" else None, "measured": provenance()}


def render(result: dict) -> str:
    rows = []
    for task, modes in result["tasks"].items():
        for mode, r in modes.items():
            rows.append([task, mode, f"{r['metric']} {r['value']:.4f}", f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]",
                         f"{r['train_s']:.0f}", f"{r['stage_s']:.0f}", f"{r['peak_gb']:.2f}", f"{r['trainable']:,}",
                         f"{r['model_mb']:.1f}", f"{r['adapter_mb']:.2f}" if r["adapter_mb"] else "—"])
    measured = [r["measured"] for modes in result["tasks"].values() for r in modes.values()]
    machines = sorted({provenance_text(m).split(", commit")[0] for m in measured})
    commits = sorted({m["commit"] for m in measured})
    dates = sorted(m["date"] for m in measured)
    return "\n".join([
        "# LoRA adapters against full fine-tuning", "",
        f"{'; '.join(machines)}, commit {', '.join(commits)}, {dates[0]} to {dates[-1]}. "
        "Command: `python bench/probes/adapters.py`. Each task's preset budget (data, epochs, "
        f"batch); full = the preset's learning rate, lora = `train.peft=lora` (r 8, alpha 16, query and value; the "
        f"head in full) at learning rate {result['lora_lr']:g}. Train s: the Trainer's; stage s: the train stage's "
        "process wall (loading, bf16/compile decisions, saving included); peak: its resident maximum.", "",
        table(["task", "mode", "test metric", "95% interval", "train s", "stage s", "peak GB", "trainable params",
               "model MB", "adapter MB"], rows), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(METRIC))
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    saved = args.out / "adapters.json"
    result = json.loads(saved.read_text()) if saved.exists() else {"tasks": {}}
    result["lora_lr"] = args.lora_lr
    for task in args.tasks:
        for mode in ("full", "lora"):
            result["tasks"].setdefault(task, {})[mode] = one(task, mode, args.lora_lr)
            r = result["tasks"][task][mode]
            print(f"{task} {mode}: {r['metric']} {r['value']:.4f}, train {r['train_s']:.0f} s, peak {r['peak_gb']} GB",
                  flush=True)
            (args.out / "adapters.json").write_text(json.dumps(result, indent=1) + "\n")
            (args.out / "adapters.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
