"""Confidence intervals on the evaluate stage's numbers: a seeded percentile bootstrap over the units
a family scores (examples; sentences for NER; questions for QA), so a difference inside the noise
reads as one.

A family gives the per-unit statistics once (`Recipe.resampled`); each resample then only sums or
averages them, so 1,000 resamples of a test set cost a fraction of a second, not 1,000 scorings.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Resampled:
    """The metrics of any resample of a split's scored units, given the resample's unit indices."""

    unit: str  # what one draw is: "examples", "sentences", "questions"
    size: int  # units in the split
    statistic: Callable[[np.ndarray], dict[str, float]]


def bootstrap(resampled: Resampled, *, resamples: int, level: float, seed: int) -> dict[str, Any]:
    """`<metric>_ci_low` / `<metric>_ci_high` for every metric of `resampled.statistic` (the
    percentile interval at `level`), and `ci`: how they were drawn."""
    intervals: dict[str, Any] = {}
    for key, values in draws(resampled, resamples, seed).items():
        low, high = percentiles(values, level)
        intervals |= {f"{key}_ci_low": low, f"{key}_ci_high": high}
    return intervals | {"ci": {"level": level, "resamples": resamples, "seed": seed, "unit": resampled.unit,
                               "units": resampled.size}}


def paired_difference(model: Resampled, other: Resampled, metric: str, *, resamples: int, level: float,
                      seed: int) -> dict[str, float]:
    """`metric` of `model` minus that of `other` on the same units, with its paired-bootstrap interval
    (both scored on the same resamples) and a two-sided bootstrap p-value for "no difference"."""
    difference = Resampled(model.unit, model.size,
                           lambda draw: {"difference": model.statistic(draw)[metric] - other.statistic(draw)[metric]})
    differences = draws(difference, resamples, seed)["difference"]
    low, high = percentiles(differences, level)
    p_value = min(1.0, 2 * min(float(np.mean(differences <= 0)), float(np.mean(differences >= 0))))
    return {"difference": float(difference.statistic(np.arange(model.size))["difference"]),
            "difference_ci_low": low, "difference_ci_high": high, "p_value": p_value}


def clearly_better(difference: dict[str, float], greater_is_better: bool) -> bool:
    """Whether a `paired_difference`'s interval lies wholly on the better side of zero."""
    return difference["difference_ci_low"] > 0 if greater_is_better else difference["difference_ci_high"] < 0


def draws(resampled: Resampled, resamples: int, seed: int) -> dict[str, np.ndarray]:
    """Each metric of `resampled.statistic` on `resamples` seeded resamples of its units."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = defaultdict(list)
    for _ in range(resamples):
        for key, value in resampled.statistic(rng.integers(0, resampled.size, resampled.size)).items():
            values[key].append(float(value))
    return {key: np.asarray(found) for key, found in values.items()}


def percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` share of `values`: (low, high)."""
    tail = (1.0 - level) / 2
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The interval of the mean of `values` across runs (seeds, folds): Student's t with n - 1 degrees
    of freedom; None for fewer than two values."""
    import math
    import statistics

    from scipy.stats import t as student

    if len(values) < 2:
        return None
    mean = statistics.mean(values)
    half = float(student.ppf((1 + level) / 2, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """`numerator / denominator`, 0 where the denominator is 0 (as scikit-learn's zero_division=0)."""
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
