"""Comparison 3: what the pipeline costs around the work.

- No-op `dvc repro`: a throwaway `git clone` of this repository at HEAD, params.yaml keeping the
  default matrix (so the DAG and dvc.lock are the ones users run) with tiny budgets and tracking
  off so it builds fast; one full build, then `dvc repro` with nothing to do, timed (process wall),
  median of NOOP_REPS (the machine's speed drifts by ±10% from minute to minute). Beside it, DVC's
  own floor on this machine: the same no-op in a throwaway repo whose stages (1, and as many as
  ours) each copy one small file.
- Stage start-up: each stage script in that clone under bench/probes/startup.py, timed from the
  parent's spawn to (1) the stage function's entry (Hydra config composed) and (2) its first
  input read (after the imports its work needs); the probe exits there. Median of reps.
- Our train stage vs the bare script (bench/baselines/bare_train.py) doing identical work
  (same tokenized data, model, TrainingArguments), whole process wall and training loop.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pipeline
from common import BENCH, PROBES, PYTHON, REPO, WORK, BenchError, Context, commands_block, fmt, median, table, verdict

from finetune.pipeline.stage_table import SCRIPTS

NAME = "overhead"
TITLE = "3. Pipeline overhead"
NOOP_REPS = 9
MODEL = "minilm"  # the default matrix's model
STAGE_ARGS = {kind: [script, *([] if kind == "download" else [f"model={MODEL}"])] for kind, script in SCRIPTS.items()}
REFERENCES = {"python -c pass": "pass", "import torch": "import torch",
              "from transformers import Trainer": "from transformers import Trainer"}
CLONE_PARAMS = """\
# bench/overhead.py: tiny budgets so that the throwaway clone builds fast.
matrix:
  task: [{tasks}]
  model: [{model}]
task: {{metric: null}}
data: {{max_train_samples: 64, max_eval_samples: 64}}
train: {{num_train_epochs: 1}}
export: {{onnx: null}}
tracking: {{enabled: false}}
"""
TASKS = {"full": "sentiment, sarcasm, ner, qa", "quick": "sarcasm"}  # full: the default DAG (21 stages)


def run(ctx: Context) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="finetune-bench-clone-"))
    try:
        clone = make_clone(tmp / "repo", TASKS["quick" if ctx.quick else "full"])
        dvc = noop_repro(ctx, clone)
        startup = startup_times(ctx, clone, task=TASKS["quick" if ctx.quick else "full"].split(",")[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"dvc": dvc, "startup": startup, "stage_vs_bare": stage_vs_bare(ctx), "commands": list(ctx.commands)}


def make_clone(clone: Path, tasks: str, commit: str = "HEAD") -> Path:
    """A clone of `commit` (committed code only) with tiny budgets in its params.yaml."""
    head = git(REPO, "rev-parse", commit)
    if commit == "HEAD" and git(REPO, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"):
        print(f"[{NAME}] note: uncommitted changes are not in the clone (it is HEAD {head[:8]})", flush=True)
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)], check=True)
    git(clone, "checkout", "--quiet", head)
    (clone / "params.yaml").write_text(CLONE_PARAMS.format(tasks=tasks, model=MODEL))
    return clone


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def noop_repro(ctx: Context, clone: Path) -> dict[str, Any]:
    env = ctx.env(PYTHONPATH=str(clone / "src"))
    logs = WORK / NAME / "dvc"
    print(f"[{NAME}] first dvc repro in a clone (model={MODEL}, tiny budgets)", flush=True)
    build = ctx.run(["dvc", "repro"], cwd=clone, env=env, log=logs / "build.log")
    times = []
    for rep in range(NOOP_REPS):
        log = logs / f"noop-{rep}.log"
        times.append(ctx.run(["dvc", "repro"], cwd=clone, env=env, log=log))
        if "Running stage" in log.read_text():
            raise BenchError(f"the second `dvc repro` was not a no-op: see {log}")
    version = median(ctx.run(["dvc", "--version"], cwd=clone, env=env, log=logs / "version.log")
                     for _ in range(NOOP_REPS))
    built = [line for line in (logs / "build.log").read_text().splitlines() if line.startswith("Running stage")]
    floor = {str(n): dvc_floor(ctx, n, clone.parent / f"floor-{n}") for n in sorted({1, len(built)})}
    return {"build_s": build, "noop_s": times, "noop_median_s": median(times), "reps": NOOP_REPS,
            "dvc_version_s": version, "tasks": TASKS["quick" if ctx.quick else "full"], "stages": len(built),
            "floor_median_s": floor}


def dvc_floor(ctx: Context, stages: int, repo: Path) -> float:
    """Median no-op `dvc repro` of a repo with `stages` trivial stages (`cp inN outN`), same DVC config."""
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet")
    lines = ["stages:"]
    for n in range(stages):
        (repo / f"in{n}").write_text(f"{n}\n")
        lines += [f"  copy{n}:", f"    cmd: cp in{n} out{n}", f"    deps: [in{n}]", f"    outs: [out{n}]"]
    (repo / "dvc.yaml").write_text("\n".join(lines) + "\n")
    subprocess.run(["dvc", "init", "--quiet"], cwd=repo, check=True)
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    logs = WORK / NAME / "dvc"
    ctx.run(["dvc", "repro"], cwd=repo, log=logs / f"floor-{stages}-build.log", record=False)
    return median(ctx.run(["dvc", "repro"], cwd=repo, log=logs / f"floor-{stages}-noop.log", record=False)
                  for _ in range(NOOP_REPS))


def startup_times(ctx: Context, clone: Path, task: str) -> dict[str, Any]:
    reps = 2 if ctx.quick else 3
    logs = WORK / NAME / "startup"
    stages = {}
    for stage, (script, *args) in STAGE_ARGS.items():
        runs = []
        for rep in range(reps):
            out = logs / f"{stage}-{rep}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            env = ctx.env(PYTHONPATH=str(clone / "src"), BENCH_PROBE_OUT=str(out), BENCH_T0=repr(time.time()))
            wall = ctx.run([PYTHON, PROBES / "startup.py", f"stages/{script}", f"task={task}", *args],
                           cwd=clone, env=env,
                           log=logs / f"{stage}-{rep}.log")
            runs.append(json.loads(out.read_text()) | {"wall": wall})
        stages[stage] = {"script": f"stages/{script}", "entry_s": median(r["entry"] for r in runs),
                         "first_input_s": median(r["first_input"] for r in runs), "runs": runs}
    references = {}
    for label, code in REFERENCES.items():
        walls = [ctx.run([PYTHON, "-c", code], log=logs / "reference.log") for _ in range(reps)]
        references[label] = median(walls)
    return {"stages": stages, "references": references, "reps": reps, "task": task}


def stage_vs_bare(ctx: Context) -> dict[str, Any]:
    from finetune.config_values import to_container
    from finetune.training import OWN_KEYS, pad_multiple, training_arguments

    reps = 1 if ctx.quick else 3
    samples = 32 if ctx.quick else 128
    data = pipeline.data_overrides("sentiment", "minilm", max_train_samples=samples, max_eval_samples=samples,
                                   max_length=256)
    train = pipeline.train_overrides(ctx, num_train_epochs=1)
    cfg = pipeline.compose(data + train)
    workdir = WORK / NAME / "stage_vs_bare"
    tokenized = pipeline.prepare(ctx, data)
    args_file = workdir / "training_args.json"
    workdir.mkdir(parents=True, exist_ok=True)
    # Identical work: the TrainingArguments our stage resolves (micro-batches, bf16), our model switches.
    resolved = training_arguments(cfg.train, workdir / "checkpoints", "accuracy", max_length=cfg.data.max_length)
    kwargs = {k: v for k, v in to_container(cfg.train).items() if k not in OWN_KEYS}
    kwargs |= {k: getattr(resolved, k) for k in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                                  "per_device_eval_batch_size", "bf16", "use_cpu")}
    args_file.write_text(json.dumps(kwargs, indent=2))
    pad, dropout = pad_multiple(cfg.train.pad_to_multiple_of), cfg.train.attention_dropout
    bare_cmd = [PYTHON, BENCH / "baselines" / "bare_train.py", "--features", tokenized / "features", "--model",
                pipeline.model_path("minilm"), "--args", args_file, "--output-dir", workdir / "bare-model",
                *(["--pad-to-multiple-of", pad] if pad else []),
                *(["--attention-dropout", dropout] if dropout is not None else [])]
    ours, bare = [], []
    for rep in range(reps):
        print(f"[{NAME}] train stage vs bare script: rep {rep + 1}/{reps}", flush=True)
        ours.append(pipeline.train(ctx, workdir, data, train, tag=f"stage-{rep}"))
        meter = workdir / f"bare-{rep}.meter.json"
        wall = ctx.run(bare_cmd, cwd=workdir, log=workdir / f"bare-{rep}.log",
                       env=ctx.env(BENCH_METER_OUT=str(meter)))
        bare.append(json.loads(meter.read_text()) | {"process_wall": wall})
    with contextlib.suppress(OSError):
        shutil.rmtree(workdir / "bare-model")

    def side(runs: list[dict[str, Any]]) -> dict[str, Any]:
        wall, loop = median(r["process_wall"] for r in runs), median(r["train_seconds"] for r in runs)
        return {"process_wall": wall, "train_seconds": loop, "outside_loop": wall - loop,
                "samples_per_s": median(r["samples_per_s"] for r in runs), "reps": len(runs)}

    return {"samples": samples, "stage": side(ours), "bare": side(bare)}


def checks(ov: dict[str, Any]) -> list[list[str]]:
    """This comparison's targets: [target, measured, pass/fail] rows for BENCHMARKS.md's checks."""
    rows: list[list[str]] = []
    floor = ov["dvc"].get("floor_median_s", {}).get(str(ov["dvc"]["stages"]))
    floor_note = f" (DVC alone, {ov['dvc']['stages']} trivial stages: {floor:.2f} s)" if floor else ""
    rows.append(["no-op `dvc repro` ≤ 1.5 s", f"{ov['dvc']['noop_median_s']:.2f} s{floor_note}",
                 verdict(ov["dvc"]["noop_median_s"] <= 1.5)])
    worst = max(ov["startup"]["stages"].values(), key=lambda s: s["first_input_s"])
    rows.append(["each stage's start-up ≤ 3 s (spawn → first input read, after its imports)",
                 f"max {worst['first_input_s']:.2f} s ({worst['script']})", verdict(worst["first_input_s"] <= 3)])
    return rows


def render(result: dict[str, Any]) -> str:
    dvc, startup, svb = result["dvc"], result["startup"], result["stage_vs_bare"]
    noop = table(["", "seconds"],
                 [[f"first `dvc repro` (whole DAG, model={MODEL}, tiny budgets; "
                   f"{dvc['stages']} stages run)", fmt(dvc["build_s"], 1)],
                  [f"no-op `dvc repro`, median of {dvc['reps']}", f"**{dvc['noop_median_s']:.2f}**"],
                  ["no-op runs", ", ".join(f"{t:.2f}" for t in dvc["noop_s"])],
                  *[[f"DVC's floor: no-op `dvc repro` of {n} trivial stage{'s' * (n != '1')} (`cp` one file), "
                     "median", fmt(seconds, 2)] for n, seconds in dvc.get("floor_median_s", {}).items()],
                  ["reference: `dvc --version` (the CLI's own start-up), median", fmt(dvc["dvc_version_s"], 2)]])
    rows = [[name, f"`{s['script']}`", f"**{s['entry_s']:.2f}**", f"{s['first_input_s']:.2f}"]
            for name, s in startup["stages"].items()]
    rows += [[f"reference: `{label}`", "(whole process)", "", f"{seconds:.2f}"]
             for label, seconds in startup["references"].items()]
    starts = table(["stage", "script", "to stage function (s)", "to first input read (s)"], rows)
    s, b = svb["stage"], svb["bare"]
    versus = table(["", "process wall s", "training loop s", "outside the loop s", "samples/s"],
                   [["`stages/train.py` (our stage)", fmt(s["process_wall"], 2), fmt(s["train_seconds"], 2),
                     fmt(s["outside_loop"], 2), fmt(s["samples_per_s"], 2)],
                    ["`bench/baselines/bare_train.py`", fmt(b["process_wall"], 2), fmt(b["train_seconds"], 2),
                     fmt(b["outside_loop"], 2), fmt(b["samples_per_s"], 2)],
                    ["difference (stage − bare)", fmt(s["process_wall"] - b["process_wall"], 2),
                     fmt(s["train_seconds"] - b["train_seconds"], 2), fmt(s["outside_loop"] - b["outside_loop"], 2),
                     ""]])
    return "\n".join([
        f"**No-op `dvc repro`** in a throwaway `git clone` of HEAD (params.yaml: tasks [{dvc['tasks']}], "
        f"`model: [{MODEL}]`, 64 examples, 1 epoch, tracking off), wall time of the `dvc repro` process:", "", noop,
        "", f"**Stage start-up** (task `{startup.get('task')}`, model `{MODEL}`, median of {startup['reps']}), "
        "measured by bench/probes/startup.py from the parent's "
        "spawn: *to stage function* = interpreter start, `finetune.config`, Hydra composition of conf/ + "
        "params.yaml + overrides, up to the first line of the stage function; *to first input read* = "
        "additionally whatever the stage function imports before it opens its first input (for train: torch "
        "and transformers). The references are whole `python -c` processes.", "", starts, "",
        f"**Our train stage vs the bare script**, identical work: MiniLM, {svb['samples']} IMDB reviews, "
        "1 epoch with our defaults (validation each epoch, best checkpoint), same tokenized data; median of "
        f"{s['reps']}. *Outside the loop* = process wall − training loop (start-up, loading, validation, "
        "saving).", "", versus, "", commands_block(result.get("commands", []))])
