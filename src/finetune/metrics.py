"""Metrics that run locally (no Hub metric scripts): classification, NER, extractive QA."""

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


# -- extractive question answering (SQuAD exact match / F1) ----------------------------------
