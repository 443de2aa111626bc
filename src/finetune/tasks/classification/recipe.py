"""Training and scoring of sequence classification (IMDB sentiment, sarcasm headlines, GLUE MRPC
and STS-B, GoEmotions, any table). `task.problem_type` picks the kind of target, with the names
transformers gives them: single-label (`LabelRecipe`), multi-label (`LabelSetRecipe`: a label list,
a delimited string or one 0/1 column per label; binary cross-entropy; thresholds tuned on
validation with `task.tune_threshold`) and regression (`NumberRecipe`: mean squared error; the
primary metric is Pearson unless `task.metric` names another).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from finetune.checks import boolean, character, integer, one_of, text
from finetune.data.columnar import Layout
from finetune.data.readers import detect_format, read_records, require_field
from finetune.data.splits import GROUP, SPLIT
from finetune.errors import DataError, FinetuneError
from finetune.intervals import Resampled, ratio
from finetune.label_issues import issue_rows
from finetune.tasks import interface
from finetune.tasks.classification import metrics as scores
from finetune.tasks.classification.codec import LabelCodec, LabelSetCodec
from finetune.tasks.interface import Examples, Prediction, Recipe, setting
from finetune.temperature import Scored

LOWER_IS_BETTER = {"mse", "mae", "loss"}
TUNING = ("none", "global", "per_label")
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # thresholds tried when tuning
PREDICTIONS = "predictions.jsonl"


@dataclasses.dataclass(frozen=True)
class Sources(interface.Sources):
    text_column: str = setting("data.text_column", text())
    label_column: str = setting("data.label_column", text())
    label_delimiter: str = setting("data.label_delimiter", text())  # multi-label, in a table cell
    label_columns: list[str] | None = setting("data.label_columns")  # multi-label: one 0/1 column each
    empty_labels: str = setting("data.empty_labels", one_of("error", "allow"))
    id_column: str | None = setting("data.id_column")
    columns: list[str] | None = setting("data.columns")
    quoting: bool | None = setting("data.quoting", boolean(also=(None,)))
    delimiter: str | None = setting("data.delimiter", character(null=True))
    maxsplit: int | None = setting("data.maxsplit", integer(1, also=(None,)))
    sheet: str | None = setting("data.sheet", text(null=True))
    encoding: str = setting("data.encoding", text())
    split_column: str | None = setting("data.split_column")
    group_column: str | None = setting("data.split.group_column")  # rows sharing it stay in one split
    labels: list[Any] | None = setting("task.labels")


@dataclasses.dataclass(frozen=True)
class Options(interface.Options):
    metric: str | None = setting("task.metric", text(null=True))  # None: the problem type's first


@dataclasses.dataclass(frozen=True)
class LabelSetOptions(Options):
    tune_threshold: str = setting("task.tune_threshold", one_of(*TUNING))


class LabelRecipe(Recipe):
    """One label per text or pair: cross-entropy (weighted per class with `train.class_weights`)."""

    Sources = Sources
    Options = Options
    codec: LabelCodec
    sources: Sources
    #: metrics `score` returns that may be the primary one; the first is the default
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy", "f1", "precision", "recall")
    #: whether a label is a class, by name or id (a regression target is a number)
    named_labels: ClassVar[bool] = True

    def __init__(self, codec: LabelCodec, options: Options, sources: Sources | None = None):
        super().__init__(codec, options, sources)
        metric = options.metric or self.metric_names[0]
        if metric not in self.metric_names:
            raise FinetuneError(f"task.metric: '{metric}' is not a {codec.settings.problem_type} metric "
                                f"(choose from {', '.join(self.metric_names)})")
        self.primary_metric = metric
        self.greater_is_better = metric not in LOWER_IS_BETTER

    # -- sources ------------------------------------------------------------------------------
    def read(self, path: Path, fmt: str, split: str) -> Examples:
        sources = self.sources
        text_columns = {"text": sources.text_column} | (
            {"text_pair": self.codec.settings.text_pair_column} if self.codec.pairs else {})
        examples = []
        rows = read_records(path, detect_format(path, fmt), quoting=sources.quoting, columns=sources.columns or None,
                            encoding=sources.encoding, delimiter=sources.delimiter, maxsplit=sources.maxsplit,
                            sheet=sources.sheet)
        for where, row in rows:
            split_value = str(require_field(path, where, row, sources.split_column)) if sources.split_column else None
            texts = {}
            for field, column in text_columns.items():
                texts[field] = require_field(path, where, row, column)
                if not isinstance(texts[field], str):
                    raise DataError(path, f"expected text, got {type(texts[field]).__name__}", where=where,
                                    field=column)
                if not texts[field].strip():
                    raise DataError(path, "empty text", where=where, field=column)
            ident = row.get(sources.id_column) if sources.id_column else None
            group = require_field(path, where, row, sources.group_column) if sources.group_column else None
            examples.append({"id": str(ident if ident is not None else len(examples)), **texts,
                             "label": self.read_label(path, where, row), GROUP: group, SPLIT: split_value,
                             "_where": f"{path}, {where}"})
        return examples

    def layout(self) -> Layout | None:
        sources = self.sources
        if sources.maxsplit is not None or sources.sheet is not None or sources.group_column:
            return None  # lines split by hand, a workbook, groups: read row by row
        pair = {"text_pair": self.codec.settings.text_pair_column} if self.codec.pairs else {}
        return Layout({"text": sources.text_column, **pair}, sources.label_column, sources.id_column,
                      sources.split_column, sources.columns or None, sources.quoting, sources.delimiter,
                      sources.encoding)

    def read_label(self, path: Path, where: str, row: dict[str, Any]) -> Any:
        """The raw label of one source row (checked and encoded later by `encode_labels`)."""
        column = self.sources.label_column
        label = require_field(path, where, row, column)
        if label is None or (isinstance(label, str) and not label.strip()):
            raise DataError(path, "empty label", where=where, field=column)
        return label

    def from_hub(self, dataset: Any, split: str) -> Examples:
        sources, pair_column = self.sources, self.codec.settings.text_pair_column
        feature = dataset.features.get(sources.label_column)
        names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)

        def named(value: Any) -> Any:
            if isinstance(value, list):
                return [named(v) for v in value]
            return names[value] if names else value

        pair = {"text_pair": pair_column} if pair_column else {}
        return [{"id": str(i), "text": row[sources.text_column], **{k: row[c] for k, c in pair.items()},
                 "label": named(row[sources.label_column]), "_where": f"hub:{split} row {i + 1}"}
                for i, row in enumerate(dataset)]

    def features(self) -> Any:
        from datasets import Features, Value

        pair = {"text_pair": Value("string")} if self.codec.pairs else {}
        return Features({"id": Value("string"), "text": Value("string"), **pair, "label": self.label_feature()})

    def stratum(self, example: dict[str, Any]) -> Any:
        return str(example["label"])

    def label_feature(self) -> Any:
        from datasets import ClassLabel

        return ClassLabel(names=self.labels)

    def label_set(self, splits: dict[str, Examples]) -> list[str]:
        if self.sources.labels:
            return [str(label) for label in self.sources.labels]
        one_kind(splits["train"], {}, self.sources.label_column)
        found = {str(example["label"]) for example in splits["train"]}
        numbers = [as_number(label) for label in found]
        if all(n is not None for n in numbers) and any(not n.is_integer() for n in numbers):
            example = next(label for label, n in zip(found, numbers, strict=True) if not n.is_integer())
            raise DataError(_source(splits), f"labels such as {example!r} look like a numeric target: set "
                            "task.problem_type=regression (or list the classes in task.labels)",
                            field=self.sources.label_column)
        if len(found) < 2:  # one output would make transformers treat the head as a regression
            raise DataError(_source(splits), f"the train split holds one label only ({', '.join(found)}): a classifier "
                            "needs two or more; list them in task.labels if the others are absent here",
                            field=self.sources.label_column)
        return sorted(found)

    def encode_labels(self, examples: Examples, split: str) -> Examples:
        index = {label: i for i, label in enumerate(self.labels or [])}
        if self.named_labels:
            one_kind(examples, index, self.sources.label_column)
        for example in examples:
            example["label"] = self.encode_label(example["label"], index, example["_where"])
        return examples

    def encode_label(self, value: Any, index: dict[str, int], where: str) -> Any:
        """One raw label as the model's target (here a class id), else a DataError."""
        field = self.sources.label_column
        if isinstance(value, list):
            raise DataError(where, f"label {value!r} is a list: set task.problem_type=multi_label_classification",
                            field=field)
        return label_id(value, index, where, field)

    # -- training -----------------------------------------------------------------------------
    def model_kwargs(self) -> dict[str, Any]:
        # Said explicitly: with one label transformers would otherwise infer regression.
        return super().model_kwargs() | {"problem_type": self.codec.settings.problem_type}

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def loss(self, train_features: Any, train_cfg: Any) -> Any:
        """Cross-entropy weighted per class (`train.class_weights`: balanced or a list), else None
        (the model's own loss; `label_smoothing_factor` then goes through the Trainer)."""
        weights = self.class_weights(train_features, train_cfg.get("class_weights"))
        if weights is None:
            return None
        import torch

        criterion = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32),
                                              label_smoothing=float(train_cfg.get("label_smoothing_factor") or 0))
        return lambda outputs, target, **_: criterion(outputs["logits"].float(), target.to(outputs["logits"].device))

    def class_weights(self, train_features: Any, spec: Any) -> list[float] | None:
        """Per-class loss weights: `balanced` = n / (classes x count), as scikit-learn's."""
        if spec is None:
            return None
        size = len(self.labels or [])
        if spec == "balanced":
            counts = np.bincount(np.asarray(train_features["labels"]), minlength=size)
            return (len(train_features) / (size * np.maximum(counts, 1))).round(6).tolist()
        return explicit_weights(spec, self.labels)

    # -- evaluation ---------------------------------------------------------------------------
    def score(self, examples: Any, predictions: list[Prediction]) -> dict[str, Any]:
        labels = self.labels
        gold = [labels[i] for i in examples["label"]] if labels else [str(i) for i in examples["label"]]
        return scores.classification_metrics(gold, [p["label"] for p in predictions], labels)

    def baseline(self, train: Any, examples: Any) -> tuple[str, list[Prediction]]:
        majority = (self.labels or [])[int(np.bincount(np.asarray(train["label"])).argmax())]
        return f"majority class ({majority})", [{"id": ident, "label": majority} for ident in examples["id"]]

    def scored(self, examples: Any, features: Any, outputs: Any) -> Scored | None:
        return Scored(self.codec.example_logits(examples, features, outputs), np.asarray(examples["label"]), "softmax")

    def label_issues(self, examples: Any, predictions: list[Prediction]) -> list[dict[str, Any]]:
        labels = self.labels or []
        probabilities = np.asarray([[p["probabilities"][name] for name in labels] for p in predictions])
        texts = examples["text"] if not self.codec.pairs else [
            f"{a} [SEP] {b}" for a, b in zip(examples["text"], examples["text_pair"], strict=True)]
        return issue_rows(list(examples["id"]), texts, np.asarray(examples["label"]), probabilities, labels)

    def resampled(self, examples: Any, predictions: list[Prediction]) -> Resampled:
        size = len(self.labels or [])
        index = {label: i for i, label in enumerate(self.labels or [])}
        pairs = np.asarray(examples["label"]) * size + np.asarray([index[p["label"]] for p in predictions])

        def statistic(draw: np.ndarray) -> dict[str, float]:
            counts = np.bincount(pairs[draw], minlength=size * size).reshape(size, size)  # gold x predicted
            hits, predicted, actual = np.diag(counts), counts.sum(0), counts.sum(1)
            return {"accuracy": hits.sum() / len(draw), "f1": ratio(2 * hits, predicted + actual).mean(),
                    "precision": ratio(hits, predicted).mean(), "recall": ratio(hits, actual).mean()}

        return Resampled("examples", len(pairs), statistic)

    def gold(self, value: Any) -> Any:
        """A stored target as written beside its prediction."""
        return (self.labels or [])[value]

    def target(self, gold: Any) -> Any:
        """The stored target of a gold value as `gold` wrote it."""
        return (self.labels or []).index(gold)

    def write_predictions(self, examples: Any, predictions: list[Prediction], out_dir: Path) -> list[Path]:
        from finetune.io import atomic_file

        path = out_dir / PREDICTIONS
        with atomic_file(path, encoding="utf-8") as handle:
            for gold, prediction in zip(examples["label"], predictions, strict=True):
                handle.write(json.dumps({"gold": self.gold(gold), **prediction}, ensure_ascii=False) + "\n")
        return [path]

    def read_predictions(self, out_dir: Path) -> tuple[dict[str, list[Any]], list[Prediction]]:
        rows = [json.loads(line) for line in (out_dir / PREDICTIONS).read_text(encoding="utf-8").splitlines()]
        return ({"id": [row["id"] for row in rows], "label": [self.target(row["gold"]) for row in rows]},
                [{key: value for key, value in row.items() if key != "gold"} for row in rows])

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              out_dir: Path) -> list[Path]:
        from finetune import plots

        return [plots.confusion_matrix(metrics["confusion_matrix"], self.labels, out_dir / "confusion_matrix.png",
                                       title=f"{self.codec.settings.task}: confusion matrix")]

    # -- export -------------------------------------------------------------------------------
    def usage(self, folder: str, metrics: dict[str, Any]) -> dict[str, list[str]]:
        call = ("model({'text': 'first sentence', 'text_pair': 'second sentence'})" if self.codec.pairs
                else self.pipeline_call)
        predict = ('--input pairs.jsonl   # rows {"text": ..., "text_pair": ...}' if self.codec.pairs
                   else '"The film was a delight from start to finish."')
        mode = self.codec.settings.long_inputs
        notes = [] if mode == "truncate" else [
            f"Trained with data.long_inputs={mode}: finetune-predict, the ONNX model's predictor and the served "
            "model read a text longer than data.max_length "
            + ("in overlapping windows and average their logits" if mode == "windows" else "by its first quarter and "
               "its end") + "; the transformers pipeline cuts it to its first tokens."]
        return {"transformers": ["from transformers import pipeline",
                                 f"model = pipeline('{self.codec.pipeline_tag}', model='{folder}')", call],
                "predict": [predict], "notes": notes}

    pipeline_call: ClassVar[str] = "model('some text')"


class LabelSetRecipe(LabelRecipe):
    """A set of labels per text or pair: one sigmoid per label, binary cross-entropy."""

    Options = LabelSetOptions
    options: LabelSetOptions
    codec: LabelSetCodec
    metric_names = ("macro_f1", "micro_f1", "subset_accuracy")
    pipeline_call = "model('some text', top_k=None)  # every label's sigmoid score"

    # -- sources ------------------------------------------------------------------------------
    def read_label(self, path: Path, where: str, row: dict[str, Any]) -> list[Any]:
        sources = self.sources
        if sources.label_columns:
            chosen = []
            for column in sources.label_columns:
                flag = _binary(require_field(path, where, row, column))
                if flag is None:
                    raise DataError(path, f"expected 0 or 1, got {row[column]!r}", where=where, field=column)
                if flag:
                    chosen.append(column)
            return chosen
        value = require_field(path, where, row, sources.label_column)
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(sources.label_delimiter or ",") if part.strip()]
        return list(value) if isinstance(value, list) else [value]

    def layout(self) -> None:
        return None  # a label list, a delimited cell or 0/1 columns: read row by row

    def stratum(self, example: dict[str, Any]) -> Any:
        return None  # label sets are too many to stratify by

    def label_set(self, splits: dict[str, Examples]) -> list[str]:
        if self.sources.labels:
            return [str(label) for label in self.sources.labels]
        if self.sources.label_columns:
            return [str(column) for column in self.sources.label_columns]
        one_kind(splits["train"], {}, self.sources.label_column)
        return sorted({str(label) for example in splits["train"] for label in example["label"]})

    def label_feature(self) -> Any:
        from datasets import Sequence, Value

        return Sequence(Value("float32"), length=len(self.labels or []))

    def encode_label(self, value: Any, index: dict[str, int], where: str) -> list[float]:
        field = "label columns" if self.sources.label_columns else self.sources.label_column
        target = [0.0] * len(index)
        for item in value:
            target[label_id(item, index, where, field)] = 1.0
        if not any(target) and self.sources.empty_labels != "allow":
            raise DataError(where, "no label (set data.empty_labels=allow if an example may have none)", field=field)
        return target

    # -- training -----------------------------------------------------------------------------
    def loss(self, train_features: Any, train_cfg: Any) -> Any:
        """Binary cross-entropy with one positive weight per label (`balanced`: negatives / positives),
        else None (the model's own unweighted BCE)."""
        if train_cfg.get("label_smoothing_factor"):
            raise FinetuneError("train.label_smoothing_factor: applies to single-label classification only")
        spec = train_cfg.get("class_weights")
        if spec is None:
            return None
        if spec == "balanced":
            targets = np.asarray(train_features["labels"], dtype=np.float64)
            positives = targets.sum(axis=0)
            weights = np.where(positives > 0, (len(targets) - positives) / np.maximum(positives, 1), 1.0)
            weights = weights.round(6).tolist()
        else:
            weights = explicit_weights(spec, self.labels)
        import torch

        criterion = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weights, dtype=torch.float32))
        return lambda outputs, target, **_: criterion(outputs["logits"].float(), target.to(outputs["logits"]))

    # -- evaluation ---------------------------------------------------------------------------
    def score(self, examples: Any, predictions: list[Prediction]) -> dict[str, Any]:
        return scores.multi_label_metrics(np.asarray(examples["label"]) > 0.5, self.chosen(predictions),
                                          self.labels or [])

    def baseline(self, train: Any, examples: Any) -> tuple[str, list[Prediction]]:
        """The most frequent label set of train, for every example."""
        sets, counts = np.unique(np.asarray(train["label"]) > 0.5, axis=0, return_counts=True)
        common = [name for name, on in zip(self.labels or [], sets[counts.argmax()], strict=True) if on]
        return (f"most frequent label set ({', '.join(common) or 'none'})",
                [{"id": ident, "labels": common} for ident in examples["id"]])

    def scored(self, examples: Any, features: Any, outputs: Any) -> Scored | None:
        gold = (np.asarray(examples["label"]) > 0.5).astype(np.float64)
        return Scored(self.codec.example_logits(examples, features, outputs), gold, "sigmoid")

    def label_issues(self, examples: Any, predictions: list[Prediction]) -> None:
        return None  # confident learning's rule is for one class per example

    def resampled(self, examples: Any, predictions: list[Prediction]) -> Resampled:
        gold, chosen = np.asarray(examples["label"]) > 0.5, self.chosen(predictions)
        hits, extra, missed = gold & chosen, ~gold & chosen, gold & ~chosen  # examples x labels
        exact = (gold == chosen).all(axis=1)

        def statistic(draw: np.ndarray) -> dict[str, float]:
            summary = scores.multi_label_summary(hits[draw].sum(0), extra[draw].sum(0), missed[draw].sum(0),
                                                 exact[draw].mean())
            return {key: float(value) for key, value in summary.items()}

        return Resampled("examples", len(gold), statistic)

    def chosen(self, predictions: list[Prediction]) -> np.ndarray:
        """The predicted label sets as a boolean examples x labels matrix."""
        index = {name: j for j, name in enumerate(self.labels or [])}
        chosen = np.zeros((len(predictions), len(index)), dtype=bool)
        for i, prediction in enumerate(predictions):
            chosen[i, [index[name] for name in prediction["labels"]]] = True
        return chosen

    @property
    def tunes(self) -> bool:
        return self.options.tune_threshold != "none"

    def tune(self, examples: Any, features: Any, outputs: Any) -> dict[str, Any]:
        """The threshold(s) that maximise the primary metric (global) or each label's F1 (per label)
        on these examples; a label without positives here keeps the configured threshold."""
        if not self.tunes:
            return {}
        probabilities = self.codec.probabilities(self.codec.example_logits(examples, features, outputs))
        gold = np.asarray(examples["label"]) > 0.5
        chosen = probabilities[None, :, :] >= GRID[:, None, None]  # grid x examples x labels
        tp = (chosen & gold).sum(axis=1)
        fp = (chosen & ~gold).sum(axis=1)
        fn = (~chosen & gold).sum(axis=1)
        if self.options.tune_threshold == "per_label":
            f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
            best = GRID[f1.argmax(axis=0)]
            fixed = self.codec.thresholds(gold.shape[1])
            return {"threshold": [float(b) if gold[:, j].any() else float(fixed[j]) for j, b in enumerate(best)]}
        score = scores.multi_label_summary(tp, fp, fn, (chosen == gold).all(axis=2).mean(axis=1))
        return {"threshold": float(GRID[int(score[self.primary_metric].argmax())])}

    def gold(self, value: Any) -> Any:
        return [(self.labels or [])[j] for j, on in enumerate(value) if on]

    def target(self, gold: Any) -> Any:
        return [1.0 if name in gold else 0.0 for name in self.labels or []]

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              out_dir: Path) -> list[Path]:
        from finetune import plots

        return [plots.per_label_f1(metrics["per_label"], out_dir / "per_label_f1.png",
                                   title=f"{self.codec.settings.task}: F1 per label (macro {metrics['macro_f1']:.3f}, "
                                         f"micro {metrics['micro_f1']:.3f})")]

    # -- export -------------------------------------------------------------------------------
    def usage(self, folder: str, metrics: dict[str, Any]) -> dict[str, list[str]]:
        tuned = metrics.get("tuned") or {}
        threshold = tuned.get("threshold", self.codec.settings.threshold)
        how = (f"fitted on the validation split (`{self.options.tune_threshold}`)" if tuned else "as configured")
        shown = threshold if isinstance(threshold, (int, float)) else f"one per label: {threshold}"
        usage = super().usage(folder, metrics)
        rule = (f"A label is predicted when its score reaches the threshold {shown}, {how}; finetune-predict "
                "applies it, the transformers pipeline gives the scores only.")
        return usage | {"notes": [*usage["notes"], rule]}


class NumberRecipe(LabelRecipe):
    """One number per text or pair (GLUE STS-B similarity 0-5, ratings): mean squared error."""

    metric_names = ("pearson", "spearman", "mse", "mae")
    named_labels = False

    def stratum(self, example: dict[str, Any]) -> Any:
        return None

    def scored(self, examples: Any, features: Any, outputs: Any) -> None:
        return None  # a number, not probabilities

    def label_issues(self, examples: Any, predictions: list[Prediction]) -> None:
        return None

    def label_feature(self) -> Any:
        from datasets import Value

        return Value("float32")

    def label_set(self, splits: dict[str, Examples]) -> list[str]:
        # One output named after the target (the model's id2label, what the pipeline reports).
        configured = self.sources.labels
        return [str(configured[0])] if configured else [str(self.sources.label_column)]

    def encode_label(self, value: Any, index: dict[str, int], where: str) -> float:
        number = as_number(value)
        if number is None or number != number or number in (float("inf"), float("-inf")):
            raise DataError(where, f"regression target {value!r} is not a number", field=self.sources.label_column)
        return number

    def loss(self, train_features: Any, train_cfg: Any) -> Any:
        for key in ("class_weights", "label_smoothing_factor"):
            if train_cfg.get(key):
                raise FinetuneError(f"train.{key}: a regression target has no classes (task.problem_type=regression)")
        return None  # the model's own: mean squared error

    def score(self, examples: Any, predictions: list[Prediction]) -> dict[str, Any]:
        return scores.regression_metrics(list(examples["label"]), [p["value"] for p in predictions])

    def baseline(self, train: Any, examples: Any) -> tuple[str, list[Prediction]]:
        mean = round(float(np.mean(train["label"])), 6)
        return f"training mean ({mean:g})", [{"id": ident, "value": mean} for ident in examples["id"]]

    def resampled(self, examples: Any, predictions: list[Prediction]) -> Resampled:
        gold = np.asarray(examples["label"], dtype=np.float64)
        predicted = np.asarray([p["value"] for p in predictions], dtype=np.float64)

        def statistic(draw: np.ndarray) -> dict[str, float]:
            g, p = gold[draw], predicted[draw]
            return {"pearson": correlation(g, p), "spearman": correlation(rankdata(g), rankdata(p)),
                    "mse": float(np.mean((g - p) ** 2)), "mae": float(np.mean(np.abs(g - p)))}

        return Resampled("examples", len(gold), statistic)

    def gold(self, value: Any) -> Any:
        return round(float(value), 6)

    def target(self, gold: Any) -> Any:
        return float(gold)

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              out_dir: Path) -> list[Path]:
        from finetune import plots

        return [plots.scatter(list(examples["label"]), [p["value"] for p in predictions], out_dir / "scatter.png",
                              title=f"{self.codec.settings.task}: Pearson {metrics['pearson']:.3f}, "
                                    f"Spearman {metrics['spearman']:.3f}")]


RECIPES = {"single_label_classification": LabelRecipe, "multi_label_classification": LabelSetRecipe,
           "regression": NumberRecipe}


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r; 0 for a constant side (as the metric counts it)."""
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def rankdata(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata as ranks

    return ranks(values)


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


def one_kind(examples: Examples, index: dict[str, int], field: str) -> None:
    """A DataError where a label column mixes label names with integer ids (`pos`, `neg`, `0`, `1`
    would otherwise be four classes, or two classes each from two sources)."""
    first: dict[str, tuple[Any, str]] = {}
    for example in examples:
        values = example["label"] if isinstance(example["label"], list) else [example["label"]]
        for value in values:
            number = None if str(value) in index else as_number(value)
            if number is not None and number.is_integer() and index and not 0 <= number < len(index):
                continue  # no label at all: label_id says so
            kind = "an id" if number is not None and number.is_integer() else "a name"
            first.setdefault(kind, (value, example.get("_where", "")))
            if len(first) == 2:
                (name, at_name), (ident, at_id) = first["a name"], first["an id"]
                raise DataError(example.get("_where", ""), "the labels mix names and integer ids "
                                f"({name!r} at {at_name}, {ident!r} at {at_id}): write every label one way "
                                "(or list all of them as classes in task.labels)", field=field)


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


def _source(splits: dict[str, Examples]) -> str:
    """The train split's source file, for an error about the whole label set."""
    return splits["train"][0]["_where"].split(", ")[0]


def _binary(value: Any) -> bool | None:
    """A 0/1 cell (0, 1, "0", "1", 0.0, 1.0, true/false) as a bool, else None."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"0": False, "1": True, "0.0": False, "1.0": True, "true": True, "false": False}.get(text)
