"""Metrics that run locally (no Hub metric scripts): classification (single-label, multi-label,
regression), NER, extractive QA."""

from __future__ import annotations

from typing import Any


def classification_metrics(gold: list[str], predicted: list[str], labels: list[str] | None) -> dict[str, Any]:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    names = list(labels) if labels else sorted(set(gold) | set(predicted))
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=names, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "f1": float(f1.mean()),
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)},
        "confusion_matrix": confusion_matrix(gold, predicted, labels=names).tolist(),
        "n_eval": len(gold),
    }


def regression_metrics(gold: list[float], predicted: list[float]) -> dict[str, Any]:
    """Pearson and Spearman correlation, mean squared and absolute error.

    A constant prediction has no correlation with anything: its correlations count as 0.
    """
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    g, p = np.asarray(gold, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    varied = len(g) > 1 and g.std() > 0 and p.std() > 0
    return {
        "pearson": float(pearsonr(g, p)[0]) if varied else 0.0,
        "spearman": float(spearmanr(g, p)[0]) if varied else 0.0,
        "mse": float(np.mean((g - p) ** 2)) if len(g) else 0.0,
        "mae": float(np.mean(np.abs(g - p))) if len(g) else 0.0,
        "n_eval": len(g),
    }


def multi_label_summary(tp: Any, fp: Any, fn: Any, subset_accuracy: Any) -> dict[str, Any]:
    """Micro and macro F1 from per-label counts (last axis: labels; leading axes, e.g. thresholds, kept)."""
    import numpy as np

    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    per_label = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    micro = 2 * tp.sum(-1) / np.maximum(2 * tp.sum(-1) + fp.sum(-1) + fn.sum(-1), 1)
    return {"macro_f1": per_label.mean(-1), "micro_f1": micro, "subset_accuracy": np.asarray(subset_accuracy)}


def multi_label_metrics(gold: Any, predicted: Any, labels: list[str]) -> dict[str, Any]:
    """Macro and micro F1, micro precision/recall, subset accuracy (every label right) and
    precision/recall/F1/support per label, from boolean examples x labels matrices."""
    import numpy as np

    gold, predicted = np.asarray(gold, dtype=bool), np.asarray(predicted, dtype=bool)
    tp, fp, fn = ((gold & predicted).sum(0), (~gold & predicted).sum(0), (gold & ~predicted).sum(0))
    summary = multi_label_summary(tp, fp, fn, (gold == predicted).all(axis=1).mean() if len(gold) else 0.0)
    return {
        **{key: float(value) for key, value in summary.items()},
        "micro_precision": float(tp.sum() / max(tp.sum() + fp.sum(), 1)),
        "micro_recall": float(tp.sum() / max(tp.sum() + fn.sum(), 1)),
        "per_label": {name: {"precision": float(tp[j] / max(tp[j] + fp[j], 1)),
                             "recall": float(tp[j] / max(tp[j] + fn[j], 1)),
                             "f1": float(2 * tp[j] / max(2 * tp[j] + fp[j] + fn[j], 1)),
                             "support": int(gold[:, j].sum())} for j, name in enumerate(labels)},
        "labels_per_example": float(predicted.sum(1).mean()) if len(gold) else 0.0,
        "n_eval": len(gold),
    }


def scalar_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a metrics dict, dotted (per_class.pos.f1), for MLflow and the Trainer."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(scalar_metrics(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


# -- token classification (seqeval, scored on word-level tags) -------------------------------

def token_classification_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """seqeval entity-level precision/recall/F1 (overall micro average and per type), token accuracy.

    Both arguments hold one IOB2 tag per *word* (never per sub-token: scoring sub-token sequences
    counts a split word's continuation pieces as extra entities, transformers #14043). Entities
    follow conlleval (seqeval's default mode): an `I-X` after `O` starts an entity. Also returns
    the word-level confusion of entity types (`O` included) for the confusion plot.
    """
    from seqeval.metrics import classification_report
    from seqeval.metrics.sequence_labeling import get_entities

    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
    words = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, predicted, strict=True) for a, b in zip(g, p, strict=True))
    report = classification_report(gold, predicted, output_dict=True, zero_division=0) if words else {}
    overall = report.get("micro avg", {})
    per_type = {name: {"precision": float(row["precision"]), "recall": float(row["recall"]),
                       "f1": float(row["f1-score"]), "support": int(row["support"])}
                for name, row in sorted(report.items()) if not name.endswith(" avg")}

    def word_type(tag: str) -> str:
        return "O" if tag == "O" or "-" not in tag else tag.split("-", 1)[1]

    gold_types = [word_type(t) for g in gold for t in g]
    pred_types = [word_type(t) for p in predicted for t in p]
    names = ["O"] + sorted((set(gold_types) | set(pred_types)) - {"O"})
    index = {name: i for i, name in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for g, p in zip(gold_types, pred_types, strict=True):
        matrix[index[g]][index[p]] += 1
    return {
        "precision": float(overall.get("precision", 0.0)),
        "recall": float(overall.get("recall", 0.0)),
        "f1": float(overall.get("f1-score", 0.0)),
        "accuracy": correct / words if words else 0.0,
        "per_type": per_type,
        "type_confusion": {"labels": names, "matrix": matrix},
        "n_sentences": len(gold),
        "n_words": words,
        "n_entities": len(get_entities(gold)) if words else 0,
    }



# -- extractive question answering (SQuAD exact match / F1) ----------------------------------
import re  # noqa: E402  (each section imports what it needs, so sections merge independently)
import string  # noqa: E402
from collections import Counter  # noqa: E402

# Our own implementation of the official SQuAD v1.1 / v2.0 evaluation (the Hub metric cannot be
# loaded offline): answers are compared after the official normalisation, each prediction is
# scored against its best-matching gold answer, and the mean is reported on a 0-100 scale.

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 of the normalised strings (1.0 when both are empty, as in v2.0)."""
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def _token_f1(predicted: list[str], expected: list[str]) -> float:
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_gold(answers: list[str], version_2: bool) -> list[str]:
    """The gold strings a prediction is scored against: v2.0 drops answers that normalise to
    nothing and scores an unanswerable question against the empty string."""
    if version_2:
        answers = [a for a in answers if normalize_answer(a)]
    return list(answers) or [""]


def squad_scores(prediction: str, answers: list[str], version_2: bool = False) -> tuple[float, float]:
    """(exact match, F1) of one prediction: the maximum over its gold answers, each in [0, 1]."""
    predicted = normalize_answer(prediction)
    gold = [normalize_answer(g) for g in squad_gold(answers, version_2)]
    return (max(float(predicted == g) for g in gold),
            max(_token_f1(predicted.split(), g.split()) for g in gold))


def squad_metrics(predictions: dict[str, str], gold: dict[str, list[str]],
                  version_2: bool = False) -> dict[str, Any]:
    """exact_match and f1 (0-100) over the questions of `gold`, plus HasAns/NoAns splits for v2.0.

    A question without a prediction counts as answered with the empty string.
    """
    exact, f1, has_answer = {}, {}, {}
    for qid, answers in gold.items():
        exact[qid], f1[qid] = squad_scores(predictions.get(qid, ""), answers, version_2)
        has_answer[qid] = bool([a for a in answers if normalize_answer(a)] if version_2 else answers)
    result: dict[str, Any] = _squad_totals(exact, f1, list(gold))
    if version_2:
        for name, wanted in (("HasAns", True), ("NoAns", False)):
            ids = [qid for qid in gold if has_answer[qid] == wanted]
            if ids:
                part = _squad_totals(exact, f1, ids)
                result.update({f"{name}_exact": part["exact_match"], f"{name}_f1": part["f1"],
                               f"{name}_total": part["n_eval"]})
    return result


def best_null_threshold(span_f1: dict[str, float], null_score_diff: dict[str, float],
                        has_answer: dict[str, bool]) -> tuple[float, float]:
    """(best F1 on 0-100, its threshold) over values of `task.null_score_diff_threshold` (v2.0).

    A question is answered "" when null_score - best_span_score > threshold; `span_f1` is the F1
    of each question's best span. This tells the user which threshold to set.
    """
    if not span_f1:
        return 0.0, 0.0
    ordered = sorted(span_f1, key=lambda q: null_score_diff[q])
    # Below every diff all questions are answered "": only the unanswerable ones score.
    score = sum(0.0 if has_answer[q] else 1.0 for q in ordered)
    best, threshold = score, null_score_diff[ordered[0]] - 1.0
    for qid in ordered:  # raising the threshold to this diff switches the question to its span
        score += span_f1[qid] - (0.0 if has_answer[qid] else 1.0)
        if score > best:
            best, threshold = score, null_score_diff[qid]
    return 100.0 * best / len(ordered), threshold


def _squad_totals(exact: dict[str, float], f1: dict[str, float], ids: list[str]) -> dict[str, Any]:
    n = len(ids)
    return {"exact_match": 100.0 * sum(exact[q] for q in ids) / n if n else 0.0,
            "f1": 100.0 * sum(f1[q] for q in ids) / n if n else 0.0, "n_eval": n}
