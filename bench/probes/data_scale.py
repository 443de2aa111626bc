"""The data stages at 100k / 1M / 10M rows beside `datasets.load_dataset("csv")`: wall time and
peak memory (the measured process's maximum resident set), each in a fresh process.

    python bench/probes/data_scale.py                       # writes bench/results/data_scale.{json,md}
    python bench/probes/data_scale.py --rows 100000 1000000 --row-path-up-to 1000000

The CSV is `../shared/tools/gen_rows.py N` (text,label; 8-60 random words a row, seeded). Measured:
- `datasets`: `datasets.load_dataset("csv", data_files=...)` into an empty cache folder;
- `download`: `stages/download.py` on the file (Arrow path), 10% carved as validation and 10% as test;
- `download (rows)`: the same stage forced onto the row readers (up to --row-path-up-to rows);
- `tokenize`: `stages/tokenize_data.py` (MiniLM's tokenizer, every row, `data.num_proc: auto`);
- `evaluate`: `stages/evaluate_model.py` on the whole test split (10% of the rows) with a 2-layer
  random-init model (model=tiny, trained on 2,000 rows first, not measured): scoring, intervals,
  predictions and plots at scale, not MiniLM's compute;
- `predict`: `finetune-predict --input rows.csv --output` over every row, with a 2-layer random-init
  export (model=tiny, trained briefly on the first size's rows): the streaming input and output, not
  MiniLM's compute (MiniLM predicts a few hundred texts a second here: hours at 10M).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = Path(os.environ.get("FINETUNE_DATA_DIR", REPO.parent / "shared" / "data")).parent
sys.path[:0] = [str(HERE.parent / "helpers"), str(REPO / "src")]
from common import provenance, provenance_text, table  # noqa: E402
from memory import PrivatePeak, memory_cgroup  # noqa: E402

WORK = REPO / "bench" / "work" / "data_scale"
STEPS = ("datasets", "download", "download_rows", "tokenize", "evaluate", "predict")
STAGE_ARGS = ["task=sentiment", "model=minilm", "data.split_column=null", "data.id_column=null",
              "data.split.strategy=random_fraction", "data.split.test_fraction=0.1", "data.max_train_samples=null",
              "data.max_eval_samples=null"]


def measured(cmd: list[str], env: dict[str, str] | None = None, limit_gb: float | None = None) -> dict:
    """Wall seconds, peak resident memory (file-backed pages of memory-mapped Arrow files included)
    and peak private memory of `cmd` in its own process, under a hard memory limit if `limit_gb`
    (its log in a file: a progress bar over millions of rows would fill a pipe nobody reads)."""
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile("w+"))
        group = stack.enter_context(memory_cgroup(int(limit_gb * 2**30))) if limit_gb else None
        start = time.perf_counter()
        process = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                                   stderr=log, text=True, preexec_fn=group.enter if group else None)
        private = PrivatePeak(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        private_peak = private.stop()
        code = os.waitstatus_to_exitcode(status)
        if code == -9 and group:  # the kernel's OOM killer, at the limit: a finding, not a broken run
            return {"wall_s": round(wall, 1), "peak_gb": round(usage.ru_maxrss / 2**20, 2), "killed": True,
                    "limit_gb": limit_gb, "limit_hits": group.hits(), "measured": provenance()}
        if code != 0:
            log.seek(0)
            raise SystemExit(f"failed (exit {os.waitstatus_to_exitcode(status)}"
                             f"{f', under a {limit_gb} GB limit' if limit_gb else ''}): {' '.join(cmd)}\n"
                             f"{log.read()[-2000:]}")
        limit = {"limit_gb": limit_gb, "limit_hits": group.hits()} if group else {}
    return {"wall_s": round(wall, 1), "peak_gb": round(usage.ru_maxrss / 2**20, 2),
            "private_gb": round(private_peak / 2**30, 2), **limit, "measured": provenance()}


def tiny_export(csv: Path, out: Path) -> Path:
    """A model=tiny export trained for a moment on 2,000 of the rows (what predict streams through)."""
    subprocess.run([sys.executable, "stages/pipeline.py", *STAGE_ARGS[:1], "model=tiny", *STAGE_ARGS[2:6],
                    "data.max_train_samples=2000", "data.max_eval_samples=500", f"data.files.train={csv}",
                    "pipeline.stages=[download,tokenize,train,evaluate,export]", "train.num_train_epochs=1",
                    "export.onnx=false", "tracking.enabled=false", f"paths.out={out}"],
                   cwd=REPO, check=True, capture_output=True)
    return out / "exports" / "sentiment-tiny"


def tiny_stages(csv: Path, out: Path) -> list[str]:
    """The overrides of a model=tiny pipeline on the file: 2,000 training rows, every test row."""
    return [*STAGE_ARGS[:1], "model=tiny", *STAGE_ARGS[2:6], "data.max_train_samples=2000",
            "data.max_eval_samples=null", f"data.files.train={csv}", "train.num_train_epochs=1",
            "tracking.enabled=false", f"paths.out={out}"]


def inner(what: str, csv: Path, out: Path) -> None:
    """One measured piece of work, run in this script's own fresh process."""
    if what == "datasets":
        import datasets

        datasets.load_dataset("csv", data_files=str(csv), cache_dir=str(out / "cache"))
        return
    from finetune.config import compose
    from finetune.pipeline.download import download_rows
    from finetune.tasks import recipe

    cfg = compose(REPO, [*STAGE_ARGS, f"data.files.train={csv}"], workdir=out)
    download_rows(cfg, recipe(cfg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--row-path-up-to", type=int, default=1_000_000)
    parser.add_argument("--beside", help="what else ran during these measurements (their times then compare with "
                                             "nothing; peak memory still does): kept with each figure")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help="which measurements to run; the others already saved are kept")
    parser.add_argument("--predict-up-to", type=int, default=1_000_000,
                        help="predict only files of at most this many rows (~2,500 rows/s: 10M take over an hour)")
    parser.add_argument("--limit-gb", type=float,
                        help="run every step but the row path under this hard memory limit (a memory cgroup): a "
                             "step that needs more fails (its file pages are dropped first: limit_hits counts it)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--inner", nargs=3, metavar=("WHAT", "CSV", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner[0], Path(args.inner[1]), Path(args.inner[2]))
        return
    saved = args.out / "data_scale.json"
    results = {c["rows"]: c for c in json.loads(saved.read_text())["cells"]} if saved.exists() else {}
    steps = set(args.steps.split(","))
    tiny = None
    for rows in args.rows:
        folder = WORK / str(rows)
        csv = folder / "rows.csv"
        if not csv.exists():
            folder.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(SHARED / "tools" / "gen_rows.py"), str(rows), str(csv)], check=True)
        cell = results.setdefault(rows, {"rows": rows})
        cell["csv_mb"] = round(csv.stat().st_size / 2**20)
        for name, cmd in [
            ("datasets", [sys.executable, __file__, "--inner", "datasets", str(csv), str(folder / "hf")]),
            ("download", [sys.executable, "stages/download.py", *STAGE_ARGS, f"data.files.train={csv}",
                          f"paths.out={folder}"]),
            ("download_rows", [sys.executable, __file__, "--inner", "rows", str(csv), str(folder / "rows")]),
            ("tokenize", [sys.executable, "stages/tokenize_data.py", *STAGE_ARGS, f"data.files.train={csv}",
                          f"paths.out={folder}"]),
            ("evaluate", [sys.executable, "stages/evaluate_model.py", *tiny_stages(csv, folder / "tiny")]),
        ]:
            if name not in steps or (name == "download_rows" and rows > args.row_path_up_to):
                continue
            if name == "evaluate":  # its model first, unmeasured
                subprocess.run([sys.executable, "stages/pipeline.py", *tiny_stages(csv, folder / "tiny"),
                                "pipeline.stages=[download,tokenize,train]"], cwd=REPO, check=True,
                               capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            shutil.rmtree(folder / "hf", ignore_errors=True)
            shutil.rmtree(folder / "rows", ignore_errors=True)
            offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
            limit = None if name == "download_rows" else args.limit_gb  # the row path holds the rows by design
            cell[name] = measured(cmd, offline, limit) | {"beside": args.beside}
            print(f"{rows:>10,} rows  {name:<14} {cell[name]['wall_s']:>7.1f} s  {cell[name]['peak_gb']:.2f} GB",
                  flush=True)
            save(args.out, results)
        if "predict" in steps and rows <= args.predict_up_to:
            if tiny is None:
                tiny = tiny_export(csv, WORK / "tiny")
            cell["predict"] = measured([sys.executable, "-m", "finetune.predict", str(tiny), "--input", str(csv),
                                        "--output", str(folder / "predictions.jsonl")],
                                       {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true"}, args.limit_gb)
            cell["predict"]["beside"] = args.beside
            print(f"{rows:>10,} rows  {'predict':<14} {cell['predict']['wall_s']:>7.1f} s  "
                  f"{cell['predict']['peak_gb']:.2f} GB", flush=True)
            (folder / "predictions.jsonl").unlink()
            save(args.out, results)
        shutil.rmtree(folder / "data", ignore_errors=True)
        shutil.rmtree(folder / "tiny", ignore_errors=True)
    print(render(save(args.out, results)))


def save(out: Path, cells: dict[int, dict], note: str | None = None) -> dict:
    """The results so far (each figure with its own provenance), as JSON and Markdown."""
    result = {"cells": [cells[rows] for rows in sorted(cells)], **({"note": note} if note else {})}
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_scale.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "data_scale.md").write_text(render(result))
    return result


def render(result: dict) -> str:
    def cell(entry: dict | None) -> list[str]:
        if not entry:
            return ["—", "—"]
        mark = "*" if entry.get("beside") else ""
        if entry.get("killed"):
            after = f" after {entry['wall_s']:.0f} s" if entry.get("wall_s") else ""
            return [f"killed{after}{mark}", f"over the {entry['limit_gb']:g} GB limit†"]
        private = f" ({entry['private_gb']:.2f})" if "private_gb" in entry else ""
        limited = f" ≤{entry['limit_gb']:g}†" if entry.get("limit_gb") else ""
        return [f"{entry['wall_s']:.1f} s{mark}", f"{entry['peak_gb']:.2f} GB{private}{limited}"]

    limited = any(c.get(step, {}).get("limit_gb") for c in result["cells"] for step in STEPS)
    hits = sorted({c[step]["limit_hits"] for c in result["cells"] for step in STEPS
                   if c.get(step, {}).get("limit_gb") and c[step].get("limit_hits") is not None})
    besides = sorted({c[step]["beside"] for c in result["cells"] for step in STEPS if c.get(step, {}).get("beside")})

    rows = []
    machines = sorted({provenance_text(c[step]["measured"]).split(", commit")[0] for c in result["cells"]
                       for step in STEPS if step in c})
    commits = sorted({c[step]["measured"]["commit"] for c in result["cells"] for step in STEPS if step in c})
    for c in result["cells"]:
        ratio = c["download"]["wall_s"] / c["datasets"]["wall_s"] if "download" in c and "datasets" in c else None
        rows.append([f"{c['rows']:,}", f"{c['csv_mb']:,} MB", *cell(c.get("datasets")), *cell(c.get("download")),
                     f"{ratio:.2f}x" if ratio else "—", *cell(c.get("download_rows")), *cell(c.get("tokenize")),
                     *cell(c.get("evaluate")), *cell(c.get("predict"))])
    return "\n".join([
        "# Data stages at scale", "",
        f"{'; '.join(machines)} (commits {', '.join(commits)}). Command: `python bench/probes/data_scale.py`; "
        "each figure one fresh "
        "process (wall from spawn to exit, peak resident memory). The download stage carves 10% validation and "
        "10% test from the one file; `download (rows)` is the same stage on the row readers (the path bad input "
        "and formats Arrow cannot read take); tokenize is MiniLM's tokenizer over every row; evaluate scores the "
        "whole test split (10% of the rows) with a 2-layer random-init model; predict is "
        "`finetune-predict --input` over every row with a 2-layer random-init export (the streaming, not MiniLM's "
        "compute). Peak: the resident maximum (`ru_maxrss`), which counts the file-backed pages of memory-mapped "
        "Arrow files read through (the kernel drops those whenever it needs the room); in brackets, the peak "
        "anonymous memory summed over the step's processes (proportional: pages forked workers share count once; "
        "sampled every 0.1 s).", "", *([result["note"], ""] if result.get("note") else []),
        table(["rows", "CSV", "datasets time", "datasets peak", "download time", "download peak", "download / datasets",
               "rows-path time", "rows-path peak", "tokenize time", "tokenize peak", "evaluate time",
               "evaluate peak", "predict time", "predict peak"],
              rows), "",
        *(["† run under a hard memory limit of that many GB (a memory cgroup, no swap): the step finished "
           "within it (or was killed by the kernel when it needed more)"
           + (f"; a step reached the limit up to {max(hits):,} times, the kernel giving file pages back each time."
              if hits else "."),
           ""] if limited else []),
        *([f"\\* measured while {'; '.join(besides)} ran too: that time compares with nothing, the peak memory "
           "still does.", ""] if besides else [])])


if __name__ == "__main__":
    main()
