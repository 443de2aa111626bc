"""SQuAD exact match and F1 (v1.1 and v2.0), computed locally."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

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
