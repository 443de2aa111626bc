"""Single-label classification as finetune-pipeline's evaluate stage scores it: accuracy, macro
precision/recall/F1, per-class scores and the confusion matrix."""

import datasets
import evaluate

from finetune.tasks.classification.metrics import classification_metrics

_DESCRIPTION = __doc__
_INPUTS = """
Args:
    predictions: the predicted label of each example, a name (str) or an id (int).
    references: the gold label of each example, in the same form.
    labels: the label names in their order (optional): ids are read as indices into it, and the
        per-class scores and the confusion matrix follow it; without it, the sorted labels seen.
Returns:
    accuracy, f1, precision, recall (macro averages), per_class, confusion_matrix, n_eval.
"""


class Classification(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
            features=[datasets.Features({"predictions": datasets.Value("string"),
                                         "references": datasets.Value("string")}),
                      datasets.Features({"predictions": datasets.Value("int64"),
                                         "references": datasets.Value("int64")})])

    def _compute(self, predictions, references, labels=None):
        def name(value):
            return labels[value] if labels and isinstance(value, int) else str(value)

        return classification_metrics([name(r) for r in references], [name(p) for p in predictions],
                                      list(labels) if labels else None)
