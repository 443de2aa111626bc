"""Sequence regression: one number per text or sentence pair (GLUE STS-B similarity 0-5, ratings).

One output unit trained with mean squared error on the raw target. The primary metric is Pearson
correlation (as GLUE reports STS-B) unless `task.metric` names another; `mse` and `mae` select the
best checkpoint by the lowest value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune import metrics as metric_fns
from finetune.errors import DataError, FinetuneError
from finetune.tasks import classification
from finetune.tasks.base import Prediction


class Family(classification.Family):
    metric_names = ("pearson", "spearman", "mse", "mae")

    def label_feature(self, labels: list[str] | None) -> Any:
        from datasets import Value

        return Value("float32")

    def labels(self, splits: dict[str, list[dict[str, Any]]]) -> list[str]:
        # One output named after the target (the model's id2label, what the pipeline reports).
        configured = self.cfg.task.get("labels")
        return [str(configured[0])] if configured else [str(self.cfg.data.label_column)]

    def encode_label(self, value: Any, index: dict[str, int], where: str) -> float:
        number = classification.as_number(value)
        if number is None or number != number or number in (float("inf"), float("-inf")):
            raise DataError(where, f"regression target {value!r} is not a number", field=self.cfg.data.label_column)
        return number

    def loss(self, train_features: Any, labels: list[str] | None, train_cfg: Any) -> Any:
        for key in ("class_weights", "label_smoothing_factor"):
            if train_cfg.get(key):
                raise FinetuneError(f"train.{key}: a regression target has no classes (task.problem_type=regression)")
        return None  # the model's own: mean squared error

    def predict_rows(self, logits: Any, names: list[str]) -> list[dict[str, Any]]:
        return [{"value": round(float(row[0]), 6)} for row in logits]

    def score(self, examples: Any, predictions: list[Prediction], labels: list[str] | None) -> dict[str, Any]:
        return metric_fns.regression_metrics(list(examples["label"]), [p["value"] for p in predictions])

    def gold(self, value: Any, labels: list[str]) -> Any:
        return round(float(value), 6)

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              labels: list[str] | None, out_dir: Path) -> list[Path]:
        from finetune import plots

        return [plots.scatter(list(examples["label"]), [p["value"] for p in predictions], out_dir / "scatter.png",
                              title=f"{self.settings.task}: Pearson {metrics['pearson']:.3f}, "
                                    f"Spearman {metrics['spearman']:.3f}")]
