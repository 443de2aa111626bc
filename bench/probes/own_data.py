"""Six shapes of a user's own data, each run as a user would: one preset file outside the
repository and one command.

    python bench/probes/own_data.py                    # all six, writes bench/results/own_data.{json,md}
    python bench/probes/own_data.py --only headlines   # one shape
    python bench/probes/own_data.py --out /data/own    # where the files, presets and runs go

The files are made from ../shared/data in the shapes users bring (no new examples): one 0/1 column
per label, an Excel workbook with a split column of its own values, `LABEL text` lines, a
SICK-style pair-regression file whose split column says TRAIN / TRIAL / TEST, a two-column
`token<TAB>tag` NER corpus (the biomedical corpora's layout) and a SQuAD 2.0 file. Each shape's
preset goes to `<out>/presets/task/<name>.yaml` and runs with

    python stages/pipeline.py --config-dir <out>/presets task=<name>

in `<out>/runs/` (its own MLflow store there), timed from the command to its exit.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = Path(os.environ.get("FINETUNE_DATA_DIR", REPO.parent / "shared" / "data"))
sys.path[:0] = [str(HERE.parent / "helpers"), str(REPO / "src")]
from common import provenance, provenance_text  # noqa: E402

HEADER = "# @package _global_\ndefaults:\n  - /family/{family}\n  - _self_\n"


def tsv_rows(path: Path) -> list[list[str]]:
    """The fields of a GLUE TSV's rows, header left out (quoting off: their strings hold lone `"`)."""
    with open(path, encoding="utf-8-sig") as handle:
        return [line.rstrip("\n").split("\t") for line in handle][1:]


def emotions(out: Path) -> str:
    """GoEmotions as CSV with one 0/1 column per emotion (the SemEval E-c layout)."""
    names = (DATA / "goemotions" / "emotions.txt").read_text().split()
    for split in ("train", "dev", "test"):
        with open(out / f"emotions-{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "text", *names])
            for line in (DATA / "goemotions" / f"{split}.tsv").read_text(encoding="utf-8").splitlines():
                text, labels, ident = line.split("\t")
                chosen = {int(i) for i in labels.split(",")}
                writer.writerow([ident, text, *(int(i in chosen) for i in range(len(names)))])
    return HEADER.format(family="classification") + f"""\
task:
  name: emotions
  problem_type: multi_label_classification
  labels: null                  # the label columns' names
  tune_threshold: global
data:
  files: {{train: {out}/emotions-train.csv, validation: {out}/emotions-dev.csv, test: {out}/emotions-test.csv}}
  text_column: text
  id_column: id
  label_columns: [{", ".join(names)}]
  max_train_samples: 8000
  max_length: 64
train:
  num_train_epochs: 1
  learning_rate: 1.0e-4
  class_weights: balanced
"""


def paraphrases(out: Path) -> str:
    """MRPC in one Excel workbook: a `Set` column says Train / Dev / Test (Dev: 400 seeded train rows)."""
    import openpyxl

    train, test = tsv_rows(DATA / "glue" / "mrpc" / "train.tsv"), tsv_rows(DATA / "glue" / "mrpc" / "dev.tsv")
    dev = set(random.Random(0).sample(range(len(train)), 400))
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "pairs"
    sheet.append(["Quality", "Sentence 1", "Sentence 2", "Set"])
    for i, (quality, _, _, first, second) in enumerate(train):
        sheet.append([int(quality), first, second, "Dev" if i in dev else "Train"])
    for quality, _, _, first, second in test:
        sheet.append([int(quality), first, second, "Test"])
    book.save(out / "paraphrases.xlsx")
    return HEADER.format(family="classification") + f"""\
task:
  name: paraphrases
  labels: [different, paraphrase]   # the Quality column's ids 0 / 1
data:
  files: {{train: {out}/paraphrases.xlsx}}   # every split, by its Set column (Train / Dev / Test)
  split_column: Set
  text_column: Sentence 1
  text_pair_column: Sentence 2
  label_column: Quality
  max_length: 128
train:
  num_train_epochs: 2
  learning_rate: 1.0e-4
"""


def headlines(out: Path) -> str:
    """The sarcasm headlines as `LABEL text` lines (the TREC layout): the first 20,000 train, the rest test."""
    rows = [json.loads(line) for line in (DATA / "sarcasm" / "Sarcasm_Headlines_Dataset.json").open(encoding="utf-8")]
    for name, part in (("train", rows[:20000]), ("test", rows[20000:])):
        (out / f"headlines-{name}.label").write_text(
            "".join(f"{'SARC' if r['is_sarcastic'] else 'NEWS'} {r['headline']}\n" for r in part), encoding="utf-8")
    return HEADER.format(family="classification") + f"""\
task:
  name: headlines
  labels: null
data:
  files: {{train: {out}/headlines-train.label, test: {out}/headlines-test.label}}
  format: csv
  delimiter: space              # split once at the first space: the label, then the text
  maxsplit: 1
  columns: [label, text]
  split: {{strategy: random_fraction, validation_fraction: 0.1}}
  max_train_samples: 8000
  max_length: 64
train:
  num_train_epochs: 1
  learning_rate: 1.0e-4
"""


def relatedness(out: Path) -> str:
    """STS-B in SICK's layout: one TSV, a relatedness score per pair, SemEval_set TRAIN / TRIAL / TEST."""
    train, test = tsv_rows(DATA / "glue" / "stsb" / "train.tsv"), tsv_rows(DATA / "glue" / "stsb" / "dev.tsv")
    trial = set(random.Random(0).sample(range(len(train)), 500))
    with open(out / "relatedness.txt", "w", encoding="utf-8") as handle:
        handle.write("pair_ID\tsentence_A\tsentence_B\trelatedness_score\tSemEval_set\n")
        for i, row in enumerate(train):
            handle.write(f"{i + 1}\t{row[7]}\t{row[8]}\t{row[9]}\t{'TRIAL' if i in trial else 'TRAIN'}\n")
        for i, row in enumerate(test):
            handle.write(f"{len(train) + i + 1}\t{row[7]}\t{row[8]}\t{row[9]}\tTEST\n")
    return HEADER.format(family="classification") + f"""\
task:
  name: relatedness
  problem_type: regression
  labels: [relatedness]
data:
  files: {{train: {out}/relatedness.txt}}
  format: tsv
  split_column: SemEval_set
  split_values: {{train: TRAIN, validation: TRIAL, test: TEST}}
  text_column: sentence_A
  text_pair_column: sentence_B
  label_column: relatedness_score
  id_column: pair_ID
  max_length: 128
train:
  num_train_epochs: 2
  learning_rate: 1.0e-4
"""


def entities(out: Path) -> str:
    """CoNLL-2003 in the two-column `token<TAB>tag` layout of the biomedical NER corpora."""
    for name, target in (("train", "train"), ("valid", "devel"), ("test", "test")):
        lines = []
        for line in (DATA / "conll2003" / f"{name}.txt").read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if not fields:
                if lines and lines[-1]:
                    lines.append("")
            elif fields[0] != "-DOCSTART-":
                lines.append(f"{fields[0]}\t{fields[-1]}")
        (out / f"entities-{target}.tsv").write_text("\n".join(lines).strip("\n") + "\n\n", encoding="utf-8")
    return HEADER.format(family="token_classification") + f"""\
task:
  name: entities
data:
  files: {{train: {out}/entities-train.tsv, validation: {out}/entities-devel.tsv, test: {out}/entities-test.tsv}}
  max_train_samples: 5000
  max_length: 128
train:
  num_train_epochs: 1
  learning_rate: 2.0e-4
"""


def squad2(out: Path) -> str:
    """SQuAD 2.0 files: SQuAD v1.1 with a third of each article's questions moved to another of its
    paragraphs that holds none of their answers (unanswerable there: `is_impossible`, no answers)."""
    def version_2(source: dict, seed: int, articles: int | None = None) -> dict:
        rng = random.Random(seed)
        data = source["data"][:articles]
        for article in data:
            paragraphs = article["paragraphs"]
            moves = []
            for p, paragraph in enumerate(paragraphs):
                kept = []
                for qa in paragraph["qas"]:
                    answers = {a["text"] for a in qa["answers"]}
                    others = [o for o in range(len(paragraphs)) if o != p
                              and not any(text in paragraphs[o]["context"] for text in answers)]
                    if others and rng.random() < 1 / 3:
                        moves.append((rng.choice(others), {"id": qa["id"], "question": qa["question"], "answers": [],
                                                           "plausible_answers": [], "is_impossible": True}))
                    else:
                        kept.append(qa | {"is_impossible": False})
                paragraph["qas"] = kept
            for target, qa in moves:
                paragraphs[target]["qas"].append(qa)
        return {"version": "v2.0", "data": data}

    with gzip.open(DATA / "squad" / "train-v1.1.reconstructed.json.gz", "rt", encoding="utf-8") as handle:
        train = json.load(handle)
    (out / "squad2-train.json").write_text(json.dumps(version_2(train, 0, articles=60)), encoding="utf-8")
    dev = json.loads((DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    (out / "squad2-dev.json").write_text(json.dumps(version_2(dev, 1)), encoding="utf-8")
    return HEADER.format(family="question_answering") + f"""\
task:
  name: squad2
  version_2_with_negative: true
data:
  files: {{train: {out}/squad2-train.json, test: {out}/squad2-dev.json}}
  split: {{strategy: random_fraction, validation_fraction: 0.1}}   # a passage's questions stay together
  max_train_samples: 3000
  max_eval_samples: 1000
  max_length: 384
train:
  num_train_epochs: 1
  learning_rate: 2.0e-4
  per_device_train_batch_size: 8
"""


SHAPES = {"emotions": ("one 0/1 column per label (multi-label)", emotions, "macro_f1"),
          "paraphrases": ("an .xlsx workbook, a split column of its own values (Train / Dev / Test)", paraphrases,
                          "accuracy"),
          "headlines": ("`LABEL text` lines (space-separated, split once)", headlines, "accuracy"),
          "relatedness": ("pair regression, split column TRAIN / TRIAL / TEST (data.split_values)", relatedness,
                          "pearson"),
          "entities": ("a two-column `token<TAB>tag` NER corpus (the biomedical corpora's layout)", entities, "f1"),
          "squad2": ("a SQuAD 2.0 file (unanswerable questions)", squad2, "f1")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "finetune-own-data")
    parser.add_argument("--only", nargs="*", choices=list(SHAPES), default=list(SHAPES))
    args = parser.parse_args()
    out = args.out.resolve()
    if out == REPO or REPO in out.parents:
        parser.error("--out must lie outside the repository (a user's presets and files)")
    (out / "presets" / "task").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    results_path = REPO / "bench" / "results" / "own_data.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"shapes": {}}
    for name in args.only:
        shape, make, primary = SHAPES[name]
        preset = out / "presets" / "task" / f"{name}.yaml"
        preset.write_text(make(out), encoding="utf-8")
        command = [sys.executable, str(REPO / "stages" / "pipeline.py"), "--config-dir", str(out / "presets"),
                   f"task={name}"]
        print(f"{name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=out / "runs", capture_output=True, text=True,
                              env=dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{out / 'runs' / 'mlflow.db'}"))
        seconds = time.perf_counter() - start
        (out / "runs" / f"{name}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        if done.returncode != 0:
            sys.exit(f"{name} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1]}")
        metrics = json.loads((out / "runs" / "metrics" / f"{name}-minilm.json").read_text())
        test = metrics["test"]
        manifest = json.loads((out / "runs" / "data" / "raw" / name / "manifest.json").read_text())
        results["shapes"][name] = {
            "shape": shape, "preset": preset.read_text(encoding="utf-8").replace(str(out), "$OWN"),
            "command": f"python stages/pipeline.py --config-dir $OWN/presets task={name}", "seconds": round(seconds, 1),
            "rows": manifest["rows"], "primary": primary, "value": test[primary],
            "ci": [test.get(f"{primary}_ci_low"), test.get(f"{primary}_ci_high")], "units": test["ci"]["units"],
            "unit": test["ci"]["unit"], "warnings": [line for line in done.stderr.splitlines() if "warning" in line],
            "measured": provenance()}
        print(f"{name}: {primary} {test[primary]:.4f} in {seconds:.0f} s", flush=True)
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    render(results, REPO / "bench" / "results" / "own_data.md")


def render(results: dict, path: Path) -> None:
    rows, presets = [], []
    for name, entry in results["shapes"].items():
        low, high = entry["ci"]
        interval = f" [{low:.4f}, {high:.4f}]" if low is not None else ""
        rows.append(f"| `{name}` | {entry['shape']} | {', '.join(f'{k} {v:,}' for k, v in entry['rows'].items())} | "
                    f"{entry['primary']} {entry['value']:.4f}{interval} on {entry['units']:,} {entry['unit']} | "
                    f"{entry['seconds']:.0f} s | {provenance_text(entry['measured'])} |")
        presets += [f"### `{name}`", "", f"    {entry['command']}", "", "```yaml", entry["preset"].rstrip(), "```", ""]
    path.write_text("\n".join([
        "# Own data: six shapes, one preset file and one command each", "",
        "Made and run by `python bench/probes/own_data.py`: each file is made from `../shared/data` in a shape users "
        "bring, its preset written to `$OWN/presets/task/<name>.yaml` (outside the repository) and run with the one "
        "command below, in `$OWN/runs/`, timed from start to exit (download, tokenize, train, evaluate; MiniLM). "
        "The interval is the evaluate stage's 95% bootstrap interval on the test split.", "",
        "| preset | shape | rows per split | test result [95% interval] | time | machine |",
        "|---|---|---|---|---|---|",
        *rows, "", "## The presets", "", *presets]))


if __name__ == "__main__":
    main()
