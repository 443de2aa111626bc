"""Token classification (NER) as finetune-pipeline's evaluate stage scores it: seqeval's entity
precision/recall/F1 (overall and per type) and token accuracy, on one IOB2 tag per word."""

import datasets
import evaluate

from finetune.tasks.token_classification.metrics import token_classification_metrics

_DESCRIPTION = __doc__
_INPUTS = """
Args:
    predictions: the predicted tags of each sentence, one per word (not per sub-token).
    references: the gold tags of each sentence, one per word.
Returns:
    precision, recall, f1, accuracy, per_type, type_confusion, n_sentences, n_words, n_entities.
"""


class TokenClassification(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        return token_classification_metrics([list(r) for r in references], [list(p) for p in predictions])
