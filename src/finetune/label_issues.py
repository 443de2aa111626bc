"""The examples whose given label the model most confidently contradicts (confident learning).

Northcutt et al.'s rule on held-out probabilities (out-of-fold from `stages/kfold.py`, else the
validation split's): class j's threshold is the mean probability of j over the examples labelled
j (how sure the model is of that class when the label is right). An example is confidently of
class j when p_j reaches j's threshold; of the classes it is confidently of, the most probable is
its suggested label. An example whose suggested label is not its given one is an issue, ranked by
the margin p(suggested) - p(given): the surest contradictions first.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from finetune.io import atomic_file

LABEL_ISSUES = "label_issues.csv"
COLUMNS = ("id", "text", "given_label", "suggested_label", "confidence", "given_probability", "margin")


def thresholds(probabilities: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Per class, the mean probability of that class over the examples labelled with it (a class
    no example carries gets 1.0: nothing is confidently of it)."""
    classes = probabilities.shape[1]
    return np.array([probabilities[given == j, j].mean() if (given == j).any() else 1.0 for j in range(classes)])


def find(probabilities: np.ndarray, given: np.ndarray) -> list[tuple[int, int, float]]:
    """(row, suggested class, margin) of every issue, the largest margin first."""
    probabilities, given = np.asarray(probabilities, dtype=np.float64), np.asarray(given, dtype=np.int64)
    confident = probabilities >= thresholds(probabilities, given)[None, :]
    masked = np.where(confident, probabilities, -1.0)
    suggested = masked.argmax(axis=1)
    rows = np.arange(len(given))
    issue = confident.any(axis=1) & (suggested != given)
    margin = probabilities[rows, suggested] - probabilities[rows, given]
    found = [(int(i), int(suggested[i]), float(margin[i])) for i in np.flatnonzero(issue)]
    return sorted(found, key=lambda item: (-item[2], item[0]))


def issue_rows(ids: list[str], texts: list[str], given: np.ndarray, probabilities: np.ndarray,
               labels: list[str]) -> list[dict[str, Any]]:
    """The issues as rows of `COLUMNS`, the surest first."""
    return [{"id": ids[i], "text": texts[i], "given_label": labels[int(given[i])], "suggested_label": labels[j],
             "confidence": round(float(probabilities[i, j]), 6),
             "given_probability": round(float(probabilities[i, int(given[i])]), 6), "margin": round(margin, 6)}
            for i, j, margin in find(probabilities, given)]


def write_label_issues(rows: list[dict[str, Any]], path: Path) -> Path:
    with atomic_file(path, newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_label_issues(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
