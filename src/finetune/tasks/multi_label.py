"""Multi-label classification: a set of labels per text or sentence pair (GoEmotions, tagging).

Labels come as a list (JSON), a delimited string in a table (`4,27`, `data.label_delimiter`) or one
0/1 column per label (`data.label_columns`). One sigmoid per label, binary cross-entropy (positive
weights per label with `train.class_weights`). A label is predicted when its probability reaches
`task.threshold` (one number, or one per label); `task.tune_threshold: global | per_label` fits it
on the validation split instead, and the fitted value travels with the export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from finetune import metrics as metric_fns
from finetune.data.readers import require_field
from finetune.errors import DataError, FinetuneError
from finetune.tasks import classification
from finetune.tasks.base import Prediction, logits_of

TUNING = ("none", "global", "per_label")
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # thresholds tried when tuning


class Family(classification.Family):
    metric_names = ("macro_f1", "micro_f1", "subset_accuracy")

    def __init__(self, settings: classification.Settings, cfg: Any = None):
        super().__init__(settings, cfg)
        tuning = self.option("task", "tune_threshold", "none") if cfg is not None else "none"
        if tuning not in TUNING:
            raise FinetuneError(f"task.tune_threshold: '{tuning}' is not one of {', '.join(TUNING)}")
        self.tuning = tuning

    # -- data -------------------------------------------------------------------------------
    def read_label(self, path: Path, where: str, row: dict[str, Any]) -> list[Any]:
        data = self.cfg.data
        if data.get("label_columns"):
            chosen = []
            for column in data.label_columns:
                flag = _binary(require_field(path, where, row, column))
                if flag is None:
                    raise DataError(path, f"expected 0 or 1, got {row[column]!r}", where=where, field=column)
                if flag:
                    chosen.append(column)
            return chosen
        value = require_field(path, where, row, data.label_column)
        if value is None:
            return []
        if isinstance(value, str):
            delimiter = data.get("label_delimiter") or ","
            return [part.strip() for part in value.split(delimiter) if part.strip()]
        return list(value) if isinstance(value, list) else [value]

    def labels(self, splits: dict[str, list[dict[str, Any]]]) -> list[str]:
        data, task = self.cfg.data, self.cfg.task
        if task.get("labels"):
            return [str(label) for label in task.labels]
        if data.get("label_columns"):
            return [str(column) for column in data.label_columns]
        return sorted({str(label) for example in splits["train"] for label in example["label"]})

    def label_feature(self, labels: list[str] | None) -> Any:
        from datasets import Sequence, Value

        return Sequence(Value("float32"), length=len(labels or []))

    def encode_label(self, value: Any, index: dict[str, int], where: str) -> list[float]:
        field = self.cfg.data.get("label_columns") and "label columns" or self.cfg.data.label_column
        target = [0.0] * len(index)
        for item in value:
            target[classification.label_id(item, index, where, field)] = 1.0
        if not any(target) and self.option("data", "empty_labels", "error") != "allow":
            raise DataError(where, "no label (set data.empty_labels=allow if an example may have none)", field=field)
        return target

    # -- model ------------------------------------------------------------------------------
    def loss(self, train_features: Any, labels: list[str] | None, train_cfg: Any) -> Any:
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
            weights = classification.explicit_weights(spec, labels)
        import torch

        criterion = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weights, dtype=torch.float32))
        return lambda outputs, target, **_: criterion(outputs["logits"].float(), target.to(outputs["logits"]))

    # -- predictions and scores -------------------------------------------------------------
    def thresholds(self, size: int) -> np.ndarray:
        value = self.settings.threshold
        values = np.asarray(value if isinstance(value, list) else [value] * size, dtype=np.float64)
        if values.shape != (size,):
            raise FinetuneError(f"task.threshold: {len(values)} values for {size} labels")
        return values

    def predict_rows(self, logits: Any, names: list[str]) -> list[dict[str, Any]]:
        probabilities = _sigmoid(logits)
        chosen = probabilities >= self.thresholds(len(names))
        rows = []
        for p, on in zip(probabilities, chosen, strict=True):
            order = sorted(np.flatnonzero(on), key=lambda j: -p[j])
            rows.append({"labels": [names[j] for j in order],
                         "probabilities": {name: round(float(q), 6) for name, q in zip(names, p, strict=True)}})
        return rows

    def score(self, examples: Any, predictions: list[Prediction], labels: list[str] | None) -> dict[str, Any]:
        names = labels or []
        index = {name: j for j, name in enumerate(names)}
        predicted = np.zeros((len(predictions), len(names)), dtype=bool)
        for i, prediction in enumerate(predictions):
            predicted[i, [index[name] for name in prediction["labels"]]] = True
        return metric_fns.multi_label_metrics(np.asarray(examples["label"]) > 0.5, predicted, names)

    @property
    def tunes(self) -> bool:
        return self.tuning != "none"

    def tune(self, examples: Any, features: Any, outputs: Any, labels: list[str] | None) -> dict[str, Any]:
        """The threshold(s) that maximise the primary metric (global) or each label's F1 (per label)
        on these examples; a label without positives here keeps the configured threshold."""
        if not self.tunes:
            return {}
        probabilities = _sigmoid(logits_of(outputs))
        gold = np.asarray(examples["label"]) > 0.5
        chosen = probabilities[None, :, :] >= GRID[:, None, None]  # grid x examples x labels
        tp = (chosen & gold).sum(axis=1)
        fp = (chosen & ~gold).sum(axis=1)
        fn = (~chosen & gold).sum(axis=1)
        if self.tuning == "per_label":
            f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
            best = GRID[f1.argmax(axis=0)]
            fixed = self.thresholds(gold.shape[1])
            return {"threshold": [float(b) if gold[:, j].any() else float(fixed[j]) for j, b in enumerate(best)]}
        score = metric_fns.multi_label_summary(tp, fp, fn, (chosen == gold).all(axis=2).mean(axis=1))
        return {"threshold": float(GRID[int(score[self.primary_metric].argmax())])}

    def gold(self, value: Any, labels: list[str]) -> Any:
        return [labels[j] for j, on in enumerate(value) if on]

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              labels: list[str] | None, out_dir: Path) -> list[Path]:
        from finetune import plots

        return [plots.per_label_f1(metrics["per_label"], out_dir / "per_label_f1.png",
                                   title=f"{self.settings.task}: F1 per label (macro {metrics['macro_f1']:.3f}, "
                                         f"micro {metrics['micro_f1']:.3f})")]


def _sigmoid(logits: Any) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def _binary(value: Any) -> bool | None:
    """A 0/1 cell (0, 1, "0", "1", 0.0, 1.0, true/false) as a bool, else None."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"0": False, "1": True, "0.0": False, "1.0": True, "true": True, "false": False}.get(text)
