"""The QA plot: F1 by question word and by gold answer length."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from finetune import plots

QUESTION_WORDS = ("what", "which", "who", "when", "where", "why", "how many", "how much", "how")
LENGTH_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 10**9))


def question_type(question: str) -> str:
    """The question word (what/who/when/.../other), for the per-type F1 breakdown."""
    text = question.lower()
    for word in QUESTION_WORDS:
        if re.search(rf"\b{word}\b", text):
            return word
    return "other"


def answer_length_bucket(answers: list[str]) -> str:
    """Bucket of the shortest gold answer's length in words ("none" for an unanswerable one)."""
    lengths = [len(a.split()) for a in answers if a.strip()]
    if not lengths:
        return "none"
    n = min(lengths)
    for low, high in LENGTH_BUCKETS:
        if low <= n <= high:
            return str(low) if low == high else (f"{low}-{high}" if high < 10**9 else f"{low}+")
    return "?"


def plot_breakdown(rows: list[tuple[str, str, float]], path: Path, title: str = "") -> Path:
    """F1 (bars, 0-100) with question counts, by question word and by gold answer length."""
    plt = plots.pyplot()
    length_order = ["none"] + [str(lo) if lo == hi else (f"{lo}-{hi}" if hi < 10**9 else f"{lo}+")
                               for lo, hi in LENGTH_BUCKETS]
    type_order = [*QUESTION_WORDS, "other"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for ax, column, order, label in ((axes[0], 0, type_order, "question word"),
                                     (axes[1], 1, length_order, "gold answer length (words)")):
        groups: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            groups[row[column]].append(row[2])
        names = [name for name in order if name in groups]
        values = [100.0 * sum(groups[n]) / len(groups[n]) for n in names]
        bars = ax.bar(range(len(names)), values, color="tab:blue")
        for bar, name in zip(bars, names, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, f"n={len(groups[name])}",
                    ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set(ylim=(0, 110), ylabel="F1", xlabel=label)
    fig.suptitle(title)
    return plots.save(fig, path)
