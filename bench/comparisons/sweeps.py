"""Comparison 10: sweeps and search, end to end through stages/pipeline.py into one MLflow store.

- A grid of 4 jobs (models `tiny` and `minilm` x 2 learning rates, IMDB sentiment at a small
  budget), run twice: one job at a time with all threads (Hydra's basic launcher), and 2 jobs at a
  time with 1 thread each (`hydra/launcher=joblib`). Wall time of each whole sweep, and whether each
  ended with 4 FINISHED child runs under one parent, none missing a metric the others have.
- The Optuna study of `hparams_search=sentiment` (minilm, same budget), 8 trials straight.
- The same study under another name interrupted (SIGINT to the sweep's process group, as Ctrl-C
  does) once 3 trials are complete, then resumed by the same command to 8.
- `stages/report.py` on the store afterwards; its plots are copied to bench/results/sweeps/.

Check: both grids and both studies end complete (4 and 8 FINISHED children under one parent each,
the resumed study with 8 completed trials and the interrupted one marked failed).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import Any

from common import PYTHON, REPO, WORK, Context, commands_block, display, fmt, table, verdict

NAME = "sweeps"
TITLE = "10. Sweeps and search: parallel jobs, an Optuna study, an interrupted study resumed"
BUDGET = ["task=sentiment", "data.max_train_samples=400", "data.max_eval_samples=200", "train.num_train_epochs=1",
          "train.disable_tqdm=true"]
QUICK_BUDGET = ["task=sentiment", "data.max_train_samples=64", "data.max_eval_samples=32", "train.num_train_epochs=1",
                "train.disable_tqdm=true"]
GRID = ["model=tiny,minilm", "train.learning_rate=5e-5,2e-4"]
LAUNCHERS = {"sequential": [], "parallel": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}
TRIALS, INTERRUPT_AFTER = 8, 3


def run(ctx: Context) -> dict[str, Any]:
    root = WORK / NAME
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    uri, storage = f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'optuna.db'}"
    env = ctx.env(MLFLOW_TRACKING_URI=uri)
    budget = QUICK_BUDGET if ctx.quick else BUDGET
    trials, interrupt_after = (3, 1) if ctx.quick else (TRIALS, INTERRUPT_AFTER)
    pipeline = [PYTHON, REPO / "stages" / "pipeline.py", "-m"]
    result: dict[str, Any] = {"budget": budget, "grid": {}, "trials": trials}

    for mode, launcher in LAUNCHERS.items():
        print(f"[{NAME}] grid, {mode}", flush=True)
        wall = ctx.run([*pipeline, *budget, *GRID, *launcher], cwd=root, log=root / f"grid-{mode}.log", env=env)
        result["grid"][mode] = {"wall_s": wall, **sweep_outcome(uri, _latest_sweep(uri, "pipeline-"))}

    search = [*pipeline, "hparams_search=sentiment", "model=minilm", *budget, f"hydra.sweeper.storage={storage}",
              f"hydra.sweeper.n_trials={trials}"]
    print(f"[{NAME}] study, {trials} trials", flush=True)
    wall = ctx.run(search, cwd=root, log=root / "study.log", env=env)
    result["study"] = {"wall_s": wall, **study_outcome(storage, "sentiment-minilm"),
                       **sweep_outcome(uri, "sentiment-minilm")}

    resumable = [*search, "hydra.sweeper.study_name=sentiment-minilm-resumed"]
    print(f"[{NAME}] study interrupted after {interrupt_after} trials", flush=True)
    interrupted = interrupt(resumable, root, env, storage, "sentiment-minilm-resumed", interrupt_after)
    ctx.commands.append(display(resumable) + f"   # interrupted (SIGINT) after {interrupt_after} trials, then again:")
    wall = ctx.run(resumable, cwd=root, log=root / "resumed.log", env=env)
    resumed_log = (root / "resumed.log").read_text()
    result["resumed"] = {"interrupted": interrupted, "wall_s": wall,
                         "resumed_from": f"{interrupt_after} of {trials} trials done" in resumed_log,
                         **study_outcome(storage, "sentiment-minilm-resumed"),
                         **sweep_outcome(uri, "sentiment-minilm-resumed")}

    print(f"[{NAME}] report", flush=True)
    ctx.run([PYTHON, REPO / "stages" / "report.py", f"out={root / 'reports'}"], cwd=root, log=root / "report.log",
            env=env)
    kept = ctx.results_dir / NAME
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir(parents=True)
    for png in sorted((root / "reports").glob("*.png")):
        shutil.copy(png, kept / png.name)
    shutil.copy(root / "reports" / "leaderboard.md", kept / "leaderboard.md")
    screenshot(root / "reports" / "index.html", kept / "report-page.png")
    result["report_files"] = sorted(p.name for p in kept.iterdir())

    grids = result["grid"].values()
    result["passed"] = (all(g["children_finished"] == 4 and g["parents"] == 1 and g["complete_metrics"] for g in grids)
                        and result["study"]["complete"] == trials and result["study"]["children_finished"] == trials
                        and result["resumed"]["complete"] == trials and result["resumed"]["parents"] == 1
                        and result["resumed"]["resumed_from"])
    result["commands"] = list(ctx.commands)
    return result


def screenshot(page: Any, png: Any) -> None:
    """The report page's top as headless Chromium renders it (Debian's `chromium`), if installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1500,2000", f"--screenshot={png}", f"file://{page}"],
                       capture_output=True, timeout=120, check=False)


def interrupt(cmd: list[Any], cwd: Any, env: dict[str, str], storage: str, study: str, after: int) -> dict[str, Any]:
    """Start the sweep, send SIGINT to its process group once `after` trials are complete."""
    import optuna

    log = open(cwd / "interrupted.log", "w")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    # a harness started in the background (`nohup ... &`) inherits SIGINT ignored: restore it for the sweep
    process = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    complete = 0
    while process.poll() is None:
        time.sleep(2)
        try:
            trials = optuna.load_study(study_name=study, storage=storage).trials
        except KeyError:  # not created yet
            continue
        complete = sum(t.state.name == "COMPLETE" for t in trials)
        if complete >= after:
            os.killpg(process.pid, signal.SIGINT)
            break
    code = process.wait(timeout=300)
    log.close()
    tail = (cwd / "interrupted.log").read_text(errors="replace").strip().splitlines()[-3:]
    return {"complete_when_interrupted": complete, "exit_code": code, "wall_s": time.perf_counter() - started,
            "traceback": "Traceback" in (cwd / "interrupted.log").read_text(errors="replace"), "last_lines": tail}


def _latest_sweep(uri: str, prefix: str) -> str:
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, "tags.sweep_role = 'parent'", order_by=["attributes.start_time DESC"])
    return next(r.data.tags["sweep_id"] for r in parents if r.data.tags["sweep_id"].startswith(prefix))


def sweep_outcome(uri: str, sweep_id: str) -> dict[str, Any]:
    """Parents and children of sweep `sweep_id`, and whether every child has every metric key."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.sweep_id = '{sweep_id}'", max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep_role") != "parent"]
    keys = [set(r.data.metrics) for r in children if r.info.status == "FINISHED"]
    return {"sweep_id": sweep_id, "parents": len(parents), "parent_status": [p.info.status for p in parents],
            "children": len(children), "children_finished": sum(r.info.status == "FINISHED" for r in children),
            "children_killed": sum(r.info.status in ("KILLED", "FAILED") for r in children),
            "complete_metrics": bool(keys) and all(k == keys[0] for k in keys),
            "values": sorted(((r.data.tags.get("model"), r.data.params.get("train.learning_rate"),
                               r.data.metrics.get("best_metric")) for r in children if r.info.status == "FINISHED"),
                             key=str),
            "best": {k: v for k, v in (parents[0].data.tags.items() if parents else [])
                     if k.startswith(("best.", "optuna."))}}


def study_outcome(storage: str, name: str) -> dict[str, Any]:
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    states = [t.state.name for t in study.trials]
    return {"complete": states.count("COMPLETE"), "failed": states.count("FAIL"), "best_value": study.best_value,
            "best_params": study.best_params,
            "history": [t.value for t in sorted(study.trials, key=lambda t: t.number) if t.value is not None]}


def checks(sweeps: dict[str, Any]) -> list[list[str]]:
    """This comparison's targets: [target, measured, pass/fail] rows for BENCHMARKS.md's checks."""
    rows: list[list[str]] = []
    grid = sweeps["grid"]
    rows.append(["4-job sweep: 4 FINISHED child runs under one parent, no lost metric (both launchers)",
                 f"parallel {grid['parallel']['wall_s']:.0f} s vs sequential {grid['sequential']['wall_s']:.0f} s",
                 verdict(all(g["children_finished"] == 4 and g["parents"] == 1 and g["complete_metrics"]
                         for g in grid.values()))])
    trials = sweeps["trials"]
    rows.append([f"Optuna study: {trials} trials straight, and interrupted then resumed to {trials}",
                 f"{sweeps['study']['complete']} and {sweeps['resumed']['complete']} complete",
                 verdict(sweeps["passed"])])
    return rows


def render(result: dict[str, Any]) -> str:
    grid = result["grid"]
    rows = [[mode, fmt(g["wall_s"], 1), f"{g['children_finished']} / 4 FINISHED, {g['parents']} parent "
             f"({', '.join(g['parent_status'])})", "yes" if g["complete_metrics"] else "**no**",
             "; ".join(f"{m} lr {lr}: {v:.3f}" for m, lr, v in g["values"])] for mode, g in grid.items()]
    ratio = grid["sequential"]["wall_s"] / grid["parallel"]["wall_s"]
    study, resumed = result["study"], result["resumed"]
    cut = resumed["interrupted"]
    parts = [f"Budget per job: `{' '.join(result['budget'])}`, every job runs download → tokenize → train → "
             "evaluate in its own folder.",
             table(["grid (4 jobs)", "wall s", "runs", "no lost metric", "validation accuracy per job"], rows),
             f"Parallel / sequential wall time: {1 / ratio:.2f} (sequential {ratio:.2f}× the parallel sweep).",
             table(["study", "wall s", "trials", "best validation accuracy", "best params"], [
                 ["straight", fmt(study["wall_s"], 1), f"{study['complete']} complete", f"{study['best_value']:.4f}",
                  _params(study["best_params"])],
                 [f"interrupted at {cut['complete_when_interrupted']} complete, resumed", fmt(resumed["wall_s"], 1)
                  + f" (+{cut['wall_s']:.0f} before the interrupt)",
                  f"{resumed['complete']} complete, {resumed['failed']} failed (interrupted)",
                  f"{resumed['best_value']:.4f}", _params(resumed["best_params"])]]),
             f"The interrupted sweep exited {cut['exit_code']}; its last lines: `{' / '.join(cut['last_lines'])}`. "
             f"Resumed study: one parent run ({', '.join(resumed['parent_status'])}), "
             f"{resumed['children_finished']} FINISHED and {resumed['children_killed']} killed child runs.",
             "Report plots (from `stages/report.py` on this store): " + ", ".join(
                 f"[{name}](bench/results/{NAME}/{name})" for name in result["report_files"] if name.endswith(".png")),
             commands_block(result["commands"])]
    return "\n\n".join(parts)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]} {v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
                     for k, v in sorted(params.items()))


if __name__ == "__main__":
    raise SystemExit("run through bench/run.py --only sweeps")
