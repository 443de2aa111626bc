"""The two halves every task family implements.

A `Codec` is all an export needs to predict: it turns user records into canonical examples
(`inputs`), examples into model features (`tokenize`) and model outputs into user-facing
predictions (`decode`, which never reads a gold field, so the evaluate stage, `finetune-predict`
and the served model share it). Its state is its `Settings` and the label set; both are saved
with the tokenized data and with every export, so a folder in exports/ predicts on its own.

A `Recipe` is the training side around a codec: reading sources into canonical examples, the
label set, the loss, decoding values tuned on validation, scores against gold, and what the
evaluate stage writes. What it reads from the config is its `Options`.

Settings and options are frozen dataclasses whose fields name their config key (and the check
of its value); they are read from the config once. Each key's default lives in the family's
config file, conf/family/<family>.yaml, which every task preset of the family composes.
"""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from datasets.fingerprint import generate_random_fingerprint
from omegaconf import DictConfig, OmegaConf

from finetune.checks import Check, integer, text
from finetune.data.splits import GROUP
from finetune.errors import DataError, FinetuneError
from finetune.intervals import Resampled
from finetune.temperature import Scored

Prediction = dict[str, Any]  # one user-facing prediction per example (JSON-serialisable)
Examples = list[dict[str, Any]]
# what a text longer than data.max_length becomes (the families that read long texts whole)
LONG_INPUTS = ("truncate", "head_tail", "windows")
WINDOW_OF = "example_index"  # the feature column naming the example a window belongs to (its position)
PARALLEL_FROM = 20_000  # examples from which `num_proc: auto` tokenizes in parallel (bench/results/)


def setting(key: str, check: Check | None = None, **default: Any) -> Any:
    """A field read from the config key `key` (e.g. `data.max_length`), checked by `check`;
    `default=` for a key that settings saved before it existed lack."""
    return dataclasses.field(metadata={"key": key, "check": check}, **default)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every codec reads."""

    #: keys that settings saved by earlier versions hold and no codec reads any more
    retired: ClassVar[tuple[str, ...]] = ()

    task: str = setting("task.name", text())
    # room for the [CLS] and [SEP] tokens; the model's own limit is checked by the tokenize stage
    max_length: int = setting("data.max_length", integer(2))


@dataclasses.dataclass(frozen=True)
class Options:
    """What a recipe reads from the config besides its codec's settings (every stage)."""


@dataclasses.dataclass(frozen=True)
class Sources:
    """What a recipe reads its sources with (the download stage)."""


Fields = TypeVar("Fields")


def read_fields(cls: type[Fields], cfg: DictConfig) -> Fields:
    """An instance of the settings or options dataclass `cls`, each field from its config key."""
    values = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = field.metadata["key"]
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            raise FinetuneError(f"{key}: missing from the config (conf/family/ sets each family's keys)")
        values[field.name] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return cls(**values)


_ABSENT = object()


def config_keys(cls: type) -> dict[str, Check | None]:
    """The config keys of a settings or options dataclass, with their checks."""
    return {field.metadata["key"]: field.metadata["check"] for field in dataclasses.fields(cls)}


class Codec(ABC):
    """Inputs to features, model outputs to predictions."""

    #: the family's name (`task.family`)
    family: ClassVar[str]
    #: the transformers Auto class whose head this family trains
    auto_model: ClassVar[str]
    #: the `transformers.pipeline` task an export of this family loads as
    pipeline_tag: ClassVar[str]
    #: the `peft` task type of this family's model (train.peft)
    peft_task_type: ClassVar[str]
    #: the model output fields `decode` reads, in order
    outputs: ClassVar[tuple[str, ...]] = ("logits",)
    #: whether the model outputs one row per token (padded across batches) or one per feature
    token_outputs: ClassVar[bool] = False
    #: bf16's quality check (`bf16: auto`): largest relative distance of bf16's gradients or outputs
    #: to fp32's on the same weights and batch; bench/comparisons/precision.py measures the scores
    bf16_tolerance: ClassVar[float] = 0.05
    Settings: ClassVar[type[Settings]] = Settings

    def __init__(self, settings: Settings, labels: list[str] | None = None):
        self.settings = settings
        self.labels = labels

    @property
    def input_fields(self) -> tuple[str, ...]:
        """The fields of one record given to `predict` (the text, or question + context)."""
        return ("text",)

    def spec(self) -> dict[str, Any]:
        """What rebuilds this codec (`finetune.tasks.load_codec`): saved with tokens and exports."""
        return {"family": self.family, "settings": dataclasses.asdict(self.settings), "labels": self.labels}

    def with_settings(self, values: dict[str, Any]) -> Codec:
        """This codec with some settings replaced (e.g. decoding values tuned on validation)."""
        return type(self)(dataclasses.replace(self.settings, **values), self.labels)

    def inputs(self, records: list[dict[str, Any]], source: str, first: int = 1) -> Examples:
        """Canonical examples without gold fields from user records (the predict side): each of
        `input_fields` as a non-empty string, plus the record's `id` (else its row number, counted
        from `first`: a chunk of a longer input).

        A record lacking one of `input_fields`, or with an empty one, is a DataError naming
        `source`, the record's row and the field.
        """
        return [{"id": str(record.get("id", row)),
                 **{field: require_text(record, field, source, row) for field in self.input_fields}}
                for row, record in enumerate(records, start=first)]

    @abstractmethod
    def tokenize(self, examples: Any, tokenizer: Any, num_proc: int | str = 1) -> tuple[Any, dict[str, Any]]:
        """Features for the model (with a `length` column) and tokenization statistics.

        Examples without gold fields (the predict side) give features without labels.
        """

    @abstractmethod
    def decode(self, examples: Any, features: Any, outputs: Any) -> list[Prediction]:
        """User-facing predictions, one per example, from the model's raw outputs on `features`.

        Reads no gold field: what the evaluate stage scores is exactly what `predict` returns.
        """


class Recipe(ABC):
    """Sources, labels, loss, tuning, scores and outputs around a codec."""

    Options: ClassVar[type[Options]] = Options
    Sources: ClassVar[type[Sources]] = Sources
    #: key of `score()` that selects the best checkpoint and that sweeps optimise
    primary_metric: str
    #: whether a higher primary metric is better (checkpoint selection, the registry's gate)
    greater_is_better: bool = True

    def __init__(self, codec: Codec, options: Options, sources: Sources | None = None):
        self.codec = codec
        self.options = options
        self._sources = sources

    @property
    def sources(self) -> Any:
        if self._sources is None:
            raise FinetuneError("reading sources needs the `data` section of the config")
        return self._sources

    @property
    def labels(self) -> list[str] | None:
        return self.codec.labels

    def with_codec(self, codec: Codec) -> Recipe:
        """This recipe around another codec (e.g. with decoding values tuned on validation)."""
        return type(self)(codec, self.options, self._sources)

    def with_labels(self, labels: list[str] | None) -> Recipe:
        """This recipe once the label set is known (the download stage finds it)."""
        return self.with_codec(type(self.codec)(self.codec.settings, labels))

    # -- sources ------------------------------------------------------------------------------
    @abstractmethod
    def read(self, path: Path, fmt: str, split: str) -> Examples:
        """Read and validate one source file into canonical examples (DataError on bad rows)."""

    def layout(self) -> Any:
        """Where this recipe's fields stand in a table it can read column-wise (a
        `finetune.data.columnar.Layout`: the download stage's Arrow path), or None: row by row."""
        return None

    @abstractmethod
    def from_hub(self, dataset: Any, split: str) -> Examples:
        """Canonical examples from a split loaded with `datasets.load_dataset`."""

    def label_set(self, splits: dict[str, Examples]) -> list[str] | None:
        """The label set, from config or collected from the data (None when there is none)."""
        return None

    def encode_labels(self, examples: Examples, split: str) -> Examples:
        """Turn label names into the model's targets, failing on a label outside the set."""
        return examples

    @abstractmethod
    def features(self) -> Any:
        """The `datasets.Features` of canonical examples."""

    def stratum(self, example: dict[str, Any]) -> Any:
        """The class a k-fold split keeps in proportion across folds (None: no strata)."""
        return None

    def group(self, example: dict[str, Any]) -> Any:
        """The group whose examples a split never cuts apart (None: the example alone)."""
        return example.get(GROUP)

    # -- training -----------------------------------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `from_pretrained` / the model config (label maps)."""
        if not self.labels:
            return {}
        return {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)),
                "label2id": {label: i for i, label in enumerate(self.labels)}}

    @abstractmethod
    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        """The data collator that pads a batch of features dynamically (training)."""

    def loss(self, train_features: Any, train_cfg: Any) -> Any:
        """A loss for the Trainer's `compute_loss_func` ((outputs, labels) -> mean loss of the batch),
        or None for the model's own loss."""
        return None

    # -- evaluation ---------------------------------------------------------------------------
    @property
    def tunes(self) -> bool:
        """Whether `tune` fits decoding settings on the validation split (the evaluate stage asks)."""
        return False

    def tune(self, examples: Any, features: Any, outputs: Any) -> dict[str, Any]:
        """Decoding settings fitted to the validation split's gold (e.g. decision thresholds), to be
        applied with `Codec.with_settings` before decoding other splits and saved with the export."""
        return {}

    @abstractmethod
    def score(self, examples: Any, predictions: list[Prediction]) -> dict[str, Any]:
        """Metrics of `predictions` against the gold `examples` (primary_metric among them)."""

    @abstractmethod
    def write_predictions(self, examples: Any, predictions: list[Prediction], out_dir: Path) -> list[Path]:
        """Write the evaluated predictions (beside their gold) into `out_dir`; return the paths."""

    @abstractmethod
    def read_predictions(self, out_dir: Path) -> tuple[dict[str, list[Any]], list[Prediction]]:
        """What `write_predictions` wrote: the gold as examples (columns the family's `score` and
        `resampled` read) and the predictions, in order (comparing two runs' saved predictions)."""

    def baseline(self, train: Any, examples: Any) -> tuple[str, list[Prediction]] | None:
        """The trivial baseline's name and its predictions on `examples`, fitted on the `train`
        examples' gold (the majority class, the training mean, all-`O`, ...); None where there is none."""
        return None

    def scored(self, examples: Any, features: Any, outputs: Any) -> Scored | None:
        """The logits of the units the codec turns into probabilities, with their gold, for
        temperature scaling (finetune.temperature); None where there is nothing to calibrate."""
        return None

    def label_issues(self, examples: Any, predictions: list[Prediction]) -> list[dict[str, Any]] | None:
        """The examples whose given label the predictions most confidently contradict
        (finetune.label_issues), the surest first; None where the family has no such rule."""
        return None

    def resampled(self, examples: Any, predictions: list[Prediction]) -> Resampled | None:
        """The main metrics of `score` on any resample of the scored units (finetune.intervals
        bootstraps them); None where the family has no interval."""
        return None

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              out_dir: Path) -> list[Path]:
        """Plots worth looking at (a confusion matrix, ...); return their paths."""
        return []

    def usage(self, folder: str, metrics: dict[str, Any]) -> dict[str, list[str]]:
        """The model card's usage: `transformers` lines loading `folder`, a `finetune-predict`
        example's arguments and notes on decoding (`transformers`, `predict`, `notes`)."""
        return {"transformers": ["from transformers import pipeline",
                                 f"model = pipeline('{self.codec.pipeline_tag}', model='{folder}')",
                                 "model('some text')"],
                "predict": ['"The film was a delight from start to finish."'], "notes": []}


def map_batches(examples: Any, encode: Any, remove_columns: list[str], num_proc: int | str,
                with_indices: bool = False) -> Any:
    """`examples.map(encode, batched=True)` in `num_proc` processes (same rows, same order);
    `with_indices`: `encode(batch, indices)`, each row's position in `examples`.

    `auto`: one process per CPU core from PARALLEL_FROM examples on (below, starting the
    processes costs more than it saves); an integer: that many.
    """
    if num_proc == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        processes = cores if len(examples) >= PARALLEL_FROM else 1
    else:
        processes = max(1, int(num_proc))
    # An in-memory dataset is never cached, yet `map` would hash `encode` (the whole tokenizer's
    # vocabulary) for its fingerprint: the largest fixed cost of one served prediction.
    fingerprint = None if examples.cache_files else generate_random_fingerprint()
    return examples.map(encode, batched=True, with_indices=with_indices, remove_columns=remove_columns, desc="tokenize",
                        num_proc=processes if processes > 1 else None, new_fingerprint=fingerprint)


def special_edges(tokenizer: Any) -> tuple[int, int]:
    """How many special tokens the tokenizer puts before and after a single text ([CLS] and [SEP]: 1, 1)."""
    mask = tokenizer("a", return_special_tokens_mask=True)["special_tokens_mask"]
    return mask.index(0), len(mask) - 1 - max(i for i, special in enumerate(mask) if not special)


def window_spans(total: int, room: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) of the windows of `room` positions that cover `total`, neighbours sharing at
    least `stride`; the last window ends at `total` (full, rather than a short remainder)."""
    if total <= room:
        return [(0, total)]
    starts = list(range(0, total - room, room - stride))
    return [(start, start + room) for start in [*starts, total - room]]


def cut_windows(row: dict[str, list], edges: tuple[int, int], max_length: int, stride: int) -> list[dict[str, list]]:
    """One encoded text (`row`: its input_ids and every column aligned with them) as windows of at
    most `max_length` positions, each keeping the text's special tokens (`edges`, at its start and end)."""
    lead, trail = edges
    total = len(row["input_ids"])
    body = [(lead + start, lead + end) for start, end in window_spans(total - lead - trail, max_length - lead - trail,
                                                                      stride)]
    return [{key: values[:lead] + values[start:end] + values[total - trail:] for key, values in row.items()}
            for start, end in body]


def windows_of(examples: Any, features: Any) -> list[list[int]]:
    """The features (indices) of each example: its windows where features carry an `example_index`
    (the example's position: ids need not be unique), else the one feature in its place."""
    if WINDOW_OF not in features.column_names:
        if len(features) != len(examples):
            raise FinetuneError(f"{len(features)} features for {len(examples)} examples")
        return [[i] for i in range(len(features))]
    owned: list[list[int]] = [[] for _ in range(len(examples))]
    for index, example in enumerate(features[WINDOW_OF]):
        owned[example].append(index)
    return owned


def multi_window(features: Any) -> int:
    """How many examples were cut into more than one window."""
    return int((np.bincount(np.asarray(features[WINDOW_OF], dtype=np.int64)) > 1).sum()) if len(features) else 0


def check_stride(stride: int, max_length: int, tokenizer: Any) -> None:
    """data.doc_stride must leave a window room to move on."""
    room = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if not 0 <= stride < room:
        raise FinetuneError(f"data.doc_stride={stride} must be below the text room of a window "
                            f"(data.max_length={max_length} - special tokens = {room})")


def logits_of(outputs: Any) -> np.ndarray:
    """The logits array of a model output (a tuple when the model returns several)."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def column_total(dataset: Any, name: str) -> int:
    """The sum of a numeric (or boolean) column, computed by Arrow: no Python list of every row."""
    import pyarrow.compute as pc

    return int(pc.sum(dataset.with_format("arrow")[name]).as_py() or 0)


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
    value = record.get(field)
    if value is None:
        found = [str(key) for key in record if key != "id"]
        raise DataError(source, f"missing field (found: {', '.join(found) or 'nothing'})",
                        row=row, field=field)
    if not isinstance(value, str):
        raise DataError(source, f"expected a string, got {type(value).__name__}", row=row, field=field)
    if not value.strip():
        raise DataError(source, "empty text", row=row, field=field)
    return value
