"""Sequence classification: one label per text or per sentence pair (IMDB sentiment, sarcasm
headlines, GLUE MRPC, any table). `task.problem_type` picks the kind of target, with the names
transformers gives them: `single_label_classification` (here), `multi_label_classification`
(tasks/multi_label.py) and `regression` (tasks/regression.py); they share reading and encoding.

A pair (`data.text_pair_column` set) is encoded as one input with segment ids; a pair too long
for `data.max_length` loses tokens from its longer side first.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

from finetune import metrics as metric_fns
from finetune.data.readers import detect_format, read_records, require_field
from finetune.errors import DataError, FinetuneError
from finetune.tasks import base
from finetune.tasks.base import Prediction, TaskFamily, logits_of, setting, softmax, truncated_flags

PROBLEM_TYPES = {"single_label_classification": "classification", "multi_label_classification": "multi_label",
                 "regression": "regression"}  # problem type -> module in this package
LOWER_IS_BETTER = {"mse", "mae", "loss"}


@dataclasses.dataclass(frozen=True)
class Settings(base.Settings):
    text_pair_column: str | None = setting("data.text_pair_column", None)  # set: sentence pairs
    problem_type: str = setting("task.problem_type", "single_label_classification")
    metric: str | None = setting("task.metric", None)  # the primary metric; None: the problem type's default
    threshold: float | list[float] = setting("task.threshold", 0.5)  # multi-label: one, or one per label


class Family(TaskFamily):
    name = "classification"
    auto_model = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"
    Settings = Settings
    #: metrics `score` returns that may be the primary one; the first is the default
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy", "f1", "precision", "recall")

    @classmethod
    def variant(cls, settings: base.Settings) -> type[TaskFamily]:
        import importlib

        problem = getattr(settings, "problem_type", None)
        if problem not in PROBLEM_TYPES:
            raise FinetuneError(f"task.problem_type: '{problem}' is not one of {', '.join(PROBLEM_TYPES)}")
        return importlib.import_module(f"finetune.tasks.{PROBLEM_TYPES[problem]}").Family

    def __init__(self, settings: Settings, cfg: Any = None):
        super().__init__(settings, cfg)
        metric = settings.metric or self.metric_names[0]
        if metric not in self.metric_names:
            raise FinetuneError(f"task.metric: '{metric}' is not a {settings.problem_type} metric "
                                f"(choose from {', '.join(self.metric_names)})")
        self.primary_metric = metric
        self.greater_is_better = metric not in LOWER_IS_BETTER

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
        for where, row in read_records(path, detect_format(path, fmt), quoting=data.get("quoting"), columns=columns,
                                       encoding=data.get("encoding")):
            if split_column is not None and str(require_field(path, where, row, split_column)) != split:
                continue
            texts = {}
            for field, column in text_columns.items():
                texts[field] = require_field(path, where, row, column)
                if not isinstance(texts[field], str):
                    raise DataError(path, f"expected text, got {type(texts[field]).__name__}", where=where,
                                    field=column)
                if not texts[field].strip():
                    raise DataError(path, "empty text", where=where, field=column)
            ident = row.get(data.id_column) if data.id_column else None
            examples.append({"id": str(ident if ident is not None else len(examples)), **texts,
                             "label": self.read_label(path, where, row), "_where": f"{path}, {where}"})
        return examples

    def read_label(self, path: Path, where: str, row: dict[str, Any]) -> Any:
        """The raw label of one source row (checked and encoded later by `encode_labels`)."""
        column = self.cfg.data.label_column
        label = require_field(path, where, row, column)
        if label is None or (isinstance(label, str) and not label.strip()):
            raise DataError(path, "empty label", where=where, field=column)
        return label

    def from_hub(self, dataset: Any, split: str) -> list[dict[str, Any]]:
        data = self.cfg.data
        feature = dataset.features.get(data.label_column)
        names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)

        def named(value: Any) -> Any:
            if isinstance(value, list):
                return [named(v) for v in value]
            return names[value] if names else value

        pair = {"text_pair": data.text_pair_column} if self.pairs else {}
        return [{"id": str(i), "text": row[data.text_column], **{k: row[c] for k, c in pair.items()},
                 "label": named(row[data.label_column]), "_where": f"hub:{split} row {i + 1}"}
                for i, row in enumerate(dataset)]

    def features(self, labels: list[str] | None) -> Any:
        from datasets import Features, Value

        pair = {"text_pair": Value("string")} if self.pairs else {}
        return Features({"id": Value("string"), "text": Value("string"), **pair, "label": self.label_feature(labels)})

    def label_feature(self, labels: list[str] | None) -> Any:
        from datasets import ClassLabel

        return ClassLabel(names=labels)

    def labels(self, splits: dict[str, list[dict[str, Any]]]) -> list[str]:
        if self.cfg.task.get("labels"):
            return [str(label) for label in self.cfg.task.labels]
        found = {str(example["label"]) for example in splits["train"]}
        numbers = [as_number(label) for label in found]
        if all(n is not None for n in numbers) and any(not n.is_integer() for n in numbers):
            example = next(label for label, n in zip(found, numbers, strict=True) if not n.is_integer())
            raise DataError(splits["train"][0]["_where"].split(", ")[0],
                            f"labels such as {example!r} look like a numeric target: set "
                            "task.problem_type=regression (or list the classes in task.labels)",
                            field=self.cfg.data.label_column)
        if len(found) < 2:  # one output would make transformers treat the head as a regression
            raise DataError(splits["train"][0]["_where"].split(", ")[0],
                            f"the train split holds one label only ({', '.join(found)}): a classifier needs "
                            "two or more; list them in task.labels if the others are absent here",
                            field=self.cfg.data.label_column)
        return sorted(found)

    def encode_labels(self, examples: list[dict[str, Any]], labels: list[str] | None, *,
                      file: str, split: str) -> list[dict[str, Any]]:
        index = {label: i for i, label in enumerate(labels or [])}
        for example in examples:
            example["label"] = self.encode_label(example["label"], index, example["_where"])
        return examples

    def encode_label(self, value: Any, index: dict[str, int], where: str) -> Any:
        """One raw label as the model's target (here a class id), else a DataError."""
        field = self.cfg.data.label_column
        if isinstance(value, list):
            raise DataError(where, f"label {value!r} is a list: set task.problem_type=multi_label_classification",
                            field=field)
        return label_id(value, index, where, field)

    # -- model ------------------------------------------------------------------------------
    def model_kwargs(self, labels: list[str] | None) -> dict[str, Any]:
        # Said explicitly: with one label transformers would otherwise infer regression.
        return super().model_kwargs(labels) | {"problem_type": self.settings.problem_type}

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

    def loss(self, train_features: Any, labels: list[str] | None, train_cfg: Any) -> Any:
        """Cross-entropy weighted per class (`train.class_weights`: balanced or a list), else None
        (the model's own loss; `label_smoothing_factor` then goes through the Trainer)."""
        weights = self.class_weights(train_features, labels, train_cfg.get("class_weights"))
        if weights is None:
            return None
        import torch

        criterion = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32),
                                              label_smoothing=float(train_cfg.get("label_smoothing_factor") or 0))
        return lambda outputs, target, **_: criterion(outputs["logits"].float(), target.to(outputs["logits"].device))

    def class_weights(self, train_features: Any, labels: list[str] | None, spec: Any) -> list[float] | None:
        """Per-class loss weights: `balanced` = n / (classes x count), as scikit-learn's."""
        if spec is None:
            return None
        size = len(labels or [])
        if spec == "balanced":
            import numpy as np

            counts = np.bincount(np.asarray(train_features["labels"]), minlength=size)
            return (len(train_features) / (size * np.maximum(counts, 1))).round(6).tolist()
        return explicit_weights(spec, labels)

    # -- predictions and scores -------------------------------------------------------------
    def decode(self, examples: Any, features: Any, outputs: Any, labels: list[str] | None) -> list[Prediction]:
        logits = logits_of(outputs)
        if len(logits) != len(examples):
            raise FinetuneError(f"{len(logits)} predictions for {len(examples)} examples")
        names = labels or [str(i) for i in range(logits.shape[1])]
        predictions = []
        for ident, row, cut in zip(examples["id"], self.predict_rows(logits, names), truncated_flags(features),
                                   strict=True):
            prediction = {"id": ident, **row}
            if cut:
                prediction["truncated"] = True  # the model saw the first data.max_length tokens only
            predictions.append(prediction)
        return predictions

    def predict_rows(self, logits: Any, names: list[str]) -> list[dict[str, Any]]:
        """The user-facing fields of each row of logits: label, its probability, every class's."""
        return [{"label": names[int(p.argmax())], "score": round(float(p.max()), 6),
                 "probabilities": {name: round(float(q), 6) for name, q in zip(names, p, strict=True)}}
                for p in softmax(logits)]

    def score(self, examples: Any, predictions: list[Prediction], labels: list[str] | None) -> dict[str, Any]:
        gold = [labels[i] for i in examples["label"]] if labels else [str(i) for i in examples["label"]]
        return metric_fns.classification_metrics(gold, [p["label"] for p in predictions], labels)

    def gold(self, value: Any, labels: list[str]) -> Any:
        """A stored target as written beside its prediction."""
        return labels[value]

    def write_predictions(self, examples: Any, predictions: list[Prediction], labels: list[str] | None,
                          out_dir: Path) -> list[Path]:
        from finetune.io import atomic_file

        names = labels or []
        path = out_dir / "predictions.jsonl"
        with atomic_file(path, encoding="utf-8") as handle:
            for gold, prediction in zip(examples["label"], predictions, strict=True):
                handle.write(json.dumps({"gold": self.gold(gold, names), **prediction}, ensure_ascii=False) + "\n")
        return [path]

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              labels: list[str] | None, out_dir: Path) -> list[Path]:
        from finetune import plots

        return [plots.confusion_matrix(metrics["confusion_matrix"], labels, out_dir / "confusion_matrix.png",
                                       title=f"{self.settings.task}: confusion matrix")]


def label_id(value: Any, index: dict[str, int], where: str, field: str) -> int:
    """A label name or integer id (3, 3.0, "3") as an id into `index`'s labels, else a DataError."""
    if isinstance(value, bool) or not isinstance(value, (int, str, float)):
        raise DataError(where, f"label {value!r} is not a string or integer", field=field)
    if str(value) in index:
        return index[str(value)]
    number = as_number(value)
    if number is not None and number.is_integer() and 0 <= number < len(index):
        return int(number)  # an integer id into the configured label names
    raise DataError(where, f"label {value!r} is not in the label set {list(index)}", field=field)


def explicit_weights(spec: Any, labels: list[str] | None) -> list[float]:
    """`train.class_weights` given as a list: one positive number per label."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(spec) if OmegaConf.is_config(spec) else spec
    size = len(labels or [])
    if not isinstance(values, list) or len(values) != size or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        raise FinetuneError(f"train.class_weights: expected 'balanced' or {size} positive numbers "
                            f"(one per label: {labels}), got {values!r}")
    return [float(v) for v in values]


def as_number(value: Any) -> float | None:
    """`value` as a float if it is a number or a numeric string, else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
