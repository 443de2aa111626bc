"""What the stages share: input checks and the tokenized-data layout."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune.errors import FinetuneError, MissingInputError
from finetune.io import read_json, unreadable_errors
from finetune.pipeline.stage_table import BY_NAME, PRODUCERS
from finetune.tasks import load_codec, recipe
from finetune.tasks.interface import Recipe

MANIFEST = "manifest.json"
CODEC = "codec.json"  # the codec (family, settings, labels) the tokens were made with
STATS = "tokenize_stats.json"


def input_path(cfg: DictConfig, key: str) -> Path:
    """Where a stage reads the earlier stage's output `paths.<key>`: the same place below
    `paths.inputs` instead of `paths.out` (they differ only for a job of a Hydra multirun); a path
    set outside `paths.out` (`paths.tokenized=/data/...`) is read where it is."""
    path = Path(cfg.paths[key])
    try:
        return Path(cfg.paths.inputs) / path.relative_to(cfg.paths.out)
    except ValueError:
        return path


def require_input(cfg: DictConfig, key: str) -> Path:
    """`input_path(cfg, key)`, or a one-line error naming the command that produces it."""
    return require(input_path(cfg, key), PRODUCERS[key], cfg)


def require(path: str | Path, stage: str, cfg: DictConfig) -> Path:
    """`path`, or a one-line error naming the command that produces it."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path} is missing: {remake(stage, cfg)}")
    return path


def remake(stage: str, cfg: DictConfig) -> str:
    """The commands that (re)make `stage`'s output for this config."""
    per_model = BY_NAME[stage].per_model
    target = f"{stage}@{cfg.paths.pair}" if per_model else f"{stage}@{cfg.task.name}"
    overrides = f"task={cfg.task.name}" + (f" model={cfg.model.name}" if per_model else "")
    return f"run `dvc repro {target}` (or `python stages/{BY_NAME[stage].script} {overrides}`)"


@contextlib.contextmanager
def reading(cfg: DictConfig, key: str) -> Iterator[Path]:
    """The earlier stage's output `paths.<key>` (required); an unreadable file in it (a deleted
    .arrow shard, a cut manifest, truncated weights) is one line naming it and the command to redo it."""
    path = require_input(cfg, key)
    try:
        yield path
    except unreadable_errors() as error:
        why = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise FinetuneError(f"{path} is damaged ({why}): {remake(PRODUCERS[key], cfg)}") from None


def load_saved(path: str | Path) -> Any:
    """A saved Dataset(Dict), read without ever writing cache files into the DVC output."""
    import datasets

    datasets.disable_caching()  # otherwise shuffle/map write cache-*.arrow next to the data
    return datasets.load_from_disk(str(path))


def load_tokenized(cfg: DictConfig) -> tuple[Any, Any, Recipe, dict[str, Any]]:
    """(examples, features, recipe, manifest) as saved by the tokenize stage: the recipe of cfg
    around the codec the tokens were made with."""
    with reading(cfg, "tokenized") as tokenized:
        return (load_saved(tokenized / "examples"), load_saved(tokenized / "features"),
                recipe(cfg, load_codec(read_json(tokenized / CODEC), str(tokenized / CODEC))),
                read_json(tokenized / MANIFEST))
