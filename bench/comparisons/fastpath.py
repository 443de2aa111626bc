"""Comparison 13: the measured fast path per machine kind — matmul ceilings, our training step by
precision and compilation, what `auto` chooses, and `auto` against plain fp32 in the train stage.

Per machine (results are kept per machine kind, each measured side by side in one run):
- the fp32 and bf16 matmul rates (probes/matmul.py, 2048², the ceiling);
- our training step (probes/step_rates.py: MiniLM, 8 x ~256-token IMDB-shaped micro-batches) in fp32,
  bf16 as the stage trains it (fused attention kept in fp32), bf16 throughout, and both compiled:
  real tokens/s and training GFLOP/s as a fraction of the fp32 ceiling;
- what `bf16: auto` / `compile: auto` choose for the default IMDB budget, and the seconds spent choosing;
- the train stage on the sarcasm headlines with the defaults (`auto`) against `bf16=false compile=false`,
  alternating, same seed: the first `auto` run with an empty cache (it measures), the others cached;
  `auto`, measuring or cached, must not be slower than fp32 by more than fp32's own spread, at equal
  accuracy.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from common import (
    PROBES,
    PYTHON,
    REPO,
    WORK,
    Context,
    commands_block,
    fmt,
    load_result,
    machine_info,
    median,
    provenance,
    read_json,
    table,
    verdict,
)
from pipeline import data_overrides, pair_name, paths, prepare

from finetune.pipeline.stage_table import SCRIPTS

NAME = "fastpath"
TITLE = "13. The measured fast path: precision and compilation per machine"
REPS = 3
DATA = {"max_train_samples": 4000, "max_eval_samples": 1000}
SIDES = {"auto": [], "fp32": ["train.bf16=false", "train.compile=false"]}
AMX_TARGET = 1.0  # training GFLOP/s (real tokens) as a fraction of the fp32 matmul ceiling, AMX machines


def run(ctx: Context) -> dict[str, Any]:
    info = machine_info(ctx.threads)
    mm_log = WORK / NAME / "matmul.log"
    ctx.run([PYTHON, PROBES / "matmul.py", "--size", 2048, "--reps", 5 if ctx.quick else 20], log=mm_log)
    matmul = json.loads(mm_log.read_text().strip().splitlines()[-1])
    step_log = WORK / NAME / "step_rates.log"
    print(f"[{NAME}] training step by precision and compilation", flush=True)
    ctx.run([PYTHON, PROBES / "step_rates.py", *(["--quick"] if ctx.quick else [])], log=step_log)
    steps = json.loads(step_log.read_text().strip().splitlines()[-1])
    stage = stage_runs(ctx)
    stamp = provenance()
    here = {"kind": stamp["machine"], "flags": info["flags"], "threads": ctx.threads, "matmul": matmul,
            "steps": steps, "stage": stage, "measured": stamp}
    previous = load_result(ctx.results_dir, NAME) or {}
    machines = previous.get("machines", {}) | {here["kind"]: here}
    return {"machines": machines, "commands": list(ctx.commands)}


def stage_runs(ctx: Context) -> dict[str, Any]:
    model = "tiny" if ctx.quick else "minilm"
    data = data_overrides("sarcasm", model, **({"max_train_samples": 200, "max_eval_samples": 100} if ctx.quick
                                               else DATA))
    prepare(ctx, data)
    cache = WORK / NAME / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for rep in range(2 if ctx.quick else REPS):
        for side, overrides in SIDES.items():
            runs[side].append(train(ctx, f"{side}-{rep}", data, overrides, cache))
    wall = {side: [r["process_wall_s"] for r in rs] for side, rs in runs.items()}
    spread = (max(wall["fp32"]) - min(wall["fp32"])) / median(wall["fp32"])
    cached_auto, bound = median(wall["auto"][1:]), median(wall["fp32"]) * (1 + spread)
    accuracy = {side: runs[side][0]["best_metric"] for side in SIDES}
    return {"data": data, "runs": runs, "noise": spread, "median_wall_s": {"fp32": median(wall["fp32"]),
                                                                          "auto (cached)": cached_auto},
            "first_auto_wall_s": wall["auto"][0], "accuracy": accuracy,
            "passed": max(cached_auto, wall["auto"][0]) <= bound and abs(accuracy["auto"] - accuracy["fp32"]) <= 0.01}


def train(ctx: Context, tag: str, data: list[str], overrides: list[str], cache: Any) -> dict[str, Any]:
    """One train stage run (1 epoch, validation accuracy); its summary and the process's wall time."""
    task, model = pair_name(data)
    workdir = WORK / NAME / tag
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    print(f"[{NAME}] train stage, {tag}", flush=True)
    wall = ctx.run([PYTHON, REPO / "stages" / SCRIPTS["train"], *data, *paths(data), "tracking=none",
                    "train.num_train_epochs=1", "train.disable_tqdm=true", f"train.torch_threads={ctx.threads}",
                    *overrides], cwd=workdir, log=workdir / "train.log", env=ctx.env(FINETUNE_CACHE=str(cache)))
    summary = read_json(workdir / "models" / f"{task}-{model}" / "train_summary.json")
    keep = ("best_metric", "train_runtime", "bf16", "compile", "bf16_choice", "compile_choice")
    return {"process_wall_s": wall, **{key: summary.get(key) for key in keep}}


def checks(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for kind, m in result["machines"].items():
        stage = m["stage"]
        rows.append([f"{kind}: `auto` not slower than fp32 beyond the noise, equal accuracy (train stage)",
                     f"first (measuring) {stage['first_auto_wall_s']:.1f} s, cached "
                     f"{stage['median_wall_s']['auto (cached)']:.1f} s vs fp32 {stage['median_wall_s']['fp32']:.1f} s "
                     f"(noise {100 * stage['noise']:.0f}%), accuracy {stage['accuracy']['auto']:.4f} vs "
                     f"{stage['accuracy']['fp32']:.4f}", verdict(stage["passed"]), m.get("measured")])
        if m["flags"].get("amx_bf16"):
            best = max(m["steps"]["sides"].values(), key=lambda s: s["gflops"])
            fraction = best["gflops"] / m["matmul"]["fp32"]["median_gflops"]
            rows.append([f"{kind}: training GFLOP/s (real tokens) ≥ {AMX_TARGET:g}× the fp32 matmul ceiling",
                         f"{fraction:.2f}×", verdict(fraction >= AMX_TARGET), m.get("measured")])
    return rows


def render(result: dict[str, Any]) -> str:
    parts = []
    for kind, m in result["machines"].items():
        ceiling = m["matmul"]["fp32"]["median_gflops"]
        steps, auto = m["steps"], m["steps"]["auto"]
        rows = [[name, fmt(s["step_ms"]), fmt(s["tokens_per_s"]), fmt(s["gflops"]), f"{s['gflops'] / ceiling:.2f}×",
                 fmt(s["compile_s"]) if s.get("compile_s") is not None else ""]
                for name, s in steps["sides"].items()]
        stage = m["stage"]
        stage_rows = [[f"{side} run {i + 1}" + (" (empty cache: measures)" if side == "auto" and i == 0 else ""),
                       fmt(r["process_wall_s"]), fmt(r["train_runtime"]), f"{r['best_metric']:.4f}",
                       "bf16" if r["bf16"] else "fp32", "yes" if r["compile"] else "no"]
                      for side, rs in stage["runs"].items() for i, r in enumerate(rs)]
        bf16_rate = m["matmul"]["bf16"]["median_gflops"]
        parts += [f"### {kind}, {m['threads']} threads", "",
                  f"Matmul 2048²: fp32 **{fmt(ceiling)}** GFLOP/s, bf16 **{fmt(bf16_rate)}** GFLOP/s "
                  f"({bf16_rate / ceiling:.2f}× fp32).", "",
                  f"Training step, {steps['model']}, micro-batches {steps['batches']} (noise of the fp32 rounds "
                  f"{100 * steps['noise']:.0f}%):", "",
                  table(["step", "ms per micro-batch", "real tokens/s", "training GFLOP/s", "of fp32 ceiling",
                         "compile s (caches warm)"], rows), "",
                  f"`auto` for the default IMDB run ({auto['steps']} micro-batch steps): **bf16 "
                  f"{'on' if auto['bf16'] else 'off'}** ({auto['bf16_reason']}); **compile "
                  f"{'on' if auto['compile'] else 'off'}** ({auto['compile_reason']}"
                  + (f"; compiling with empty caches: {fmt(auto['compile_cost_s'])} s" if auto.get("compile_cost_s")
                     else "") + f"); choosing took {auto['calibration_s']:.0f} s, once per "
                  "machine, model and shape (compilation: once per machine, model and precision).", "",
                  f"Train stage, sarcasm headlines ({', '.join(stage['data'][2:])}, 1 epoch), alternating: "
                  f"median wall fp32 {stage['median_wall_s']['fp32']:.1f} s, auto (cached) "
                  f"{stage['median_wall_s']['auto (cached)']:.1f} s; first auto run (measuring) "
                  f"{stage['first_auto_wall_s']:.1f} s.", "",
                  table(["run", "process wall s", "train s", "validation accuracy", "precision", "compiled"],
                        stage_rows), ""]
    return "\n".join([*parts, commands_block(result.get("commands", []))])
