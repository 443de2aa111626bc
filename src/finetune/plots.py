"""Plots logged as artifacts: confusion matrices, learning curves, regression scatter, per-label F1;
and the comparison report's: metric by model, overlaid curves, parameter vs metric, optimisation
history (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(matrix: list[list[int]], labels: list[str] | None, path: Path, title: str = "") -> Path:
    """A row-normalised confusion matrix with counts, gold labels on the rows."""
    import numpy as np

    plt = pyplot()
    counts = np.asarray(matrix, dtype=float)
    names = labels or [str(i) for i in range(len(counts))]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.6 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of gold row")
    ax.set_title(title)
    return save(fig, path)


def scatter(gold: list[float], predicted: list[float], path: Path, title: str = "") -> Path:
    """Predicted against gold values, with the diagonal where they would agree."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    ax.scatter(gold, predicted, s=6, alpha=0.35, edgecolors="none")
    low, high = min(min(gold), min(predicted)), max(max(gold), max(predicted))
    ax.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--", label="predicted = gold")
    ax.set(xlabel="gold", ylabel="predicted", title=title)
    ax.legend(loc="upper left")
    return save(fig, path)


def reliability_diagram(calibration: dict[str, Any], scored: Any, path: Path, title: str = "") -> Path:
    """Accuracy against confidence per bin, raw and temperature-scaled side by side, with each
    bin's share of the predictions below: a calibrated model lies on the diagonal."""
    from finetune.temperature import reliability

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for column, (name, temperature) in enumerate((("raw", 1.0), ("calibrated", calibration["temperature"]))):
        bins = reliability(scored, temperature)
        centres = [(b["low"] + b["high"]) / 2 for b in bins]
        width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
        ax, below = axes[0, column], axes[1, column]
        ax.bar(centres, [b["accuracy"] for b in bins], width=width * 0.9, color="tab:blue", alpha=0.75,
               label="accuracy")
        ax.plot([b["confidence"] for b in bins], [b["confidence"] for b in bins], "o", color="tab:red",
                markersize=3, label="mean confidence")
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        scores = calibration[name]
        ax.set(ylim=(0, 1), ylabel="accuracy",
               title=f"{name} (T = {temperature:g})\nECE {scores['ece']:.4f}, Brier {scores['brier']:.4f}")
        ax.legend(loc="upper left", fontsize=8)
        below.bar(centres, [b["count"] / calibration["units"] for b in bins], width=width * 0.9, color="grey")
        below.set(xlim=(0, 1), xlabel="confidence", ylabel="share")
    fig.suptitle(f"{title}\n{calibration['units']} predictions, {calibration['bins']} equal-width bins")
    return save(fig, path)


def per_label_f1(per_label: dict[str, dict[str, float]], path: Path, title: str = "") -> Path:
    """One horizontal bar per label (F1), most frequent label on top, its support written beside it."""
    plt = pyplot()
    names = sorted(per_label, key=lambda name: -per_label[name]["support"])
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * len(names)))
    ax.barh(range(len(names)), [per_label[n]["f1"] for n in names], color="tab:blue")
    for i, name in enumerate(names):
        ax.text(per_label[name]["f1"] + 0.01, i, f"n={per_label[name]['support']}", va="center", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.12), xlabel="F1", title=title)
    return save(fig, path)


def learning_curves(history: list[dict[str, Any]], path: Path, primary_metric: str, title: str = "") -> Path:
    """Train loss and learning rate per step, eval loss and the primary metric per evaluation."""
    plt = pyplot()
    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "eval_loss" in h]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot([h["step"] for h in train], [h["loss"] for h in train], label="train")
    axes[0].plot([h["step"] for h in evals], [h["eval_loss"] for h in evals], "o-", label="eval")
    axes[0].set(title="loss", xlabel="step")
    axes[0].legend()
    axes[1].plot([h["step"] for h in train], [h.get("learning_rate", 0) for h in train])
    axes[1].set(title="learning rate", xlabel="step")
    key = f"eval_{primary_metric}"
    axes[2].plot([h["step"] for h in evals if key in h], [h[key] for h in evals if key in h], "o-")
    axes[2].set(title=f"eval {primary_metric}", xlabel="step")
    fig.suptitle(title)
    return save(fig, path)


def metric_by_model(values: dict[str, list[float]], path: Path, ylabel: str, title: str = "") -> Path:
    """Dot and whisker per model: each run a dot, the mean a bar-free marker, and the 95% t-interval
    of the mean across its seeds as the whisker (no bar, so a cut axis exaggerates nothing)."""
    import statistics

    from finetune.intervals import t_interval

    plt = pyplot()
    names = sorted(values, key=lambda m: -statistics.mean(values[m]))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 + 1.3 * len(names)), 3.8))  # room for the two-line title
    for i, name in enumerate(names):
        runs, mean = values[name], statistics.mean(values[name])
        low, _ = t_interval(runs) or (mean, mean)
        half = mean - low
        ax.errorbar([i], [mean], yerr=[[half], [half]], fmt="D", color="tab:blue", capsize=8, markersize=7, zorder=2)
        ax.scatter([i] * len(runs), runs, color="black", s=12, zorder=3)
        note = f"{mean:.3f}\nn={len(runs)}" + (", no interval" if len(runs) == 1 else "")
        ax.annotate(note, (i, mean), textcoords="offset points", xytext=(12, -6), fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set(ylabel=ylabel, title=title + ("\nwhiskers: 95% interval of the mean across seeds" if names else ""))
    return save(fig, path)


def overlaid_curves(runs: dict[str, dict[str, list[tuple[int, float]]]], keys: tuple[str, ...], path: Path,
                    title: str = "") -> Path:
    """One panel per metric key, one line per run (steps on x)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for name, history in runs.items():
            points = history.get(key) or []
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], "o-" if len(points) < 12 else "-",
                        markersize=3, label=name)
        ax.set(title=key, xlabel="step")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    return save(fig, path)


def param_vs_metric(params: list[str], metric: list[float], groups: list[str], key: str, ylabel: str, path: Path,
                    title: str = "") -> Path:
    """The metric of each run against one swept parameter, a colour per group (model); a positive
    numeric parameter spanning more than a decade gets a log axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    numbers = [_as_float(p) for p in params]
    numeric = all(n is not None for n in numbers)
    categories = sorted(set(params), key=lambda p: (_as_float(p) is None, _as_float(p) or 0, p))
    xs = numbers if numeric else [categories.index(p) for p in params]
    for group in sorted(set(groups)):
        chosen = [i for i, g in enumerate(groups) if g == group]
        ax.scatter([xs[i] for i in chosen], [metric[i] for i in chosen], label=group, s=30, alpha=0.8)
    if numeric and min(numbers) > 0 and max(numbers) / min(numbers) > 10:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap
    if numeric and len(set(numbers)) <= 6:  # a grid: tick exactly its values
        ax.set_xticks(sorted(set(numbers)), [f"{n:.3g}" for n in sorted(set(numbers))])
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
    ax.set(xlabel=key, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return save(fig, path)


def optimization_history(values: list[float], greater_is_better: bool, ylabel: str, path: Path,
                         title: str = "") -> Path:
    """Each trial's value in order, and the best value so far."""
    plt = pyplot()
    best, running = [], None
    for value in values:
        running = value if running is None else (max if greater_is_better else min)(running, value)
        best.append(running)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(range(len(values)), values, "o", label="trial")
    ax.plot(range(len(values)), best, "-", color="tab:red", label="best so far")
    ax.set(xlabel="trial (in order)", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return save(fig, path)


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def save(fig: Any, path: Path) -> Path:
    """Write a figure as PNG (creating its folder) and free it."""
    plt = pyplot()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
