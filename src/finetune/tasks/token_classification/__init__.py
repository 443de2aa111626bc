"""Token classification (NER): one IOB2 tag per word. conf/family/token_classification.yaml holds the keys."""

from __future__ import annotations

from finetune.tasks.interface import Codec, Recipe
from finetune.tasks.token_classification.codec import Settings, TagCodec


def codec_class(settings: Settings) -> type[Codec]:
    return TagCodec


def recipe_class(settings: Settings) -> type[Recipe]:
    from finetune.tasks.token_classification.recipe import TagRecipe

    return TagRecipe


def recipes() -> list[type[Recipe]]:
    return [recipe_class(None)]  # type: ignore[arg-type]


__all__ = ["Settings", "codec_class", "recipe_class", "recipes"]
