"""Task families. `get_family(cfg)` returns the family that `task.family` names; `load_family`
rebuilds one from the settings saved with an export."""

from __future__ import annotations

import importlib
from typing import Any

from omegaconf import DictConfig

from finetune.errors import FinetuneError
from finetune.tasks.base import TaskFamily

# family name -> module in this package defining the class `Family`
FAMILIES = {
    "classification": "classification",
    "token_classification": "token_classification",
    "question_answering": "question_answering",
}


def family_class(name: str, where: str) -> type[TaskFamily]:
    if name not in FAMILIES:
        raise FinetuneError(f"unknown task family '{name}' in {where} (known: {', '.join(sorted(FAMILIES))})")
    return importlib.import_module(f"finetune.tasks.{FAMILIES[name]}").Family


def get_family(cfg: DictConfig) -> TaskFamily:
    cls = family_class(cfg.task.family, f"task.family of conf/task/{cfg.task.name}.yaml")
    settings = cls.settings_from(cfg)
    return cls.variant(settings)(settings, cfg)


def load_family(name: str, settings: dict[str, Any], where: str) -> TaskFamily:
    """The family `name` with saved `settings` (no config: it can decode, not read sources)."""
    cls = family_class(name, where)
    try:
        saved = cls.Settings(**settings)
    except TypeError as error:
        raise FinetuneError(f"{where}: settings do not fit the {name} family: {error}") from None
    return cls.variant(saved)(saved)
