"""Encoding and decoding of sequence classification: one label, a set of labels or a number per
text or sentence pair.

A pair (`data.text_pair_column` set) is encoded as one input with segment ids; a pair too long
for `data.max_length` loses tokens from its longer side first.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from finetune.checks import number, one_of, per_label, text
from finetune.errors import FinetuneError
from finetune.tasks import interface
from finetune.tasks.interface import Codec, Prediction, column_total, logits_of, map_batches, setting, truncated_flags
from finetune.temperature import probabilities

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


@dataclasses.dataclass(frozen=True)
class Settings(interface.Settings):
    retired: ClassVar[tuple[str, ...]] = ("metric",)  # the primary metric is the recipe's option now
    text_pair_column: str | None = setting("data.text_pair_column", text(null=True))  # set: sentence pairs
    problem_type: str = setting("task.problem_type", one_of(*PROBLEM_TYPES))
    threshold: float | list[float] = setting("task.threshold",  # multi-label: one, or one per label
                                             per_label(number(0, 1, low_open=True, high_open=True)))
    # divides the logits before the softmax / sigmoid; the evaluate stage fits it on validation
    temperature: float = setting("task.temperature", number(0, low_open=True), default=1.0)


class LabelCodec(Codec):
    """One label per input: the softmax's most likely class."""

    family = "classification"
    auto_model = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"
    Settings = Settings
    settings: Settings

    @property
    def pairs(self) -> bool:
        return self.settings.text_pair_column is not None

    @property
    def input_fields(self) -> tuple[str, ...]:
        return ("text", "text_pair") if self.pairs else ("text",)

    def tokenize(self, examples: Any, tokenizer: Any, num_proc: int | str = 1) -> tuple[Any, dict[str, Any]]:
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

        features = map_batches(examples, encode,
                               [c for c in ("text", "text_pair", "label") if c in examples.column_names], num_proc)
        truncated = column_total(features, "truncated")
        return features, {"examples": len(examples), "features": len(features), "truncated": truncated,
                          "tokens": column_total(features, "length")}

    def decode(self, examples: Any, features: Any, outputs: Any) -> list[Prediction]:
        logits = logits_of(outputs)
        if len(logits) != len(examples):
            raise FinetuneError(f"{len(logits)} predictions for {len(examples)} examples")
        names = self.labels or [str(i) for i in range(logits.shape[1])]
        predictions = []
        for ident, row, cut in zip(examples["id"], self.predict_rows(logits, names), truncated_flags(features),
                                   strict=True):
            prediction = {"id": ident, **row}
            if cut:
                prediction["truncated"] = True  # the model saw the first data.max_length tokens only
            predictions.append(prediction)
        return predictions

    def probabilities(self, logits: Any) -> np.ndarray:
        """The (temperature-scaled) probabilities of each row of logits."""
        return probabilities(logits, "softmax", self.settings.temperature)

    def predict_rows(self, logits: Any, names: list[str]) -> list[dict[str, Any]]:
        """The user-facing fields of each row of logits: label, its probability, every class's."""
        return [{"label": names[int(p.argmax())], "score": round(float(p.max()), 6),
                 "probabilities": {name: round(float(q), 6) for name, q in zip(names, p, strict=True)}}
                for p in self.probabilities(logits)]


class LabelSetCodec(LabelCodec):
    """A set of labels per input: each label whose sigmoid reaches its threshold."""

    def thresholds(self, size: int) -> np.ndarray:
        value = self.settings.threshold
        values = np.asarray(value if isinstance(value, list) else [value] * size, dtype=np.float64)
        if values.shape != (size,):
            raise FinetuneError(f"task.threshold: {len(values)} values for {size} labels")
        return values

    def probabilities(self, logits: Any) -> np.ndarray:
        return probabilities(logits, "sigmoid", self.settings.temperature)

    def predict_rows(self, logits: Any, names: list[str]) -> list[dict[str, Any]]:
        scores = self.probabilities(logits)
        chosen = scores >= self.thresholds(len(names))
        rows = []
        for p, on in zip(scores, chosen, strict=True):
            order = sorted(np.flatnonzero(on), key=lambda j: -p[j])
            rows.append({"labels": [names[j] for j in order],
                         "probabilities": {name: round(float(q), 6) for name, q in zip(names, p, strict=True)}})
        return rows


class NumberCodec(LabelCodec):
    """One number per input: the single output unit."""

    def predict_rows(self, logits: Any, names: list[str]) -> list[dict[str, Any]]:
        return [{"value": round(float(row[0]), 6)} for row in logits]


CODECS = {"single_label_classification": LabelCodec, "multi_label_classification": LabelSetCodec,
          "regression": NumberCodec}

