"""Baseline (a): the stock Trainer recipe of the tutorials, as users copy it.

Tokenize with truncation, pad each batch with DataCollatorWithPadding, the Trainer's default
random sampler, fp32, the Trainer's default optimizer. Only additions: the bench Meter (training
time and real tokens, measured the same way as for our stage), the thread pin, and inputs as
JSON Lines ({"text", "label"}) so that it trains on exactly the examples our pipeline picked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from measure import Meter, set_threads  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True, help="train.jsonl")
    parser.add_argument("--eval", required=True, help="held-out .jsonl for the final accuracy")
    parser.add_argument("--model", required=True)
    parser.add_argument("--random-bert-base", action="store_true", help="a randomly initialised bert-base")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=float, default=0.1, help="warmup_steps (< 1: a fraction)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--no-eval", action="store_true", help="skip the final accuracy (timing reps)")
    parser.add_argument("--output-dir", default="stock-trainer-out")
    args = parser.parse_args()
    set_threads()

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    data = load_dataset("json", data_files={"train": args.train, "eval": args.eval})

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=args.max_length)

    tokenized = data.map(tokenize, batched=True)
    # Seed before building the model, as run_glue.py does: the new head's initialisation follows
    # --seed like ours follows train.seed (unseeded, every seed shares torch's default-seeded head).
    set_seed(args.seed)
    if args.random_bert_base:
        model = AutoModelForSequenceClassification.from_config(BertConfig(num_labels=2))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)

    def compute_metrics(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}

    training_args = TrainingArguments(
        output_dir=args.output_dir, learning_rate=args.lr, num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.eval_batch_size,
        weight_decay=args.weight_decay, warmup_steps=args.warmup, lr_scheduler_type="linear",
        seed=args.seed, bf16=args.bf16, eval_strategy="no", save_strategy="no", logging_steps=10,
        report_to="none", disable_tqdm=True)
    trainer = Trainer(model=model, args=training_args, train_dataset=tokenized["train"],
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=compute_metrics)
    meter = Meter().attach(trainer)
    result = trainer.train()
    metrics = {} if args.no_eval else trainer.evaluate(tokenized["eval"])
    meter.write(accuracy=metrics.get("eval_accuracy"), eval_examples=None if args.no_eval else len(data["eval"]),
                train_runtime=result.metrics["train_runtime"])
    print({"train": meter.summary(), "eval": metrics})


if __name__ == "__main__":
    main()
