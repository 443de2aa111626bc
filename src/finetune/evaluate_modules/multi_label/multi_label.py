"""Multi-label classification as finetune-pipeline's evaluate stage scores it: macro and micro F1,
micro precision/recall, subset accuracy and per-label scores."""

import datasets
import evaluate
import numpy

from finetune.tasks.classification.metrics import multi_label_metrics

_DESCRIPTION = __doc__
_INPUTS = """
Args:
    predictions: the predicted labels of each example: a list of names, or a 0/1 list per label.
    references: the gold labels of each example, in the same form.
    labels: the label names in their order (required for names; for 0/1 lists it names the columns).
Returns:
    macro_f1, micro_f1, subset_accuracy, micro_precision, micro_recall, per_label,
    labels_per_example, n_eval.
"""


class MultiLabel(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
            features=[datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                         "references": datasets.Sequence(datasets.Value("string"))}),
                      datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64")),
                                         "references": datasets.Sequence(datasets.Value("int64"))})])

    def _compute(self, predictions, references, labels=None):
        rows = list(predictions) + list(references)
        if rows and rows[0] and not isinstance(rows[0][0], str):  # 0/1 per label
            width = len(rows[0])
            names = list(labels) if labels else [str(j) for j in range(width)]
            return multi_label_metrics(numpy.asarray(references) > 0, numpy.asarray(predictions) > 0, names)
        if not labels:
            raise ValueError("labels: the label names are needed to score label lists")
        index = {label: j for j, label in enumerate(labels)}

        def matrix(sets):
            out = numpy.zeros((len(sets), len(labels)), dtype=bool)
            for i, chosen in enumerate(sets):
                for label in chosen:
                    if label not in index:
                        raise ValueError(f"example {i}: label '{label}' is not one of labels")
                    out[i, index[label]] = True
            return out

        return multi_label_metrics(matrix(references), matrix(predictions), list(labels))
