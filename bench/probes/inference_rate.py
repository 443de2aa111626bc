"""One inference backend on one export, in its own process (run by bench/inference.py).

    python bench/probes/inference_rate.py EXPORT BACKEND --speed TEXTS_FILE --batches N
    python bench/probes/inference_rate.py EXPORT BACKEND --metric TOKENIZED_DIR --split test

BACKEND: torch-fp32, torch-bf16, onnx (fp32), onnx-int8. --speed times the model on batches of
32 rows of exactly 128 real tokens (no padding) cut from the texts' tokens; --metric predicts on
the split's examples through the export's decoder and scores them. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROWS, TOKENS = 32, 128


def predictor(export: str, backend: str):  # noqa: ANN201
    from finetune.inference import Predictor

    threads = int(os.environ.get("BENCH_THREADS", "0")) or None
    if backend.startswith("torch"):
        return Predictor(export, backend="torch", precision=backend.split("-")[1], threads=threads)
    return Predictor(export, backend=backend, threads=threads)


def speed(model, texts_file: Path, batches: int) -> dict:  # noqa: ANN001
    tokenizer = model.tokenizer
    rows = []
    for text in json.loads(texts_file.read_text()):
        ids = tokenizer(text, truncation=False, verbose=False)["input_ids"]
        if len(ids) >= TOKENS:
            rows.append(ids[:TOKENS - 1] + [tokenizer.sep_token_id])
        if len(rows) == ROWS * batches:
            break
    if len(rows) < ROWS * batches:
        raise SystemExit(f"only {len(rows)} texts of >= {TOKENS} tokens in {texts_file}")
    data = np.array(rows, dtype=np.int64)
    feeds = [{"input_ids": data[i:i + ROWS], "attention_mask": np.ones((ROWS, TOKENS), dtype=np.int64),
              "token_type_ids": np.zeros((ROWS, TOKENS), dtype=np.int64)} for i in range(0, len(data), ROWS)]
    for feed in feeds[:2]:  # warm-up: kernel selection, allocator
        model.backend(feed)
    times = []
    for feed in feeds:
        start = time.perf_counter()
        model.backend(feed)
        times.append(time.perf_counter() - start)
    per_batch = statistics.median(times)
    return {"texts_per_s": ROWS / per_batch, "batch_seconds": times}


def metric(model, tokenized: Path, split: str) -> dict:  # noqa: ANN001
    import datasets

    examples = datasets.load_from_disk(str(tokenized / "examples"))[split]
    start = time.perf_counter()
    predictions = model.predict_examples(examples)
    seconds = time.perf_counter() - start
    from finetune.config import compose
    from finetune.inference import read_spec
    from finetune.tasks import recipe

    spec = read_spec(model.folder)  # the export's task: its recipe scores as the evaluate stage does
    cfg = compose(Path(__file__).resolve().parents[2], [f"task={spec['task']}", f"model={spec['model']}"])
    family = recipe(cfg, model.codec)
    scores = family.score(examples, predictions)
    return {"metric": family.primary_metric, "value": scores[family.primary_metric],
            "examples": len(examples), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("export")
    parser.add_argument("backend", choices=("torch-fp32", "torch-bf16", "onnx", "onnx-int8"))
    parser.add_argument("--speed", type=Path)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--metric", type=Path)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    model = predictor(args.export, args.backend)
    out = speed(model, args.speed, args.batches) if args.speed else metric(model, args.metric, args.split)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
