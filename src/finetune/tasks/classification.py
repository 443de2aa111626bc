"""Sequence classification: one label per text or per sentence pair (IMDB sentiment, sarcasm
headlines, GLUE MRPC, any table).

A pair (`data.text_pair_column` set) is encoded as one input with segment ids; a pair too long
for `data.max_length` loses tokens from its longer side first.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from finetune import metrics as metric_fns
from finetune.data.readers import detect_format, read_records, require_field
from finetune.errors import DataError, FinetuneError
from finetune.tasks import base
from finetune.tasks.base import Prediction, TaskFamily, logits_of, setting, softmax, truncated_flags


@dataclasses.dataclass(frozen=True)
class Settings(base.Settings):
    text_pair_column: str | None = setting("data.text_pair_column", None)  # set: sentence pairs


class Family(TaskFamily):
    name = "classification"
    auto_model = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"
    primary_metric = "accuracy"
    Settings = Settings

    @property
    def pairs(self) -> bool:
        return self.settings.text_pair_column is not None

    @property
    def input_fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("text", "text_pair") if self.pairs else ("text",)

    # -- data -------------------------------------------------------------------------------
    def read(self, path: Path, fmt: str, split: str) -> list[dict[str, Any]]:
        data = self.cfg.data
        split_column = data.split_column
        text_columns = {"text": data.text_column} | ({"text_pair": data.text_pair_column} if self.pairs else {})
        columns = list(data.columns) if data.get("columns") else None
        examples = []
        for where, row in read_records(path, detect_format(path, fmt), quoting=data.get("quoting"), columns=columns):
            if split_column is not None and str(require_field(path, where, row, split_column)) != split:
                continue
            texts = {}
            for field, column in text_columns.items():
                texts[field] = require_field(path, where, row, column)
                if not isinstance(texts[field], str) or not texts[field].strip():
                    raise DataError(path, "empty text", where=where, field=column)
            label = require_field(path, where, row, data.label_column)
            if label is None or (isinstance(label, str) and not label.strip()):
                raise DataError(path, "empty label", where=where, field=data.label_column)
            ident = row.get(data.id_column) if data.id_column else None
            examples.append({"id": str(ident if ident is not None else len(examples)), **texts,
                             "label": label, "_where": f"{path}, {where}"})
        return examples

    def from_hub(self, dataset: Any, split: str) -> list[dict[str, Any]]:
        data = self.cfg.data
        names = getattr(dataset.features.get(data.label_column), "names", None)
        pair = {"text_pair": data.text_pair_column} if self.pairs else {}
        return [{"id": str(i), "text": row[data.text_column], **{k: row[c] for k, c in pair.items()},
                 "label": names[row[data.label_column]] if names else row[data.label_column],
                 "_where": f"hub:{split} row {i + 1}"} for i, row in enumerate(dataset)]

    def features(self, labels: list[str] | None) -> Any:
        from datasets import ClassLabel, Features, Value

        pair = {"text_pair": Value("string")} if self.pairs else {}
        return Features({"id": Value("string"), "text": Value("string"), **pair, "label": ClassLabel(names=labels)})

    def labels(self, splits: dict[str, list[dict[str, Any]]]) -> list[str]:
        if self.cfg.task.get("labels"):
            return [str(label) for label in self.cfg.task.labels]
        return sorted({str(example["label"]) for example in splits["train"]})

    def encode_labels(self, examples: list[dict[str, Any]], labels: list[str] | None, *,
                      file: str, split: str) -> list[dict[str, Any]]:
        index = {label: i for i, label in enumerate(labels or [])}
        for example in examples:
            value = example["label"]
            if isinstance(value, bool) or not isinstance(value, (int, str, float)):
                raise DataError(example["_where"], f"label {value!r} is not a string or integer",
                                field=self.cfg.data.label_column)
            as_id = _integer(value)
            if str(value) in index:
                example["label"] = index[str(value)]
            elif as_id is not None and 0 <= as_id < len(index):
                example["label"] = as_id  # an integer id (1 or "1") into the configured label names
            else:
                raise DataError(example["_where"], f"label {value!r} is not in the label set {labels}",
                                field=self.cfg.data.label_column)
        return examples

    # -- model ------------------------------------------------------------------------------
    def model_kwargs(self, labels: list[str] | None) -> dict[str, Any]:
        # Said explicitly: with one label transformers would otherwise infer regression.
        return super().model_kwargs(labels) | {"problem_type": "single_label_classification"}

    def tokenize(self, examples: Any, tokenizer: Any, labels: list[str] | None) -> tuple[Any, dict[str, Any]]:
        max_length = int(self.settings.max_length)
        gold = "label" in examples.column_names

        pairs = self.pairs

        def encode(batch: dict[str, list]) -> dict[str, list]:
            # Encode in full first to count truncation, then re-encode only the long texts (a pair:
            # `longest_first`, the longer side loses tokens first).
            second = batch["text_pair"] if pairs else None
            encoded = tokenizer(batch["text"], second, truncation=False, verbose=False)
            long = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) > max_length]
            if long:
                cut = tokenizer([batch["text"][i] for i in long], [second[i] for i in long] if pairs else None,
                                truncation="longest_first", max_length=max_length)
                for key in encoded:
                    for j, i in enumerate(long):
                        encoded[key][i] = cut[key][j]
            if gold:
                encoded["labels"] = batch["label"]
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            truncated = set(long)
            encoded["truncated"] = [i in truncated for i in range(len(batch["text"]))]
            return encoded

        features = self.map_batches(examples, encode,
                                    [c for c in ("text", "text_pair", "label") if c in examples.column_names])
        truncated = int(sum(features["truncated"]))
        return features, {"examples": len(examples), "features": len(features), "truncated": truncated,
                          "tokens": int(sum(features["length"]))}

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    # -- predictions and scores -------------------------------------------------------------
    def decode(self, examples: Any, features: Any, outputs: Any, labels: list[str] | None) -> list[Prediction]:
        probs = softmax(logits_of(outputs))
        if len(probs) != len(examples):
            raise FinetuneError(f"{len(probs)} predictions for {len(examples)} examples")
        names = labels or [str(i) for i in range(probs.shape[1])]
        predictions = []
        for ident, p, cut in zip(examples["id"], probs, truncated_flags(features), strict=True):
            prediction = {"id": ident, "label": names[int(p.argmax())], "score": round(float(p.max()), 6),
                          "probabilities": {name: round(float(q), 6) for name, q in zip(names, p, strict=True)}}
            if cut:
                prediction["truncated"] = True  # the model saw the first data.max_length tokens only
            predictions.append(prediction)
        return predictions

    def score(self, examples: Any, predictions: list[Prediction], labels: list[str] | None) -> dict[str, Any]:
        gold = [labels[i] for i in examples["label"]] if labels else [str(i) for i in examples["label"]]
        return metric_fns.classification_metrics(gold, [p["label"] for p in predictions], labels)

    def write_predictions(self, examples: Any, predictions: list[Prediction], out_dir: Path) -> list[Path]:
        from finetune.io import atomic_file

        names = list(examples.features["label"].names)
        path = out_dir / "predictions.jsonl"
        with atomic_file(path, encoding="utf-8") as handle:
            for gold, prediction in zip(examples["label"], predictions, strict=True):
                handle.write(json.dumps({"gold": names[gold], **prediction}, ensure_ascii=False) + "\n")
        return [path]

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              labels: list[str] | None, out_dir: Path) -> list[Path]:
        from finetune import plots

        return [plots.confusion_matrix(metrics["confusion_matrix"], labels, out_dir / "confusion_matrix.png",
                                       title=f"{self.settings.task}: confusion matrix")]


def _integer(value: Any) -> int | None:
    """`value` as an integer id if it is one (3, 3.0, "3"), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None
