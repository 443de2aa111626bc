"""The interface every task family implements.

A family turns source files into canonical examples, examples into model features, and raw
model outputs back into user-facing predictions and metrics. The stages only talk to this
interface, so adding a family is one module here plus one config file in conf/task/.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from omegaconf import DictConfig

Prediction = dict[str, Any]  # one user-facing prediction per example (JSON-serialisable)
PARALLEL_FROM = 20_000  # examples; SQuAD train (87,599 questions): 56 s in 1 process, 40 s in 2 (bench/)


class TaskFamily(ABC):
    """A task family (classification, token classification, extractive QA, ...)."""

    #: name used in conf/task/*.yaml as `task.family`
    name: ClassVar[str]
    #: the transformers Auto class whose head this family trains
    auto_model: ClassVar[str]
    #: key of `metrics()` that selects the best checkpoint and that sweeps optimise
    primary_metric: ClassVar[str]
    #: formats `read()` accepts besides the table formats
    formats: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def option(self, group: str, key: str, default: Any) -> Any:
        """`cfg.<group>.<key>`, or `default` when it is absent or null (family-specific keys)."""
        value = self.cfg[group].get(key)
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

    # -- model ------------------------------------------------------------------------------
    def model_kwargs(self, labels: list[str] | None) -> dict[str, Any]:
        """Keyword arguments for `from_pretrained` / the model config (label maps)."""
        if not labels:
            return {}
        return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {label: i for i, label in enumerate(labels)}}

    @abstractmethod
    def tokenize(self, examples: Any, tokenizer: Any, labels: list[str] | None) -> tuple[Any, dict[str, Any]]:
        """Features for the model (with a `length` column) and tokenization statistics."""

    @abstractmethod
    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        """The data collator that pads a batch of features dynamically."""

    # -- evaluation -------------------------------------------------------------------------
    @abstractmethod
    def postprocess(self, examples: Any, features: Any, outputs: Any,
                    labels: list[str] | None) -> list[Prediction]:
        """User-facing predictions, one per example, from the model's raw outputs on `features`."""

    @abstractmethod
    def metrics(self, examples: Any, predictions: list[Prediction],
                labels: list[str] | None) -> dict[str, Any]:
        """Metrics of `predictions` against the gold `examples` (primary_metric among them)."""

    @abstractmethod
    def write_predictions(self, predictions: list[Prediction], out_dir: Path) -> list[Path]:
        """Write the predictions file(s) into `out_dir`; return their paths."""

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              labels: list[str] | None, out_dir: Path) -> list[Path]:
        """Plots worth looking at (a confusion matrix, ...); return their paths."""
        return []


def logits_of(outputs: Any) -> np.ndarray:
    """The logits array of a Trainer prediction output (a tuple when the model returns several)."""
    return outputs[0] if isinstance(outputs, tuple) else outputs
