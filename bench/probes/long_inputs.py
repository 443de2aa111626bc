"""Long texts read whole: `data.long_inputs` truncate vs head_tail vs windows at equal training compute.

    python bench/probes/long_inputs.py                 # IMDB (MiniLM) and long CoNLL documents
    python bench/probes/long_inputs.py --only imdb --train 2000 --test 2000

IMDB: the sentiment preset on full-length reviews, `--train` reviews x 1 epoch for truncate and
head_tail; windows trains on as many reviews as give the same number of training tokens (its
reviews hold more tokens each), so the three train for about the same time. All three score the
same `--test` test reviews: accuracy with its 95% interval, the paired difference to truncate
(bootstrap over reviews), and accuracy per review length in tokens.

NER: CoNLL-2003 documents joined into one text each (-DOCSTART- to -DOCSTART-, a few hundred
words: mostly longer than data.max_length=128 tokens), truncate vs windows, entity F1 on the test
documents with its interval. Truncation predicts every word past the cut `O`.

Writes bench/results/long_inputs.{json,md}.
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
from common import data_dir, paired, provenance, provenance_text, table  # noqa: E402
from pipeline import finished_stages, pipeline_run  # noqa: E402

WORK = REPO / "bench" / "work" / "long_inputs"
FRESH = "--fresh" in sys.argv
BUCKETS = ((0, 256), (257, 512), (513, 1024), (1025, 10**9))


def run_pipeline(name: str, overrides: list[str]) -> dict:
    return pipeline_run(WORK, name, overrides, FRESH)


def train_tokens(overrides: list[str], name: str) -> int:
    """The training tokens a config tokenizes to (download + tokenize only)."""
    out = finished_stages(WORK, name, overrides, "download,tokenize", FRESH)
    stats = json.loads(next((out / "data" / "tokenized").glob("*/tokenize_stats.json")).read_text())
    return int(stats["train"]["tokens"])


def imdb(train: int, test: int) -> dict:
    from finetune.config import compose
    from finetune.models import load_tokenizer

    base = ["task=sentiment", "model=minilm", f"data.max_train_samples={train}", f"data.max_eval_samples={test}",
            "train.num_train_epochs=1", "data.max_length=256", "data.doc_stride=64"]
    truncate_tokens = train_tokens([*base, "data.long_inputs=truncate"], "imdb-tokens-truncate")
    windows_tokens = train_tokens([*base, "data.long_inputs=windows"], "imdb-tokens-windows")
    windows_train = round(train * truncate_tokens / windows_tokens)
    runs = {}
    for mode, reviews in (("truncate", train), ("head_tail", train), ("windows", windows_train)):
        overrides = [*base, f"data.long_inputs={mode}", f"data.max_train_samples={reviews}"]
        runs[mode] = run_pipeline(f"imdb-{mode}", overrides)
        print(f"imdb {mode}: accuracy {runs[mode]['metrics']['test']['accuracy']:.4f}, "
              f"train {runs[mode]['train_s']:.0f} s", flush=True)
    tokenizer = load_tokenizer(compose(REPO, ["task=sentiment", "model=minilm"]).model)
    rows = {mode: [json.loads(line) for line in (run["predictions"] / "predictions.jsonl").read_text().splitlines()]
            for mode, run in runs.items()}
    texts = _imdb_texts({row["id"] for row in rows["truncate"]})
    lengths = np.array([len(tokenizer(texts[row["id"]])["input_ids"]) for row in rows["truncate"]])
    hits = {}
    for mode, predicted in rows.items():
        assert [r["id"] for r in predicted] == [r["id"] for r in rows["truncate"]], "same test reviews, same order"
        hits[mode] = np.array([r["label"] == r["gold"] for r in predicted], dtype=np.float64)
    buckets = []
    for low, high in BUCKETS:
        inside = (lengths >= low) & (lengths <= high)
        if inside.any():
            buckets.append({"tokens": [low, high], "reviews": int(inside.sum()),
                            **{mode: round(float(hit[inside].mean()), 4) for mode, hit in hits.items()}})
    return {"modes": {mode: _summary(run, "accuracy") for mode, run in runs.items()},
            "difference_to_truncate": paired(hits, "truncate"), "buckets": buckets,
            "test_reviews": len(lengths), "median_tokens": int(np.median(lengths)), "measured": provenance()}


def _imdb_texts(ids: set[str]) -> dict[str, str]:
    import csv
    import gzip

    with gzip.open(data_dir() / "imdb" / "imdb.csv.gz", "rt", newline="", encoding="utf-8") as handle:
        return {row["id"]: row["text"] for row in csv.DictReader(handle) if row["split"] == "test" and row["id"] in ids}


def _summary(run: dict, metric: str) -> dict:
    test = run["metrics"]["test"]
    return {metric: test[metric], "ci": [test.get(f"{metric}_ci_low"), test.get(f"{metric}_ci_high")],
            "train_s": round(run["train_s"], 1), "train_tokens": run["train_tokens"],
            "train_examples": run["stats"]["train"]["examples"], "train_features": run["train_examples"],
            "eval_s": run["eval_s"],
            "features": run["stats"].get("test", {}).get("features"), "commit": run["commit"],
            "truncated": run["stats"].get("test", {}).get("truncated")}


def conll_documents(split_file: Path, out: Path) -> Path:
    """One JSON line per CoNLL-2003 document: its sentences' words and tags joined."""
    docs, tokens, tags = [], [], []
    for line in split_file.read_text(encoding="utf-8").splitlines():
        if line.startswith("-DOCSTART-"):
            if tokens:
                docs.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
        elif line.strip():
            parts = line.split()
            tokens.append(parts[0])
            tags.append(parts[-1])
    if tokens:
        docs.append({"tokens": tokens, "tags": tags})
    out.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return out


def ner(max_length: int) -> dict:
    folder = data_dir() / "conll2003"
    WORK.mkdir(parents=True, exist_ok=True)
    files = {split: conll_documents(_conll_file(folder, split), WORK / f"conll-docs-{split}.jsonl")
             for split in ("train", "validation", "test")}
    base = ["task=ner", "model=minilm", *[f"data.files.{s}={p}" for s, p in files.items()], "data.format=jsonl",
            "data.max_train_samples=null", "data.max_eval_samples=null", f"data.max_length={max_length}",
            "data.doc_stride=32", "data.tag_scheme=auto"]
    runs = {mode: run_pipeline(f"ner-{mode}", [*base, f"data.long_inputs={mode}"]) for mode in ("truncate", "windows")}
    for mode, run in runs.items():
        print(f"ner {mode}: f1 {run['metrics']['test']['f1']:.4f}, train {run['train_s']:.0f} s", flush=True)
    return {"modes": {mode: _summary(run, "f1") for mode, run in runs.items()},
            "documents": {s: sum(1 for _ in p.open()) for s, p in files.items()}, "max_length": max_length,
            "measured": provenance()}


def _conll_file(folder: Path, split: str) -> Path:
    return folder / {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}[split]


def render(result: dict) -> str:
    lines = ["# Long texts read whole", ""]
    if "imdb" in result:
        r = result["imdb"]
        lines += [f"IMDB sentiment, MiniLM, data.max_length=256, 1 epoch; {r['test_reviews']:,} test reviews "
                  f"(median {r['median_tokens']} tokens). {provenance_text(r['measured'])}. Command: "
                  "`python bench/probes/long_inputs.py`. windows trains on fewer reviews, as many as give truncate's "
                  "training tokens.", "",
                  table(["mode", "train reviews", "train tokens", "train s", "test features", "eval s", "accuracy",
                         "95% interval", "minus truncate (95% paired)", "commit"],
                        [[mode, f"{m['train_examples']:,}", f"{m['train_tokens']:,}", f"{m['train_s']:.0f}",
                          f"{m['features']:,}", f"{m['eval_s']:.0f}" if m["eval_s"] else "—", f"{m['accuracy']:.4f}",
                          f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]",
                          "—" if mode == "truncate" else "{:+.4f} [{:+.4f}, {:+.4f}]".format(
                              *r["difference_to_truncate"][mode]), m.get("commit", "")]
                         for mode, m in r["modes"].items()]), "",
                  "Accuracy per review length (MiniLM tokens, the whole review):", "",
                  table(["tokens", "reviews", *r["modes"]],
                        [[f"{b['tokens'][0]}–{b['tokens'][1]}" if b["tokens"][1] < 10**9 else f"> {b['tokens'][0] - 1}",
                          b["reviews"], *[f"{b[mode]:.3f}" for mode in r["modes"]]] for b in r["buckets"]]), ""]
    if "ner" in result:
        r = result["ner"]
        lines += [f"CoNLL-2003 documents joined (train {r['documents']['train']}, test {r['documents']['test']} "
                  f"documents), MiniLM, data.max_length={r['max_length']}, the ner preset's budget (every document, "
                  "1 epoch). "
                  f"{provenance_text(r['measured'])}.", "",
                  table(["mode", "train windows", "train s", "test features", "truncated test docs", "entity F1",
                         "95% interval"],
                        [[mode, f"{m['train_features']:,}", f"{m['train_s']:.0f}", f"{m['features']:,}",
                          m["truncated"], f"{m['f1']:.4f}", f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]"]
                         for mode, m in r["modes"].items()]), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("imdb", "ner"))
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--ner-max-length", type=int, default=128)
    parser.add_argument("--fresh", action="store_true", help="re-run the runs already finished (else kept: a code "
                                                           "change that matters to them needs --fresh)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    saved = args.out / "long_inputs.json"
    result = json.loads(saved.read_text()) if saved.exists() else {}
    if args.only in (None, "imdb"):
        result["imdb"] = imdb(args.train, args.test)
        save(args.out, result)
    if args.only in (None, "ner"):
        result["ner"] = ner(args.ner_max_length)
        save(args.out, result)
    print(render(result))


def save(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "long_inputs.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "long_inputs.md").write_text(render(result))


if __name__ == "__main__":
    main()
