"""Baseline (b): the global padding of the first two tutorials (sarcasm headlines).

`tokenizer(all_headlines, padding=True)` pads every headline to the longest one in the whole
set, then the Trainer cuts fixed-size batches of that one shape (default collator, default
random sampler, fp32). Truncation at --max-length matches our stage's `data.max_length`, so both
sides see the same tokens. Only additions: the bench Meter and the thread pin.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
from measure import Meter, set_threads  # noqa: E402


def read_jsonl(path: str) -> tuple[list[str], list[int]]:
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [row["text"] for row in rows], [int(row["label"]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True, help="train.jsonl")
    parser.add_argument("--eval", required=True, help="held-out .jsonl for the final accuracy")
    parser.add_argument("--model", required=True)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=float, default=0.1, help="warmup_steps (< 1: a fraction)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-eval", action="store_true", help="skip the final accuracy (timing reps)")
    parser.add_argument("--output-dir", default="global-padding-out")
    args = parser.parse_args()
    set_threads()

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    train_headlines, train_labels = read_jsonl(args.train)
    eval_headlines, eval_labels = read_jsonl(args.eval)
    train_encoded = tokenizer(train_headlines, padding=True, truncation=True, max_length=args.max_length)
    eval_encoded = tokenizer(eval_headlines, padding=True, truncation=True, max_length=args.max_length)
    train_set = Dataset.from_dict({**train_encoded, "labels": train_labels})
    eval_set = Dataset.from_dict({**eval_encoded, "labels": eval_labels})
    # Seed before building the model, as run_glue.py does: the new head's initialisation follows
    # --seed like ours follows train.seed (unseeded, every seed shares torch's default-seeded head).
    set_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)

    def compute_metrics(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}

    training_args = TrainingArguments(
        output_dir=args.output_dir, learning_rate=args.lr, num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.eval_batch_size,
        weight_decay=args.weight_decay, warmup_steps=args.warmup, lr_scheduler_type="linear",
        seed=args.seed, eval_strategy="no", save_strategy="no", logging_steps=10, report_to="none",
        disable_tqdm=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=train_set, data_collator=default_data_collator,
                      compute_metrics=compute_metrics)
    meter = Meter().attach(trainer)
    result = trainer.train()
    metrics = {} if args.no_eval else trainer.evaluate(eval_set)
    meter.write(accuracy=metrics.get("eval_accuracy"), eval_examples=None if args.no_eval else len(eval_set),
                train_runtime=result.metrics["train_runtime"], padded_length=len(train_encoded["input_ids"][0]))
    print({"train": meter.summary(), "eval": metrics})


if __name__ == "__main__":
    main()
