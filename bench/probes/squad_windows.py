"""SQuAD v1.1 train windowed into features, timed: our QA family vs a plain per-question `map`.

    python bench/probes/squad_windows.py --mode ours --num-proc 2 [--limit N]   (prints JSON)

Modes (only the windowing is timed; loading the JSON is not; caching is off):
- plain: the tutorials' shape, `prepare_train_features` of the standard extractive-QA recipe
  written out here (question left-stripped, `only_second` truncation, max_length 384, doc_stride
  128, overflowing windows with offsets, start/end token positions), the tokenizer called once
  per question (`batch_size=1`: a non-batched map cannot return several windows per question);
- ours: the QA family's own `tokenize` (src/finetune/tasks/question_answering.py, what the
  tokenize stage runs: batched map, same windows plus the evaluation bookkeeping) with
  `data.num_proc` processes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path
from typing import Any

from datasets import Dataset, disable_caching
from transformers import AutoTokenizer

MAX_LENGTH, DOC_STRIDE = 384, 128
ROOT = Path(__file__).resolve().parents[2]


def load_squad(path: str, limit: int | None) -> Dataset:
    with gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8") as f:
        articles = json.load(f)["data"]
    rows = [{"id": qa["id"], "title": article["title"], "context": paragraph["context"], "question": qa["question"],
             "answers": {"text": [a["text"] for a in qa["answers"]],
                         "answer_start": [a["answer_start"] for a in qa["answers"]]}}
            for article in articles for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    dataset = Dataset.from_list(rows)
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
        answer = batch["answers"][sample]
        start_char = answer["answer_start"][0]
        end_char = start_char + len(answer["text"][0])
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
    parser.add_argument("--mode", choices=("plain", "ours"), required=True)
    parser.add_argument("--num-proc", default="1", help="ours: data.num_proc (an integer or auto)")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    disable_caching()  # every repetition tokenizes for real
    questions = load_squad(args.data, args.limit)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    if args.mode == "plain":
        def window() -> Any:
            return questions.map(prepare_features, fn_kwargs={"tokenizer": tokenizer}, batched=True,
                                 batch_size=1, remove_columns=questions.column_names)
    else:
        family = qa_family()
        questions = questions.cast(family.features())

        def window() -> Any:
            return family.codec.tokenize(questions, tokenizer, args.num_proc)[0]
    start = time.perf_counter()
    features = window()
    seconds = time.perf_counter() - start
    in_window = sum(1 for s in features["start_positions"] if s > 0)
    print(json.dumps({"mode": args.mode, "num_proc": args.num_proc, "questions": len(questions),
                      "features": len(features), "seconds": seconds, "features_per_s": len(features) / seconds,
                      "questions_per_s": len(questions) / seconds, "answer_in_window": in_window}))


def qa_family() -> Any:
    """Our QA family as the tokenize stage builds it (conf/ composed, windows 384 / stride 128)."""
    from finetune.config import compose
    from finetune.tasks import recipe

    cfg = compose(ROOT, ["task=qa", "model=minilm", f"data.max_length={MAX_LENGTH}", f"data.doc_stride={DOC_STRIDE}"])
    return recipe(cfg)


if __name__ == "__main__":
    main()
