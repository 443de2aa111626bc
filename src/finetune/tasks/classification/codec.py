"""Encoding and decoding of sequence classification: one label, a set of labels or a number per
text or sentence pair.

A pair (`data.text_pair_column` set) is encoded as one input with segment ids; a pair too long
for `data.max_length` loses tokens from its longer side first.

A single text longer than `data.max_length` is read as `data.long_inputs` says: `truncate` keeps
its first tokens; `head_tail` its first HEAD_SHARE and its last tokens; `windows` cuts it into
overlapping windows (`data.doc_stride` tokens shared), each trained with the text's label, and
the text's prediction is the mean of its windows' logits.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from finetune.checks import integer, number, one_of, per_label, text
from finetune.errors import FinetuneError
from finetune.tasks import interface
from finetune.tasks.interface import (
    LONG_INPUTS,
    WINDOW_OF,
    Codec,
    Prediction,
    check_stride,
    column_total,
    cut_windows,
    logits_of,
    map_batches,
    multi_window,
    setting,
    special_edges,
    truncated_flags,
    windows_of,
)
from finetune.temperature import probabilities

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
# head_tail: the share of data.max_length taken from the start of a long text, the rest from its end
# (128 + 382 of 512 tokens classified IMDB best in Sun et al. 2019, "How to Fine-Tune BERT for Text
# Classification?")
HEAD_SHARE = 0.25


@dataclasses.dataclass(frozen=True)
class Settings(interface.Settings):
    retired: ClassVar[tuple[str, ...]] = ("metric",)  # the primary metric is the recipe's option now
    text_pair_column: str | None = setting("data.text_pair_column", text(null=True))  # set: sentence pairs
    problem_type: str = setting("task.problem_type", one_of(*PROBLEM_TYPES))
    threshold: float | list[float] = setting("task.threshold",  # multi-label: one, or one per label
                                             per_label(number(0, 1, low_open=True, high_open=True)))
    # divides the logits before the softmax / sigmoid; the evaluate stage fits it on validation
    temperature: float = setting("task.temperature", number(0, low_open=True), default=1.0)
    long_inputs: str = setting("data.long_inputs", one_of(*LONG_INPUTS), default="truncate")
    doc_stride: int = setting("data.doc_stride", integer(0), default=64)  # windows: tokens neighbours share


class LabelCodec(Codec):
    """One label per input: the softmax's most likely class."""

    family = "classification"
    auto_model = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"
    peft_task_type = "SEQ_CLS"
    Settings = Settings
    settings: Settings

    @property
    def pairs(self) -> bool:
        return self.settings.text_pair_column is not None

    @property
    def input_fields(self) -> tuple[str, ...]:
        return ("text", "text_pair") if self.pairs else ("text",)

    def tokenize(self, examples: Any, tokenizer: Any, num_proc: int | str = 1) -> tuple[Any, dict[str, Any]]:
        settings = self.settings
        max_length, mode = int(settings.max_length), settings.long_inputs
        gold = "label" in examples.column_names
        pairs = self.pairs
        if pairs and mode != "truncate":
            raise FinetuneError(f"data.long_inputs={mode} reads single texts; sentence pairs are truncated "
                                "(their longer side first): set data.long_inputs=truncate")
        if mode == "windows":
            check_stride(settings.doc_stride, max_length, tokenizer)
            edges = special_edges(tokenizer)

        def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            # Encode in full first to count what is long, then re-encode (or cut) only the long texts.
            second = batch["text_pair"] if pairs else None
            encoded = tokenizer(batch["text"], second, truncation=False, verbose=False)
            long = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) > max_length]
            owners = list(range(len(batch["text"])))
            if long and mode == "windows":
                encoded, owners = _windows(encoded, long, edges, max_length, settings.doc_stride)
            elif long and mode == "head_tail":
                head = max(1, round(max_length * HEAD_SHARE))  # the start's special tokens stay in the head,
                for key in encoded:  # the end's in the tail
                    for i in long:
                        encoded[key][i] = encoded[key][i][:head] + encoded[key][i][head - max_length:]
            elif long:  # a pair: `longest_first`, the longer side loses tokens first
                cut = tokenizer([batch["text"][i] for i in long], [second[i] for i in long] if pairs else None,
                                truncation="longest_first", max_length=max_length)
                for key in encoded:
                    for j, i in enumerate(long):
                        encoded[key][i] = cut[key][j]
            encoded = dict(encoded)
            if gold:
                encoded["labels"] = [batch["label"][i] for i in owners]
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            if mode == "windows":  # which text each window reads (decode gathers them)
                encoded[WINDOW_OF] = [indices[i] for i in owners]
            cut = set(long) if mode != "windows" else set()
            encoded["truncated"] = [i in cut for i in owners]
            return encoded

        features = map_batches(examples, encode, examples.column_names, num_proc, with_indices=True)
        stats = {"examples": len(examples), "features": len(features), "truncated": column_total(features, "truncated"),
                 "tokens": column_total(features, "length")}
        if mode == "windows":
            stats["multi_window_examples"] = multi_window(features)
        return features, stats

    def example_logits(self, examples: Any, features: Any, outputs: Any) -> np.ndarray:
        """One row of logits per example: its feature's, or the mean of its windows' (data.long_inputs=windows)."""
        logits = np.asarray(logits_of(outputs))
        if len(logits) != len(features):
            raise FinetuneError(f"{len(logits)} model outputs for {len(features)} features")
        if WINDOW_OF not in features.column_names and len(features) == len(examples):
            return logits  # one feature per example, in the examples' order
        return np.stack([logits[windows].mean(axis=0) for windows in windows_of(examples, features)])

    def decode(self, examples: Any, features: Any, outputs: Any) -> list[Prediction]:
        logits = self.example_logits(examples, features, outputs)
        names = self.labels or [str(i) for i in range(logits.shape[1])]
        cut, predictions = truncated_flags(features), []
        for ident, row, owned in zip(examples["id"], self.predict_rows(logits, names), windows_of(examples, features),
                                     strict=True):
            prediction = {"id": ident, **row}
            if any(cut[f] for f in owned):
                prediction["truncated"] = True  # the model saw data.max_length tokens of it only
            if len(owned) > 1:
                prediction["windows"] = len(owned)  # the mean of that many windows' logits: it read all of it
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



def _windows(encoded: Any, long: list[int], edges: tuple[int, int], max_length: int,
             stride: int) -> tuple[dict[str, list], list[int]]:
    """The batch's encodings with each long text replaced by its overlapping windows, and the
    index of the text each feature belongs to (the texts' order kept)."""
    out: dict[str, list] = {key: [] for key in encoded}
    owners: list[int] = []
    cut = set(long)
    for i in range(len(encoded["input_ids"])):
        row = {key: encoded[key][i] for key in out}
        for window in cut_windows(row, edges, max_length, stride) if i in cut else [row]:
            for key in out:
                out[key].append(window[key])
            owners.append(i)
    return out, owners
