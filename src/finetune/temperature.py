"""Calibrated probabilities: temperature scaling fitted on validation, and how well it calibrates.

One temperature T divides every logit before the softmax (single-label, NER tags) or the sigmoid
(multi-label): it keeps the predicted class and changes only how sure the model says it is. The
evaluate stage fits T on the validation split (the negative log-likelihood's minimum over log T)
and reports, on the reported split, before (T = 1) and after:

- ECE, the expected calibration error: predictions binned by confidence (15 equal-width bins),
  the bins' |accuracy - mean confidence| weighted by their share;
- the Brier score (mean squared distance of the probabilities to the one-hot gold);
- the negative log-likelihood.

A multi-label output counts as one yes/no prediction per label (its confidence max(p, 1 - p)).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

BINS = 15
KINDS = ("softmax", "sigmoid")


@dataclasses.dataclass(frozen=True)
class Scored:
    """The logits of the scored units (examples, NER words) with their gold."""

    logits: np.ndarray  # units x classes
    gold: np.ndarray  # softmax: the gold class id per unit; sigmoid: units x labels of 0/1
    kind: str  # softmax | sigmoid


def probabilities(logits: Any, kind: str, temperature: float = 1.0) -> np.ndarray:
    """The softmax or sigmoid of `logits / temperature`, in float64."""
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-scaled))
    exp = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def fit_temperature(scored: Scored) -> float:
    """The temperature minimising the negative log-likelihood of the gold (searched over log T)."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda log_t: negative_log_likelihood(scored, float(np.exp(log_t))),
                            bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return round(float(np.exp(found.x)), 4)


def negative_log_likelihood(scored: Scored, temperature: float = 1.0) -> float:
    p = np.clip(probabilities(scored.logits, scored.kind, temperature), 1e-12, 1.0)
    if scored.kind == "sigmoid":
        gold = scored.gold.astype(bool)
        return float(-np.mean(np.where(gold, np.log(p), np.log1p(-np.minimum(p, 1 - 1e-12)))))
    return float(-np.mean(np.log(p[np.arange(len(p)), scored.gold])))


def confidences(scored: Scored, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of every prediction: the top class's probability and whether it is
    the gold one; for sigmoid outputs, per (unit, label): max(p, 1 - p) and whether p >= 0.5 is."""
    p = probabilities(scored.logits, scored.kind, temperature)
    if scored.kind == "sigmoid":
        gold = scored.gold.astype(bool).ravel()
        p = p.ravel()
        return np.maximum(p, 1 - p), (p >= 0.5) == gold
    return p.max(axis=1), p.argmax(axis=1) == scored.gold


def reliability(scored: Scored, temperature: float = 1.0, bins: int = BINS) -> list[dict[str, float]]:
    """Per equal-width confidence bin with predictions: its range, count, mean confidence, accuracy."""
    confidence, correct = confidences(scored, temperature)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(inside.sum()),
                         "confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean())})
    return rows


def expected_calibration_error(scored: Scored, temperature: float = 1.0, bins: int = BINS) -> float:
    rows = reliability(scored, temperature, bins)
    total = sum(row["count"] for row in rows)
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in rows) / max(total, 1))


def brier(scored: Scored, temperature: float = 1.0) -> float:
    p = probabilities(scored.logits, scored.kind, temperature)
    if scored.kind == "sigmoid":
        return float(np.mean((p - scored.gold) ** 2))
    onehot = np.zeros_like(p)
    onehot[np.arange(len(p)), scored.gold] = 1.0
    return float(np.mean(((p - onehot) ** 2).sum(axis=1)))


def calibration_report(scored: Scored, temperature: float) -> dict[str, Any]:
    """ECE, Brier and NLL of the raw (T = 1) and the calibrated probabilities on these units."""
    report: dict[str, Any] = {"temperature": temperature, "units": len(scored.logits), "bins": BINS}
    for name, t in (("raw", 1.0), ("calibrated", temperature)):
        report[name] = {"ece": expected_calibration_error(scored, t), "brier": brier(scored, t),
                        "nll": negative_log_likelihood(scored, t)}
    return report
