"""Classification metrics computed locally: single-label, multi-label and regression."""

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
