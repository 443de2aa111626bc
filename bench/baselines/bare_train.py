"""The bare script that does our train stage's work, without the pipeline around it.

Same tokenized features (read from the tokenize stage's output), same model and attention
dropout, same TrainingArguments (given as JSON, as our stage resolved them: micro-batches, bf16),
stock `Trainer`; it saves the model and nothing else: no Hydra, no config checks, no history,
plots or summaries. Timing it against `stages/train.py` on identical work shows what the pipeline
costs on top.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from datasets import load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
from measure import Meter, set_threads  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", required=True, help="the tokenize stage's features/ folder")
    parser.add_argument("--model", required=True)
    parser.add_argument("--args", required=True, help="JSON file of TrainingArguments keywords")
    parser.add_argument("--pad-to-multiple-of", type=int, default=None)
    parser.add_argument("--attention-dropout", type=float, default=None)
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args()
    set_threads()

    kwargs = json.loads(Path(args.args).read_text())
    features = load_from_disk(args.features)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dropout = {} if args.attention_dropout is None else {"attention_probs_dropout_prob": args.attention_dropout}
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2, **dropout)

    def compute_metrics(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}

    trainer = Trainer(model=model, args=TrainingArguments(output_dir=f"{args.output_dir}/checkpoints", **kwargs),
                      train_dataset=features["train"], eval_dataset=features["validation"],
                      processing_class=tokenizer, compute_metrics=compute_metrics,
                      data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=args.pad_to_multiple_of))
    meter = Meter().attach(trainer)
    trainer.train()
    trainer.save_model(args.output_dir)
    meter.write()


if __name__ == "__main__":
    main()
