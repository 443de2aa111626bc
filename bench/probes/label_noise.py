"""Planted label noise: flip a seeded share of a real training set's labels, cross-validate it with
`stages/kfold.py`, and measure how many of the flipped rows the label-issue rule ranks on top.

    python bench/probes/label_noise.py [--pool 4000] [--test 2000] [--noise 0.05] [--folds 5]
    # writes bench/results/label_noise.{json,md}; scratch in bench/work/label_noise/

The set is the sarcasm headlines (read in place from the mirror): the first `pool` rows are the
cross-validated pool, of which a seeded `noise` share get the other label, and the next `test` rows
the reported test split. With k = the number flipped, precision@k is the share of flipped rows
among the k surest issues; a random pick of k rows finds `noise` of them.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE.parent / "helpers"), str(REPO / "src")]
from common import data_dir, provenance, provenance_text  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", type=int, default=4000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = REPO / "bench" / "work" / "label_noise"
    work.mkdir(parents=True, exist_ok=True)
    source = data_dir() / "sarcasm" / "Sarcasm_Headlines_Dataset.json"
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    pool, test = rows[:args.pool], rows[args.pool:args.pool + args.test]
    flipped = sorted(random.Random(args.seed).sample(range(len(pool)), round(len(pool) * args.noise)))
    for i in flipped:
        pool[i] = {**pool[i], "is_sarcastic": 1 - int(pool[i]["is_sarcastic"])}
    for name, part in (("train", pool), ("test", test)):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    command = [sys.executable, str(REPO / "stages" / "kfold.py"), "task=sarcasm", "model=minilm",
               f"data.files.train={work / 'train.jsonl'}", f"data.files.test={work / 'test.jsonl'}",
               "data.split.strategy=kfold", f"data.split.folds={args.folds}", "tracking.enabled=false",
               "train.disable_tqdm=true", f"hydra.run.dir={work}"]
    started = time.perf_counter()
    subprocess.run(command, cwd=work, check=True)
    seconds = time.perf_counter() - started
    root = work / "kfold" / "sarcasm-minilm"
    with open(root / "label_issues.csv", newline="", encoding="utf-8") as handle:
        issues = list(csv.DictReader(handle))
    summary = json.loads((root / "summary.json").read_text())
    planted = {str(i) for i in flipped}  # the pool's ids are its row numbers
    k = len(planted)
    found_top_k = len({row["id"] for row in issues[:k]} & planted)
    found_all = len({row["id"] for row in issues} & planted)
    result = {"set": "sarcasm headlines", "pool": len(pool), "test": len(test), "noise": args.noise,
              "flipped": k, "folds": args.folds, "flagged": len(issues), "precision_at_k": found_top_k / k,
              "random_pick_precision": args.noise, "recall_of_flagged": found_all / k,
              "precision_of_flagged": found_all / max(len(issues), 1), "seconds": round(seconds, 1),
              "test_accuracy_mean": summary.get("test_accuracy_mean"),
              "test_accuracy_sd": summary.get("test_accuracy_sd"),
              "command": " ".join(["python", "bench/probes/label_noise.py"] + sys.argv[1:]), "measured": provenance()}
    out = REPO / "bench" / "results"
    (out / "label_noise.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "label_noise.md").write_text("\n".join([
        "# Planted label noise found by k-fold + the label-issue rule", "",
        f"Measured on {provenance_text(result['measured'])} by `{result['command']}`: the first {len(pool):,} "
        f"sarcasm headlines, {k} of them ({args.noise:.0%}, seeded) given the other label, cross-validated in "
        f"{args.folds} folds with MiniLM (the `sarcasm` preset's training budget per fold), the next {len(test):,} "
        "headlines the test split.", "",
        "| k (flipped) | flagged issues | precision@k | random pick | flipped among all flagged | "
        "precision of all flagged | test accuracy, mean ± sd of folds | wall |",
        "|---|---|---|---|---|---|---|---|",
        f"| {k} | {len(issues)} | {result['precision_at_k']:.3f} | {args.noise:.3f} | "
        f"{found_all} ({found_all / k:.0%}) "
        f"| {result['precision_of_flagged']:.3f} | {summary.get('test_accuracy_mean', 0):.4f} ± "
        f"{summary.get('test_accuracy_sd', 0):.4f} | {seconds:.0f} s |", ""]))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
