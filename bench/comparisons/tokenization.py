"""Comparison 4: SQuAD v1.1 train (87,599 questions) windowed to QA features, our way vs plain `map`.

Each variant runs bench/probes/squad_windows.py in a fresh process (only the windowing is timed): the
plain single-process per-question map of the tutorials vs our QA family's tokenize (what the
tokenize stage runs) in 1 process and with `data.num_proc=auto` (one per core at this size).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pipeline
from common import PROBES, PYTHON, WORK, Context, commands_block, data_dir, fmt, median, table

NAME = "tokenization"
TITLE = "4. Tokenization: SQuAD v1.1 train windowed to features"
SQUAD = "squad/train-v1.1.reconstructed.json.gz"
QUICK_LIMIT = 2000


def run(ctx: Context) -> dict[str, Any]:
    reps = 1  # full size: each run takes minutes, so one run each; --quick: only proves the path
    limit = ["--limit", QUICK_LIMIT] if ctx.quick else []
    base = [PYTHON, PROBES / "squad_windows.py", "--data", data_dir() / SQUAD, "--tokenizer",
            pipeline.model_path("minilm"), *limit]
    variants = {"plain map (1 process, per question)": ["--mode", "plain"],
                "ours, data.num_proc=1": ["--mode", "ours", "--num-proc", 1],
                "ours, data.num_proc=auto (the default)": ["--mode", "ours", "--num-proc", "auto"]}
    rows = {}
    for label, flags in variants.items():
        runs = []
        for rep in range(reps):
            print(f"[{NAME}] {label}: rep {rep + 1}/{reps}", flush=True)
            log = WORK / NAME / f"{flags[1]}-{flags[-1]}-{rep}.log"
            ctx.run([*base, *flags], log=log)
            runs.append(json.loads(log.read_text().strip().splitlines()[-1]))
        rows[label] = runs[0] | {"seconds": median(r["seconds"] for r in runs), "reps": reps,
                                 "all_seconds": [r["seconds"] for r in runs]}
        rows[label]["features_per_s"] = rows[label]["features"] / rows[label]["seconds"]
    plain = rows["plain map (1 process, per question)"]
    best = min(rows.values(), key=lambda r: r["seconds"])
    return {"variants": rows, "cores": len(os.sched_getaffinity(0)),
            "speedup_best_vs_plain": plain["seconds"] / best["seconds"],
            "best": next(k for k, v in rows.items() if v is best), "commands": list(ctx.commands)}


def render(result: dict[str, Any]) -> str:
    plain = result["variants"]["plain map (1 process, per question)"]
    rows = [[label, f"{r['questions']:,}", f"{r['features']:,}", fmt(r["seconds"]), fmt(r["features_per_s"], 0),
             f"{plain['seconds'] / r['seconds']:.2f}×", r["reps"]] for label, r in result["variants"].items()]
    return "\n".join([
        "max_length 384, doc_stride 128, question first, `only_second` truncation, overflowing windows with "
        "offsets and answer start/end positions, no padding. Plain = the tutorials' per-question windowing "
        "written out in bench/probes/squad_windows.py; ours = `tasks/question_answering.py`'s tokenize, the tokenize "
        "stage's code (batched, plus the evaluation bookkeeping: context-masked offsets, example ids, lengths; "
        f"`data.num_proc=auto` = {result.get('cores', 'all')} processes here). Only the windowing is timed; "
        "caching is off so every run tokenizes.", "",
        table(["variant", "questions", "features", "seconds (median)", "features/s", "vs plain", "reps"], rows),
        "", f"Fastest: {result['best']} ({result['speedup_best_vs_plain']:.2f}× the plain map).", "",
        commands_block(result.get("commands", []))])
