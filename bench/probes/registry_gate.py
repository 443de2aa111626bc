"""The registry's `significant` gate on real runs, and the report of a 3-seed sweep.

    python bench/probes/registry_gate.py [--budget 4000] [--better 12000]
    # writes bench/results/registry_gate.{json,md} and bench/results/registry_gate/report.html;
    # scratch (its own MLflow store) in bench/work/registry_gate/

1. One configuration of `sarcasm-minilm` (`--budget` training headlines) over three seeds, as one
   Hydra multirun whose jobs each export and register: the first becomes champion (there is none),
   the other two are compared with it on the same validation headlines.
2. The same configuration with a clearly larger budget (`--better` headlines, seed 1): compared
   with the champion the same way.
3. `stages/report.py` on the store: the leaderboard, the three seeds as one row (mean ± sd and the
   interval of the mean), and the label issues of the larger budget's validation split.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE.parent / "helpers"), str(REPO / "src")]
from common import provenance, provenance_text  # noqa: E402

COMMON = ["task=sarcasm", "model=minilm", "data.max_eval_samples=2000", "export.onnx=false",
          "pipeline.stages=[download,tokenize,train,evaluate,export]", "train.disable_tqdm=true"]


def run(work: Path, *args: str) -> tuple[list[str], float]:
    """A stages/pipeline.py process in `work` (its own store); the registry's decision lines."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "stages" / "pipeline.py"), *args], cwd=work, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return [line for line in done.stdout.splitlines() if line.startswith("registry:")], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--better", type=int, default=12000)
    args = parser.parse_args()
    work = REPO / "bench" / "work" / "registry_gate"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    seeds, seeds_s = run(work, "-m", *COMMON, f"data.max_train_samples={args.budget}", "train.seed=1,2,3",
                         "hydra.sweep.dir=multirun/seeds")
    better, better_s = run(work, *COMMON, f"data.max_train_samples={args.better}", "train.seed=1",
                           f"hydra.run.dir={work / 'better'}")
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
    subprocess.run([sys.executable, str(REPO / "stages" / "report.py"), f"out={work / 'reports'}",
                    f"workspace={work / 'better'}"], cwd=work, env=env, check=True, capture_output=True)
    decisions = []
    for line in seeds + better:
        found = re.match(r"registry: \S+ v(\d+) (is now champion|stays out of champion): (.*)", line)
        decisions.append({"version": int(found.group(1)), "promoted": found.group(2) == "is now champion",
                          "reason": found.group(3)})
    out = REPO / "bench" / "results"
    (out / "registry_gate").mkdir(exist_ok=True)
    page = out / "registry_gate" / "report.html"
    shutil.copy2(work / "reports" / "index.html", page)
    if shutil.which("chromium"):  # apt-get install chromium: a screenshot of the page
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=2300,1350", f"--screenshot={page.with_suffix('.png')}", page.as_uri()],
                       capture_output=True, timeout=120)
    result = {"budget": args.budget, "better": args.better, "decisions": decisions, "seeds_s": round(seeds_s),
              "better_s": round(better_s), "measured": provenance(),
              "command": " ".join(["python", "bench/probes/registry_gate.py", *sys.argv[1:]])}
    (out / "registry_gate.json").write_text(json.dumps(result, indent=1) + "\n")
    runs = ([f"seed {seed}, {args.budget:,} headlines" for seed in (1, 2, 3)]
            + [f"seed 1, {args.better:,} headlines"])
    rows = [f"| v{d['version']} | {what} | {'**promoted**' if d['promoted'] else 'kept out'} | {d['reason']} |"
            for d, what in zip(decisions, runs, strict=True)]
    (out / "registry_gate.md").write_text("\n".join([
        "# The registry's significant gate on real runs", "",
        f"Measured on {provenance_text(result['measured'])} by `{result['command']}` (sarcasm-minilm, one epoch, "
        f"2,000 validation headlines that the gate compares on; the seeds' sweep took {seeds_s:.0f} s, the larger "
        f"budget {better_s:.0f} s). `export.promotion=significant`: a version becomes champion only when the paired "
        "bootstrap interval of its difference to the champion on the same validation examples lies above zero.", "",
        "| version | run | decision | why |", "|---|---|---|---|", *rows, "",
        "The report of the store (`python stages/report.py`), with the three seeds as one row: "
        "[registry_gate/report.html](registry_gate/report.html) (screenshot: "
        "[registry_gate/report.png](registry_gate/report.png)).", ""]))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
