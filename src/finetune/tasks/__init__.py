"""Task families. `get_family(cfg)` returns the family that `task.family` names."""

from __future__ import annotations

import importlib

from omegaconf import DictConfig

from finetune.errors import FinetuneError
from finetune.tasks.base import TaskFamily

# family name -> module in this package defining the class `Family`
FAMILIES = {
    "classification": "classification",
    "token_classification": "token_classification",
    "question_answering": "question_answering",
}


def get_family(cfg: DictConfig) -> TaskFamily:
    name = cfg.task.family
    if name not in FAMILIES:
        raise FinetuneError(f"unknown task.family '{name}' in conf/task/{cfg.task.name}.yaml "
                            f"(known: {', '.join(sorted(FAMILIES))})")
    module = importlib.import_module(f"finetune.tasks.{FAMILIES[name]}")
    return module.Family(cfg)
