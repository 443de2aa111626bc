"""Sequence classification: one label, a set of labels or a number per text or sentence pair.

`task.problem_type` picks the codec and the recipe; conf/family/classification.yaml holds the keys.
"""

from __future__ import annotations

from finetune.errors import FinetuneError
from finetune.tasks.classification.codec import CODECS, PROBLEM_TYPES, Settings
from finetune.tasks.interface import Codec, Recipe


def _problem(settings: Settings) -> str:
    if settings.problem_type not in PROBLEM_TYPES:
        raise FinetuneError(f"task.problem_type: '{settings.problem_type}' is not one of {', '.join(PROBLEM_TYPES)}")
    return settings.problem_type


def codec_class(settings: Settings) -> type[Codec]:
    return CODECS[_problem(settings)]


def recipe_class(settings: Settings) -> type[Recipe]:
    from finetune.tasks.classification.recipe import RECIPES

    return RECIPES[_problem(settings)]


def recipes() -> list[type[Recipe]]:
    from finetune.tasks.classification.recipe import RECIPES

    return list(RECIPES.values())


__all__ = ["Settings", "codec_class", "recipe_class", "recipes"]
