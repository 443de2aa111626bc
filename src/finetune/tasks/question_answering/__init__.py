"""Extractive question answering (SQuAD v1.1 / v2.0). conf/family/question_answering.yaml holds the keys."""

from __future__ import annotations

from finetune.tasks.interface import Codec, Recipe
from finetune.tasks.question_answering.codec import Settings, SpanCodec


def codec_class(settings: Settings) -> type[Codec]:
    return SpanCodec


def recipe_class(settings: Settings) -> type[Recipe]:
    from finetune.tasks.question_answering.recipe import SpanRecipe

    return SpanRecipe


def recipes() -> list[type[Recipe]]:
    return [recipe_class(None)]  # type: ignore[arg-type]


__all__ = ["Settings", "codec_class", "recipe_class", "recipes"]
