"""Comparison 11: how a stage depends on the code it runs, measured by the no-op `dvc repro`.

- fingerprinted (the DAG up to commit 6f143603): one `code` stage (finetune.fingerprint) hashed,
  per stage kind, exactly the files the kind runs into data/code/<kind>.sha256; each stage
  depended on its kind's listing.
- direct (the DAG since, at HEAD): each stage depends on `src/finetune`, its script and its kind's
  shared config directly (any library edit re-runs every stage).

Two throwaway clones with the default matrix and tiny budgets (bench/overhead.py's), one of each
commit, each built once, then REPS no-op `dvc repro` runs alternating between them (the machine
drifts from minute to minute); medians compared. The simple design wins if it is within
THRESHOLD_S (it did: the `code` stage was removed).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from common import WORK, BenchError, Context, commands_block, median, table
from overhead import MODEL, TASKS, make_clone

NAME = "code_stage"
TITLE = "11. Code dependencies of the DAG: the `code` fingerprint stage vs direct dependencies"
REPS = 15
THRESHOLD_S = 0.2
SIDES = ("fingerprinted", "direct")
COMMITS = {"fingerprinted": "6f143603b5a42337a41b0fe1657f207250a2c48b", "direct": "HEAD"}


def run(ctx: Context) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="finetune-bench-code-"))
    tasks = TASKS["quick" if ctx.quick else "full"]
    reps = 3 if ctx.quick else REPS
    try:
        clones = {side: make_clone(tmp / side, tasks, COMMITS[side]) for side in SIDES}
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


def render(result: dict[str, Any]) -> str:
    medians, stages = result["median_s"], result["stages"]
    difference = medians["direct"] - medians["fingerprinted"]
    rows = [[f"{side} ({COMMITS[side][:8]})", str(stages[side]), f"**{medians[side]:.2f}**",
             ", ".join(f"{t:.2f}" for t in result["noop_s"][side])] for side in SIDES]
    verdict = (f"The direct dependencies cost {difference:+.2f} s per no-op repro: "
               + (f"within {THRESHOLD_S} s, so the simple design is good enough."
                  if difference <= THRESHOLD_S else
                  f"more than {THRESHOLD_S} s: the `code` stage would be worth keeping."))
    return "\n".join([
        f"No-op `dvc repro` in two throwaway clones (tasks [{result['tasks']}], `model: [{MODEL}]`, "
        f"tiny budgets, tracking off), alternating, {result['reps']} runs each; wall time of the process:", "",
        table(["DAG", "stages built", "no-op median (s)", "runs (s)"], rows), "", verdict, "",
        commands_block(result.get("commands", []))])
