"""Task families, one package each: `recipe(cfg)` is the family that `task.family` names, as the
stages use it; `load_codec(spec)` rebuilds the codec saved with tokenized data or an export.

A family package defines `Settings` (its codec's), `codec_class(settings)` and
`recipe_class(settings)`; its config keys and their defaults are conf/family/<family>.yaml.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

from omegaconf import DictConfig

from finetune.checks import Check
from finetune.errors import FinetuneError
from finetune.tasks.interface import Codec, Recipe, config_keys, read_fields

# family name (`task.family`) -> its package
FAMILIES = {
    "classification": "finetune.tasks.classification",
    "token_classification": "finetune.tasks.token_classification",
    "question_answering": "finetune.tasks.question_answering",
}


def family_module(name: str, where: str) -> ModuleType:
    if name not in FAMILIES:
        raise FinetuneError(f"unknown task family '{name}' in {where} (known: {', '.join(sorted(FAMILIES))})")
    return importlib.import_module(FAMILIES[name])


def recipe(cfg: DictConfig, codec: Codec | None = None) -> Recipe:
    """The family of `cfg` around `codec` (default: a codec of cfg's settings, labels not yet known).

    Its source options are read where the config has a `data` section (the stages that read it)."""
    module = family_module(cfg.task.family, f"task.family of conf/task/{cfg.task.name}.yaml")
    if codec is None:
        settings = read_fields(module.Settings, cfg)
        codec = module.codec_class(settings)(settings)
    cls = module.recipe_class(codec.settings)
    sources = read_fields(cls.Sources, cfg) if "data" in cfg else None
    return cls(codec, read_fields(cls.Options, cfg), sources)


def load_codec(spec: dict[str, Any], where: str) -> Codec:
    """The codec that `Codec.spec()` saved (no config needed: it encodes and decodes)."""
    module = family_module(spec["family"], where)
    try:
        saved = {key: value for key, value in spec["settings"].items() if key not in module.Settings.retired}
        settings = module.Settings(**saved)
    except TypeError as error:
        raise FinetuneError(f"{where}: settings do not fit the {spec['family']} family: {error}") from None
    return module.codec_class(settings)(settings, spec["labels"])


@functools.cache
def family_keys(kind: str) -> dict[str, Check | None]:
    """Every family's config keys of one kind, with the checks of their values: `settings` (its
    codec's, fixed at tokenize), `sources` (how the download stage reads) or `options`. Cached:
    read it, never change it."""
    keys: dict[str, Check | None] = {}
    for name in FAMILIES:
        module = family_module(name, "finetune.tasks.FAMILIES")
        if kind == "settings":
            keys |= config_keys(module.Settings)
        for cls in module.recipes() if kind != "settings" else []:
            keys |= config_keys(getattr(cls, kind.capitalize()))
    return keys


def config_rules() -> dict[str, Check | None]:
    """Every family's config keys with the checks of their values."""
    return family_keys("settings") | family_keys("sources") | family_keys("options")
