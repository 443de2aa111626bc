"""Each family's scoring as a local `evaluate` module, so a user scores their own predictions the
way the evaluate stage does, offline:

    import evaluate
    from finetune import evaluate_modules
    metric = evaluate.load(evaluate_modules.path("token_classification"))
    metric.compute(predictions=[["B-PER", "O"]], references=[["B-PER", "O"]])

Every module calls the same functions as the stage (each family's metrics.py in finetune/tasks/), so the
numbers agree.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ("classification", "multi_label", "regression", "token_classification", "question_answering")


def path(name: str) -> str:
    """The folder `evaluate.load` opens for the module `name` (one of NAMES)."""
    if name not in NAMES:
        raise ValueError(f"no evaluate module '{name}' (one of {', '.join(NAMES)})")
    return str(HERE / name)
