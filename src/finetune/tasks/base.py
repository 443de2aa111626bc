"""The interface every task family implements.

A family turns source files into canonical examples, examples into model features, model outputs
into user-facing predictions (`decode`, which never reads a gold field, so the evaluate stage, the
predict command and the served model share it) and predictions plus gold examples into metrics
(`score`). The stages only talk to this interface, so adding a family is one module here plus one
config file in conf/task/.

What encoding and decoding read is the family's `Settings`: a small dataclass read from the
config once and saved with every export, so a folder in exports/ can predict on its own.
"""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from omegaconf import DictConfig, OmegaConf

Prediction = dict[str, Any]  # one user-facing prediction per example (JSON-serialisable)
PARALLEL_FROM = 20_000  # examples; SQuAD train (87,599 questions): 56 s in 1 process, 40 s in 2 (bench/)


def setting(key: str, default: Any = dataclasses.MISSING) -> Any:
    """A `Settings` field read from the config key `key` (e.g. `data.max_length`)."""
    return dataclasses.field(default=default, metadata={"key": key})


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every family's encoding and decoding read."""

    task: str = setting("task.name")
    max_length: int = setting("data.max_length")


class TaskFamily(ABC):
    """A task family (classification, token classification, extractive QA, ...)."""

    #: name used in conf/task/*.yaml as `task.family`
    name: ClassVar[str]
    #: the transformers Auto class whose head this family trains
    auto_model: ClassVar[str]
    #: the `transformers.pipeline` task an export of this family loads as
    pipeline_tag: ClassVar[str]
    #: key of `score()` that selects the best checkpoint and that sweeps optimise
    primary_metric: ClassVar[str]
    #: whether a higher primary metric is better (checkpoint selection, the registry's gate)
    greater_is_better: ClassVar[bool] = True
    #: fields of one record given to `predict` (the text, or question + context)
    input_fields: ClassVar[tuple[str, ...]] = ("text",)
    #: the model output fields `decode` reads, in order
    outputs: ClassVar[tuple[str, ...]] = ("logits",)
    #: whether the model outputs one row per token (padded across batches) or one per feature
    token_outputs: ClassVar[bool] = False
    #: formats `read()` accepts besides the table formats
    formats: ClassVar[tuple[str, ...]] = ()
    #: bf16's quality check (`bf16: auto`): largest relative distance of bf16's gradients (training)
    #: or outputs (inference) to fp32's on the same weights and batch; bench/comparisons/precision.py measures
    #: what a family's end-to-end scores do under bf16
    bf16_tolerance: ClassVar[float] = 0.05
    Settings: ClassVar[type[Settings]] = Settings

    def __init__(self, settings: Settings, cfg: DictConfig | None = None):
        self.settings = settings
        self.cfg = cfg  # the whole config, for reading source files (the training side only)

    @classmethod
    def variant(cls, settings: Settings) -> type[TaskFamily]:
        """The class that implements these settings (a family may have several, e.g. per problem type)."""
        return cls

    @classmethod
    def settings_from(cls, cfg: DictConfig) -> Settings:
        """The family's settings from a composed config (a null or absent key keeps the default)."""
        values = {}
        for field in dataclasses.fields(cls.Settings):
            value = OmegaConf.select(cfg, field.metadata["key"], default=None)
            if value is not None:
                values[field.name] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        return cls.Settings(**values)

    def with_settings(self, values: dict[str, Any]) -> TaskFamily:
        """This family with some settings replaced (e.g. decoding values tuned on validation)."""
        return type(self)(dataclasses.replace(self.settings, **values), self.cfg)

    def option(self, group: str, key: str, default: Any) -> Any:
        """`cfg.<group>.<key>`, or `default` when it is absent or null (source-reading keys)."""
        value = self.cfg[group].get(key) if self.cfg is not None else None
        return default if value is None else value

    def map_batches(self, examples: Any, encode: Any, remove_columns: list[str]) -> Any:
        """`examples.map(encode, batched=True)` in `data.num_proc` processes (same rows, same order).

        `auto`: one process per CPU core from PARALLEL_FROM examples on (below, starting the
        processes costs more than it saves); an integer: that many.
        """
        setting = self.option("data", "num_proc", "auto")
        if setting == "auto":
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            processes = cores if len(examples) >= PARALLEL_FROM else 1
        else:
            processes = max(1, int(setting))
        return examples.map(encode, batched=True, remove_columns=remove_columns, desc="tokenize",
                            num_proc=processes if processes > 1 else None)

    # -- data -------------------------------------------------------------------------------
    @abstractmethod
    def read(self, path: Path, fmt: str, split: str) -> list[dict[str, Any]]:
        """Read and validate one source file into canonical examples (DataError on bad rows)."""

    @abstractmethod
    def from_hub(self, dataset: Any, split: str) -> list[dict[str, Any]]:
        """Canonical examples from a split loaded with `datasets.load_dataset`."""

    @abstractmethod
    def features(self, labels: list[str] | None) -> Any:
        """The `datasets.Features` of canonical examples."""

    def labels(self, splits: dict[str, list[dict[str, Any]]]) -> list[str] | None:
        """The label set, from config or collected from the data (None when there is none)."""
        return None

    def encode_labels(self, examples: list[dict[str, Any]], labels: list[str] | None, *,
                      file: str, split: str) -> list[dict[str, Any]]:
        """Turn label names into ids, failing on a label outside the set."""
        return examples

    def inputs(self, records: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
        """Canonical examples without gold fields from user records (the predict side): each of
        `input_fields` as a non-empty string, plus the record's `id` (else its row number).

        A record lacking one of `input_fields`, or with an empty one, is a DataError naming
        `source`, the record's row and the field.
        """
        return [{"id": str(record.get("id", row)),
                 **{field: require_text(record, field, source, row) for field in self.input_fields}}
                for row, record in enumerate(records, start=1)]

    # -- model ------------------------------------------------------------------------------
    def model_kwargs(self, labels: list[str] | None) -> dict[str, Any]:
        """Keyword arguments for `from_pretrained` / the model config (label maps)."""
        if not labels:
            return {}
        return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {label: i for i, label in enumerate(labels)}}

    @abstractmethod
    def tokenize(self, examples: Any, tokenizer: Any, labels: list[str] | None) -> tuple[Any, dict[str, Any]]:
        """Features for the model (with a `length` column) and tokenization statistics.

        Examples without gold fields (the predict side) give features without labels.
        """

    @abstractmethod
    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        """The data collator that pads a batch of features dynamically (training)."""

    def loss(self, train_features: Any, labels: list[str] | None, train_cfg: Any) -> Any:
        """A loss for the Trainer's `compute_loss_func` ((outputs, labels) -> mean loss of the batch),
        or None for the model's own loss."""
        return None

    # -- predictions and scores -------------------------------------------------------------
    @abstractmethod
    def decode(self, examples: Any, features: Any, outputs: Any, labels: list[str] | None) -> list[Prediction]:
        """User-facing predictions, one per example, from the model's raw outputs on `features`.

        Reads no gold field: what the evaluate stage scores is exactly what `predict` returns.
        """

    @property
    def tunes(self) -> bool:
        """Whether `tune` fits decoding settings on the validation split (the evaluate stage asks)."""
        return False

    def tune(self, examples: Any, features: Any, outputs: Any, labels: list[str] | None) -> dict[str, Any]:
        """Decoding settings fitted to the validation split's gold (e.g. decision thresholds), to be
        applied with `with_settings` before decoding other splits and saved with the export."""
        return {}

    @abstractmethod
    def score(self, examples: Any, predictions: list[Prediction], labels: list[str] | None) -> dict[str, Any]:
        """Metrics of `predictions` against the gold `examples` (primary_metric among them)."""

    @abstractmethod
    def write_predictions(self, examples: Any, predictions: list[Prediction], labels: list[str] | None,
                          out_dir: Path) -> list[Path]:
        """Write the evaluated predictions (beside their gold) into `out_dir`; return the paths."""

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              labels: list[str] | None, out_dir: Path) -> list[Path]:
        """Plots worth looking at (a confusion matrix, ...); return their paths."""
        return []


def logits_of(outputs: Any) -> np.ndarray:
    """The logits array of a model output (a tuple when the model returns several)."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def truncated_flags(features: Any) -> list[bool]:
    """Per feature, whether tokenizing cut it (all False for features without the column)."""
    return features["truncated"] if "truncated" in features.column_names else [False] * len(features)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis, computed in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def require_text(record: dict[str, Any], field: str, source: str, row: int) -> str:
    """`record[field]` as a non-empty string, else a DataError naming source, row and field."""
    from finetune.errors import DataError

    value = record.get(field)
    if value is None:
        raise DataError(source, f"missing field (found: {', '.join(map(str, record)) or 'nothing'})",
                        row=row, field=field)
    if not isinstance(value, str):
        raise DataError(source, f"expected a string, got {type(value).__name__}", row=row, field=field)
    if not value.strip():
        raise DataError(source, "empty text", row=row, field=field)
    return value
