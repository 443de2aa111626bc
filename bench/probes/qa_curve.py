"""SQuAD dev EM/F1 against the number of training questions: record runs, plot the curve.

    python bench/probes/qa_curve.py record bench/work/qa-quality/20000 20000   # after bench/qa_quality.sh
    python bench/probes/qa_curve.py plot                                       # -> results/qa_learning_curve.png

A record (bench/results/qa/<name>.json) keeps the evaluate stage's metrics, the train stage's
summary and the training settings that matter for comparing points (read from the run's
config.yaml), so that a point measured under other settings is labelled as such in the plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

RESULTS = Path(__file__).resolve().parents[1] / "results"
RECORDS = RESULTS / "qa"
SETTINGS = {"train": ("num_train_epochs", "per_device_train_batch_size", "learning_rate", "attention_dropout"),
            "data": ("max_train_samples", "max_eval_samples", "max_length", "doc_stride")}


def record(workdir: Path, name: str, model_dir: Path | None = None) -> Path:
    metrics = json.loads((workdir / "metrics.json").read_text())
    model_dir = model_dir or workdir / "model"
    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    summary = json.loads((model_dir / "train_summary.json").read_text())
    settings = {f"{group}.{key}": config.get(group, {}).get(key) for group, keys in SETTINGS.items()
                for key in keys}
    out = RECORDS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"name": name, "metrics": metrics, "train_summary": summary, "settings": settings},
                              indent=2) + "\n")
    return out


def plot(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json"))]
    runs = [r for r in runs if r["metrics"].get("n_eval") == 10570 and r["train_summary"]]
    runs.sort(key=questions)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for metric, marker in (("f1", "o"), ("exact_match", "s")):
        xs = [questions(r) for r in runs]
        ax.plot(xs, [r["metrics"][metric] for r in runs], marker=marker, label=metric.replace("_", " "))
    for i, r in enumerate(runs):
        s = r["settings"]
        dropout = 0.1 if s["train.attention_dropout"] is None else s["train.attention_dropout"]  # None: MiniLM's
        label = (f"{s['train.num_train_epochs']:g} ep, b{s['train.per_device_train_batch_size']}, "
                 f"lr {s['train.learning_rate']:g}, attn drop {dropout:g}")
        last = i == len(runs) - 1  # the last point's label goes left of it, inside the axes
        ax.annotate(label, (questions(r), r["metrics"]["f1"]), fontsize=6, textcoords="offset points",
                    xytext=(-4 if last else 4, 6), ha="right" if last else "left")
    ax.axhline(70, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("training questions (log scale)")
    ax.set_ylabel("official dev (10,570 questions), %")
    ax.set_title("minilm on SQuAD v1.1: dev EM / F1 against training data")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    return out


def questions(run: dict) -> int:
    return int(run["settings"]["data.max_train_samples"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("workdir", type=Path)
    rec.add_argument("name")
    rec.add_argument("--model-dir", type=Path, help="default: <workdir>/model")
    sub.add_parser("plot")
    args = parser.parse_args()
    if args.command == "record":
        print(record(args.workdir, args.name, args.model_dir))
    else:
        print(plot(RESULTS / "qa_learning_curve.png"))


if __name__ == "__main__":
    sys.exit(main())
