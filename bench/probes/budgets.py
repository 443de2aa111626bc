"""The default pairs' budgets against the tutorials' numbers: the preset before, the candidates
that spend about the same training time otherwise, each scored with its interval on a test set
large enough to back the comparison.

    python bench/probes/budgets.py                          # every candidate below
    python bench/probes/budgets.py --only sentiment:before sentiment:head_tail

Every run is the real download -> tokenize -> train -> evaluate of `task=<task> model=minilm` with
the candidate's overrides, in bench/work/budgets/<task>-<candidate> (a finished run is kept unless
`--fresh`). IMDB scores 2,000 test reviews (data.max_test_samples=2000) in every candidate, sarcasm
its 6,709 test headlines, NER the CoNLL-2003 test split. Classification candidates also carry their
paired difference to the preset before (bootstrap over the same test examples). `--seeds` runs a
candidate at two more seeds: on small budgets a seed moves a result as much as a budget does.

Writes bench/results/budgets.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE.parent / "helpers"), str(REPO / "src")]
from common import paired, provenance, provenance_text, table  # noqa: E402
from pipeline import pipeline_run  # noqa: E402

WORK = REPO / "bench" / "work" / "budgets"
IMDB_TEST = "data.max_test_samples=2000"
SEEDS = (42, 43, 44)  # the first is the presets' own
# The tutorials' numbers (../shared/FIELD-NOTES.md): what each default pair is held against.
TUTORIALS = {"sentiment": ("accuracy", "0.888", "DistilBERT, 1,000 train / 500 test reviews"),
             "sarcasm": ("accuracy", "0.9118", "the first-20,000 split, accuracy on the other 6,709"),
             "ner": ("f1", "0.90", "bert-base, 1,000 train / 500 test sentences"),
             "qa": ("f1", "—", "no CPU-sized tutorial; SQuAD dev F1 85.8 for DistilBERT trained on all of SQuAD")}
# The candidate each preset now holds (conf/task/<task>.yaml).
CHOSEN = {"sentiment": "head_tail", "sarcasm": "validation_1000"}


def imdb(reviews: int, mode: str, *extra: str) -> list[str]:
    """A sentiment budget: `reviews` x 2 epochs read in `mode`, scored on the same test reviews."""
    return [f"data.max_train_samples={reviews}", "train.num_train_epochs=2", f"data.long_inputs={mode}", *extra,
            "data.max_eval_samples=500", IMDB_TEST]


def headlines(validation_fraction: float, learning_rate: str, batch: int, *extra: str) -> list[str]:
    """A sarcasm budget: the share of the first 20,000 headlines that validates, and the optimizer's steps."""
    return [f"data.split.validation_fraction={validation_fraction}", f"train.learning_rate={learning_rate}",
            f"train.per_device_train_batch_size={batch}", *extra]


# task -> candidate -> overrides on top of the preset; "before" is the preset as it was.
CANDIDATES: dict[str, dict[str, list[str]]] = {
    "sentiment": {
        "before": imdb(1200, "truncate"),
        "head_tail": imdb(1200, "head_tail"),
        "head_tail_128": imdb(2000, "head_tail", "data.max_length=128"),  # as many tokens, on more reviews
        "head_tail_lr2e-4": imdb(1200, "head_tail", "train.learning_rate=2e-4"),
        "head_tail_lr5e-5": imdb(1200, "head_tail", "train.learning_rate=5e-5"),
        # what 1.7x the training time buys (more than the presets' budget: for the record)
        "head_tail_2000": imdb(2000, "head_tail"),
        "head_tail_384": imdb(800, "head_tail", "data.max_length=384"),  # fewer reviews read further
        "head_tail_batch8": imdb(1200, "head_tail", "train.per_device_train_batch_size=8"),  # twice the steps
    },
    "sarcasm": {
        "before": headlines(0.1, "1e-4", 32),
        # 1,000 of the first 20,000 validate (one epoch keeps one checkpoint: validation chooses nothing)
        "validation_1000": headlines(0.05, "1e-4", 32),
        "lr2e-4": headlines(0.1, "2e-4", 32),
        "batch16": headlines(0.1, "1e-4", 16),
        "validation_1000_batch16": headlines(0.05, "1e-4", 16),
        "two_epochs": headlines(0.05, "1e-4", 32, "train.num_train_epochs=2"),  # validation picks an epoch
    },
}


def run(task: str, name: str, overrides: list[str], fresh: bool) -> dict:
    result = pipeline_run(WORK, f"{task}-{name}", [f"task={task}", "model=minilm", *overrides], fresh)
    metric = TUTORIALS[task][0]
    test = result["metrics"]["test"]
    print(f"{task} {name}: {metric} {test[metric]:.4f}, train {result['train_s']:.0f} s, "
          f"wall {result['wall_s']:.0f} s", flush=True)
    return {"overrides": overrides, metric: test[metric], "validation": result["metrics"]["validation"][metric],
            "ci": [test.get(f"{metric}_ci_low"), test.get(f"{metric}_ci_high")],
            "train_s": round(result["train_s"], 1), "eval_s": result["eval_s"], "wall_s": result["wall_s"],
            "train_examples": result["stats"]["train"]["examples"], "train_tokens": result["train_tokens"],
            "test_examples": result["stats"]["test"]["examples"], "commit": result["commit"]}


def differences(task: str, runs: dict[str, dict]) -> dict[str, list[float]]:
    """Classification: each candidate's accuracy minus the preset before's, paired over test rows
    (the predictions its run left in bench/work/budgets/<task>-<candidate>)."""
    if "before" not in runs or "accuracy" not in runs["before"]:
        return {}
    hits = {}
    for name in runs:
        predictions = WORK / f"{task}-{name}" / "predictions" / f"{task}-minilm" / "predictions.jsonl"
        rows = [json.loads(line) for line in predictions.read_text().splitlines()]
        hits[name] = np.array([row["label"] == row["gold"] for row in rows], dtype=np.float64)
    if len({len(hit) for hit in hits.values()}) > 1:
        return {}
    return paired(hits, "before")


def render(result: dict) -> str:
    lines = ["# Default budgets against the tutorials", "",
             "Each default pair (MiniLM) as its preset was (`before`) and the candidates that spend about the same "
             "time otherwise; `wall s` is download + tokenize + train + evaluate. Command: "
             "`python bench/probes/budgets.py`. The presets now hold "
             + ", ".join(f"{task}: `{name}`" for task, name in CHOSEN.items()) + ": one change each, backed apart "
             "from these tables (head_tail: `bench/results/long_inputs.md`; more training rows). Every candidate's "
             "test score is shown, so a chosen one's carries a little selection; its other seeds do not.", ""]
    for task, block in result["tasks"].items():
        metric, reference, source = TUTORIALS[task]
        lines += [f"## {task}", "", f"Tutorial: {reference} {metric} ({source}). "
                  f"{provenance_text(block['measured'])}.", "",
                  table(["candidate", "overrides", "train examples", "train tokens", "train s", "wall s",
                         f"validation {metric}", "test examples", metric, "95% interval", "minus before (95% paired)",
                         "commit"],
                        [_row(name, r, metric, block.get("differences", {})) for name, r in block["runs"].items()]),
                  ""]
        if block.get("seeds"):
            lines += [f"Seeds (`train.seed` and `train.data_seed`; the same test examples), test {metric}:", "",
                      table(["candidate", "seeds", f"{metric} per seed", "mean", "95% interval of the mean (t)"],
                            [_seed_row(name, r) for name, r in seed_rows(task, block["seeds"]).items()]), ""]
    return "\n".join(lines + matrix(result))


def matrix(result: dict) -> list[str]:
    """The default matrix's metrics (metrics/, the latest `dvc repro`) beside the tutorials' numbers."""
    rows = []
    for task, (metric, reference, source) in TUTORIALS.items():
        saved = REPO / "metrics" / f"{task}-minilm.json"
        if not saved.exists():
            continue
        metrics = json.loads(saved.read_text())
        test, validation = metrics["test"], metrics.get("validation", {})
        seeds = result["tasks"].get(task, {}).get("seeds", {}).get(CHOSEN.get(task))
        digits = 1 if test[metric] > 1 else 4  # QA scores 0-100
        rows.append([f"{task}-minilm", f"{test[metric]:.{digits}f} [{test[f'{metric}_ci_low']:.{digits}f}, "
                     f"{test[f'{metric}_ci_high']:.{digits}f}]",
                     f"{validation[metric]:.{digits}f}" if metric in validation else "—",
                     f"{seeds['mean']:.4f} [{seeds['ci'][0]:.4f}, {seeds['ci'][1]:.4f}]" if seeds else "—",
                     reference, source])
    if not rows:
        return []
    return ["## The default matrix against the tutorials", "",
            "`metrics/` of the latest `dvc repro` (test, with its 95% bootstrap interval over test examples), its "
            "validation score, the preset's mean over seeds from the table above where measured (95% t interval), "
            "and the tutorial's number.", "",
            table(["pair", "test [95%]", "validation", "mean over seeds [95%]", "tutorial", "tutorial's setting"],
                  rows),
            ""]


def seed_rows(task: str, seeds: dict) -> dict:
    """The seeds' rows, and the chosen candidate minus the preset before, seed by seed."""
    from finetune.intervals import t_interval

    chosen = CHOSEN.get(task)
    if chosen not in seeds or "before" not in seeds:
        return seeds
    diffs = [a - b for a, b in zip(seeds[chosen]["values"], seeds["before"]["values"], strict=True)]
    low, high = t_interval(diffs)
    return seeds | {f"{chosen} − before": {"seeds": seeds[chosen]["seeds"], "values": diffs,
                                            "mean": float(np.mean(diffs)), "ci": [low, high]}}


def _seed_row(name: str, r: dict) -> list:
    sign = "+" if " − " in name else ""  # a difference
    return [name, ", ".join(map(str, r["seeds"])), ", ".join(f"{v:{sign}.4f}" for v in r["values"]),
            f"{r['mean']:{sign}.4f}", f"[{r['ci'][0]:{sign}.4f}, {r['ci'][1]:{sign}.4f}]"]


def _row(name: str, r: dict, metric: str, diffs: dict) -> list:
    paired_cell = "{:+.4f} [{:+.4f}, {:+.4f}]".format(*diffs[name]) if name in diffs else "—"
    return [name, " ".join(f"`{o}`" for o in r["overrides"]), f"{r['train_examples']:,}", f"{r['train_tokens']:,}",
            f"{r['train_s']:.0f}", f"{r['wall_s']:.0f}", f"{r['validation']:.4f}", f"{r['test_examples']:,}",
            f"{r[metric]:.4f}", f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]", paired_cell, r["commit"]]


def seeds_of(task: str, name: str, runs: dict, fresh: bool) -> dict:
    """The candidate again at SEEDS' other seeds: the spread a new seed alone gives."""
    from finetune.intervals import t_interval

    metric = TUTORIALS[task][0]
    values = [runs[name][metric]]
    for seed in SEEDS[1:]:
        extra = [*CANDIDATES[task][name], f"train.seed={seed}", f"train.data_seed={seed}"]
        values.append(run(task, f"{name}-seed{seed}", extra, fresh)[metric])
    low, high = t_interval(values)
    return {"seeds": list(SEEDS), "values": values, "mean": round(float(np.mean(values)), 4),
            "ci": [round(low, 4), round(high, 4)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="task:candidate names (default: all; none: only --seeds)")
    parser.add_argument("--seeds", nargs="*", default=[], help="task:candidate names to run at every seed of SEEDS")
    parser.add_argument("--fresh", action="store_true", help="re-run the runs already finished")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    saved = args.out / "budgets.json"
    result = json.loads(saved.read_text()) if saved.exists() else {"tasks": {}}
    for task, candidates in CANDIDATES.items():
        for name, overrides in candidates.items():
            if args.only is not None and f"{task}:{name}" not in args.only:
                continue
            block = result["tasks"].setdefault(task, {"runs": {}})
            block["runs"][name] = run(task, name, overrides, args.fresh)
            block["runs"] = {n: block["runs"][n] for n in candidates if n in block["runs"]}
            block["differences"] = differences(task, block["runs"])
            block["measured"] = provenance()
            args.out.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(result, indent=1) + "\n")
            (args.out / "budgets.md").write_text(render(result))
    for task, name in (item.split(":") for item in args.seeds):
        block = result["tasks"][task]
        block.setdefault("seeds", {})[name] = seeds_of(task, name, block["runs"], args.fresh)
        saved.write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "budgets.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
