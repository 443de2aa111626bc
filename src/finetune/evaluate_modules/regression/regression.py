"""Regression as finetune-pipeline's evaluate stage scores it: Pearson and Spearman correlation,
mean squared and mean absolute error (a constant prediction correlates 0)."""

import datasets
import evaluate

from finetune.tasks.classification.metrics import regression_metrics

_DESCRIPTION = __doc__
_INPUTS = """
Args:
    predictions: the predicted value of each example.
    references: the gold value of each example.
Returns:
    pearson, spearman, mse, mae, n_eval.
"""


class Regression(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("float64")}))

    def _compute(self, predictions, references):
        return regression_metrics(list(references), list(predictions))
