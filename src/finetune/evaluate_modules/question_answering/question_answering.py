"""Extractive question answering as finetune-pipeline's evaluate stage scores it: SQuAD exact
match and F1 (0-100) after the official normalisation, with HasAns/NoAns parts for SQuAD 2.0."""

import datasets
import evaluate

from finetune.tasks.question_answering.metrics import squad_metrics

_DESCRIPTION = __doc__
_INPUTS = """
Args:
    predictions: {"id": str, "prediction_text": str} per question ("" for no answer).
    references: {"id": str, "answers": {"text": [str], "answer_start": [int]}} per question.
    version_2: True for SQuAD 2.0 scoring (unanswerable questions score against "").
Returns:
    exact_match, f1, n_eval, and with version_2 HasAns_/NoAns_ exact, f1 and total.
"""


class QuestionAnswering(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {"id": datasets.Value("string"),
                               "answers": datasets.Sequence({"text": datasets.Value("string"),
                                                             "answer_start": datasets.Value("int32")})}}))

    def _compute(self, predictions, references, version_2=False):
        predicted = {p["id"]: p["prediction_text"] for p in predictions}
        gold = {r["id"]: list(r["answers"]["text"]) for r in references}
        return squad_metrics(predicted, gold, version_2)
