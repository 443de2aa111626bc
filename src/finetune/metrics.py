"""What every family's metrics share: the numeric leaves of a metrics dict, for MLflow and the Trainer.

Each family's own metrics live in its folder (finetune/tasks/<family>/metrics.py).
"""

from __future__ import annotations

from typing import Any

from finetune.data.splits import ROLES as ROLES  # a metrics file's sections: the scores on each split measured


def reported(metrics: dict[str, Any]) -> dict[str, Any]:
    """The reported split's section of an evaluate stage's metrics file, with the file's own keys
    (split, tuned, bf16, ...) beside it: what the card and the export describe."""
    split = metrics["split"]
    return metrics[split] | {key: value for key, value in metrics.items() if key not in ROLES}


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
