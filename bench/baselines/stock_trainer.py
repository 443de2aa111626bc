"""Baseline (a): the stock Trainer recipe of the tutorials, as users copy it.

Tokenize with truncation, pad each batch with DataCollatorWithPadding, the Trainer's default
random sampler, fp32, the Trainer's default optimizer, the model's own loss, the last epoch's
model (as `run_glue.py` / `run_classification.py` keep it). Only additions: the bench Meter
(training time and real tokens, measured the same way as for our stage), the thread pin, and
inputs as JSON Lines ({"text", "label"}, plus "text_pair" for sentence pairs) so that it trains on
exactly the examples our pipeline picked.

`--problem-type` as transformers names it: single-label (argmax), multi-label (a sigmoid per
label, predicted from 0.5, as `run_classification.py` does) or regression (one raw output). With
`--metrics-labels` the final scores are computed by finetune.tasks.classification.metrics, so that both sides are
scored by the same code.

`--pos-weight balanced` (multi-label only) replaces the model's unweighted BCE by BCE with one
positive weight per label, negatives / positives on the training set: the loss a user writes by
subclassing the Trainer when plain BCE leaves rare labels never predicted, and what our
`train.class_weights=balanced` computes. Without it, GoEmotions' stock recipe predicts no label.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
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
    parser.add_argument("--problem-type", default="single_label_classification",
                        choices=("single_label_classification", "multi_label_classification", "regression"))
    parser.add_argument("--num-labels", type=int, default=2)
    parser.add_argument("--metrics-labels", help="comma-separated label names: score with our classification metrics")
    parser.add_argument("--pos-weight", choices=("none", "balanced"), default="none",
                        help="multi-label: BCE positive weights per label (balanced: negatives / positives)")
    args = parser.parse_args()
    if args.pos_weight != "none" and args.problem_type != "multi_label_classification":
        parser.error("--pos-weight applies to --problem-type multi_label_classification")
    set_threads()

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    data = load_dataset("json", data_files={"train": args.train, "eval": args.eval})

    pairs = "text_pair" in data["train"].column_names

    def tokenize(batch):
        return tokenizer(batch["text"], batch["text_pair"] if pairs else None, truncation=True,
                         max_length=args.max_length)

    tokenized = data.map(tokenize, batched=True)
    # Seed before building the model, as run_glue.py does: the new head's initialisation follows
    # --seed like ours follows train.seed (unseeded, every seed shares torch's default-seeded head).
    set_seed(args.seed)
    if args.random_bert_base:
        model = AutoModelForSequenceClassification.from_config(BertConfig(num_labels=args.num_labels))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=args.num_labels,
                                                                   problem_type=args.problem_type)

    def compute_metrics(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}

    training_args = TrainingArguments(
        output_dir=args.output_dir, learning_rate=args.lr, num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.eval_batch_size,
        weight_decay=args.weight_decay, warmup_steps=args.warmup, lr_scheduler_type="linear",
        seed=args.seed, bf16=args.bf16, eval_strategy="no", save_strategy="no", logging_steps=10,
        report_to="none", disable_tqdm=True)
    trainer_class = weighted_trainer(data["train"]["label"]) if args.pos_weight == "balanced" else Trainer
    trainer = trainer_class(model=model, args=training_args, train_dataset=tokenized["train"],
                            processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                            compute_metrics=None if args.metrics_labels else compute_metrics)
    meter = Meter().attach(trainer)
    result = trainer.train()
    if args.metrics_labels and not args.no_eval:
        output = trainer.predict(tokenized["eval"])
        metrics = score(output.predictions, data["eval"]["label"], args.problem_type, args.metrics_labels.split(","))
    else:
        metrics = {} if args.no_eval else trainer.evaluate(tokenized["eval"])
    meter.write(accuracy=metrics.get("eval_accuracy", metrics.get("accuracy")),
                eval_examples=None if args.no_eval else len(data["eval"]),
                train_runtime=result.metrics["train_runtime"], metrics=metrics)
    print({"train": meter.summary(), "eval": metrics})


def weighted_trainer(targets: list) -> type:
    """A Trainer whose loss is BCE with positive weights negatives / positives per label."""
    import torch

    targets = np.asarray(targets, dtype=np.float64)
    positives = targets.sum(axis=0)
    weights = torch.tensor(np.where(positives > 0, (len(targets) - positives) / np.maximum(positives, 1), 1.0),
                           dtype=torch.float32)

    class WeightedTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits.float()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, labels.to(logits), pos_weight=weights.to(logits.device))
            return (loss, outputs) if return_outputs else loss

    return WeightedTrainer


def score(logits: np.ndarray, gold: list, problem_type: str, labels: list[str]) -> dict:
    """The metrics our evaluate stage reports, by the same functions, from the stock model's logits."""
    from finetune.tasks.classification import metrics

    logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits, dtype=np.float64)
    if problem_type == "regression":
        return metrics.regression_metrics(list(gold), logits[:, 0].tolist())
    if problem_type == "multi_label_classification":
        return metrics.multi_label_metrics(np.asarray(gold) > 0.5, 1 / (1 + np.exp(-logits)) >= 0.5, labels)
    return metrics.classification_metrics([labels[g] for g in gold], [labels[i] for i in logits.argmax(-1)], labels)


if __name__ == "__main__":
    main()
