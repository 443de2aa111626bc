"""Comparison 11: how a stage depends on the code it runs, measured by the no-op `dvc repro`.

- fingerprinted (the project's DAG): one `code` stage hashes, per stage kind, exactly the files
  the kind runs (finetune.fingerprint) into data/code/<kind>.sha256; each stage depends on its
  kind's listing.
- direct (the simple alternative): no `code` stage; each stage depends on `src/finetune`, its
  script and its kind's shared config directly (any library edit then re-runs every stage).

Two throwaway clones of HEAD with the default matrix and tiny budgets (bench/overhead.py's), each
built once, then REPS no-op `dvc repro` runs alternating between them (the machine drifts from
minute to minute); medians compared. The simple design wins if it is within THRESHOLD_S.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from common import WORK, BenchError, Context, commands_block, median, table
from overhead import MODEL, TASKS, make_clone

from finetune.fingerprint import CONFIG, STAGE
from finetune.pipeline.common import SCRIPTS

NAME = "code_stage"
TITLE = "11. Code dependencies of the DAG: the `code` fingerprint stage vs direct dependencies"
REPS = 15
THRESHOLD_S = 0.2
SIDES = ("fingerprinted", "direct")


def run(ctx: Context) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="finetune-bench-code-"))
    tasks = TASKS["quick" if ctx.quick else "full"]
    reps = 3 if ctx.quick else REPS
    try:
        clones = {side: make_clone(tmp / side, tasks) for side in SIDES}
        write_direct_dag(clones["direct"])
        logs = WORK / NAME
        stages = {}
        for side, clone in clones.items():
            print(f"[{NAME}] building the {side} clone", flush=True)
            log = logs / f"{side}.log"
            ctx.run(["dvc", "repro"], cwd=clone, env=ctx.env(PYTHONPATH=str(clone / "src")), log=log)
            stages[side] = sum(line.startswith("Running stage") for line in log.read_text().splitlines())
        times: dict[str, list[float]] = {side: [] for side in SIDES}
        for rep in range(reps):
            for side, clone in clones.items():
                log = logs / f"{side}-noop-{rep}.log"
                times[side].append(ctx.run(["dvc", "repro"], cwd=clone, env=ctx.env(PYTHONPATH=str(clone / "src")),
                                           log=log))
                if "Running stage" in log.read_text():
                    raise BenchError(f"a no-op `dvc repro` of the {side} clone ran a stage: see {log}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"tasks": tasks, "reps": reps, "stages": stages, "noop_s": times,
            "median_s": {side: median(values) for side, values in times.items()}, "commands": list(ctx.commands)}


def write_direct_dag(clone: Path) -> None:
    """The clone's dvc.yaml without the `code` stage: each stage depends on the code directly."""
    path = clone / "dvc.yaml"
    dag = yaml.safe_load(path.read_text())
    del dag["stages"][STAGE]
    for kind, spec in dag["stages"].items():
        kept = [dep for dep in spec["deps"] if not str(dep).startswith("data/code/")]
        spec["deps"] = ["src/finetune", f"stages/{SCRIPTS[kind]}", *CONFIG[kind], *kept]
    path.write_text(yaml.safe_dump(dag, sort_keys=False))


def render(result: dict[str, Any]) -> str:
    medians, stages = result["median_s"], result["stages"]
    difference = medians["direct"] - medians["fingerprinted"]
    rows = [[side, str(stages[side]), f"**{medians[side]:.2f}**", ", ".join(f"{t:.2f}" for t in result["noop_s"][side])]
            for side in SIDES]
    verdict = (f"The direct dependencies cost {difference:+.2f} s per no-op repro: "
               + (f"within {THRESHOLD_S} s, so the simple design is good enough."
                  if difference <= THRESHOLD_S else
                  f"more than {THRESHOLD_S} s, so the `code` stage stays (it also keeps invalidation "
                  "exact: an edit re-runs only the stage kinds that run the edited file)."))
    return "\n".join([
        f"No-op `dvc repro` in two throwaway clones of HEAD (tasks [{result['tasks']}], `model: [{MODEL}]`, "
        f"tiny budgets, tracking off), alternating, {result['reps']} runs each; wall time of the process:", "",
        table(["DAG", "stages built", "no-op median (s)", "runs (s)"], rows), "", verdict, "",
        commands_block(result.get("commands", []))])
