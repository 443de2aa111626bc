"""SQuAD v1.1 train windowed into features, timed: our way vs a plain per-example `map`.

    python bench/squad_windows.py --mode batched --num-proc 2 [--limit N]   (prints JSON)

`prepare_features` mirrors the standard extractive-QA windowing of the transformers examples
(run_qa.py's prepare_train_features): question first (left-stripped), `only_second` truncation
of the context, max_length 384, doc_stride 128, overflowing windows with offsets, start/end
token positions of the answer (CLS when the answer is outside the window). No padding: batches
are padded later by the collator. It stands alone here because the QA family module
(src/finetune/tasks/question_answering.py) is being written separately; it should match it.

Modes (only `Dataset.map` is timed; loading the JSON is not):
- plain: single process, the tokenizer called once per question (`batch_size=1`; a non-batched
  map cannot return several windows for one question, so this is the per-example form);
- batched: `batched=True` (1000 questions per call), `num_proc` processes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from typing import Any

from datasets import Dataset, disable_caching
from transformers import AutoTokenizer

MAX_LENGTH, DOC_STRIDE = 384, 128


def load_squad(path: str, limit: int | None) -> Dataset:
    with gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8") as f:
        articles = json.load(f)["data"]
    rows: dict[str, list[Any]] = {"id": [], "question": [], "context": [], "answer_start": [], "answer_text": []}
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows["id"].append(qa["id"])
                rows["question"].append(qa["question"])
                rows["context"].append(paragraph["context"])
                rows["answer_start"].append(qa["answers"][0]["answer_start"])
                rows["answer_text"].append(qa["answers"][0]["text"])
    dataset = Dataset.from_dict(rows)
    return dataset.select(range(min(limit, len(dataset)))) if limit else dataset


def prepare_features(batch: dict[str, list[Any]], tokenizer: Any) -> dict[str, list[Any]]:
    """Windows of (question, context) with answer start/end token positions."""
    encoded = tokenizer([q.lstrip() for q in batch["question"]], batch["context"], truncation="only_second",
                        max_length=MAX_LENGTH, stride=DOC_STRIDE, return_overflowing_tokens=True,
                        return_offsets_mapping=True)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    starts, ends, example_ids = [], [], []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        sample = sample_map[i]
        example_ids.append(batch["id"][sample])
        start_char = batch["answer_start"][sample]
        end_char = start_char + len(batch["answer_text"][sample])
        sequence_ids = encoded.sequence_ids(i)
        first = sequence_ids.index(1)
        last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
        if offsets[first][0] > start_char or offsets[last][1] < end_char:
            starts.append(0)
            ends.append(0)
            continue
        token = first
        while token <= last and offsets[token][0] <= start_char:
            token += 1
        starts.append(token - 1)
        token = last
        while token >= first and offsets[token][1] >= end_char:
            token -= 1
        ends.append(token + 1)
    encoded["start_positions"], encoded["end_positions"], encoded["example_id"] = starts, ends, example_ids
    return encoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--mode", choices=("plain", "batched"), required=True)
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    disable_caching()  # every repetition tokenizes for real
    questions = load_squad(args.data, args.limit)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    columns = questions.column_names
    start = time.perf_counter()
    if args.mode == "plain":
        features = questions.map(prepare_features, fn_kwargs={"tokenizer": tokenizer}, batched=True,
                                 batch_size=1, remove_columns=columns)
    else:
        features = questions.map(prepare_features, fn_kwargs={"tokenizer": tokenizer}, batched=True,
                                 batch_size=1000, num_proc=args.num_proc if args.num_proc > 1 else None,
                                 remove_columns=columns)
    seconds = time.perf_counter() - start
    print(json.dumps({"mode": args.mode, "num_proc": args.num_proc, "questions": len(questions),
                      "features": len(features), "seconds": seconds, "features_per_s": len(features) / seconds,
                      "questions_per_s": len(questions) / seconds,
                      "answer_in_window": sum(1 for s in features["start_positions"] if s > 0)}))


if __name__ == "__main__":
    main()
