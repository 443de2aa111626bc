"""Deterministic split strategies and subsampling: the same seed always gives the same split."""

from __future__ import annotations

import random
from typing import Any

from omegaconf import DictConfig

from finetune.errors import FinetuneError

Splits = dict[str, list[dict[str, Any]]]


def apply_split_strategy(splits: Splits, split_cfg: DictConfig) -> Splits:
    """Derive a validation split from train when the strategy asks for one.

    - given: keep the source's own splits.
    - random_fraction: a seeded random `validation_fraction` of train becomes validation.
    - first_n: the first `first_n` train rows stay train, the rest become validation.
    """
    strategy = split_cfg.strategy
    if strategy == "given":
        return splits
    if "train" not in splits:
        raise FinetuneError(f"split strategy '{strategy}' needs a train split; found {sorted(splits)}")
    if "validation" in splits:
        raise FinetuneError(f"split strategy '{strategy}' would replace the source's own validation split; "
                            "use data.split.strategy=given")
    train = splits["train"]
    if strategy == "random_fraction":
        fraction = float(split_cfg.validation_fraction)
        if not 0 < fraction < 1:
            raise FinetuneError(f"data.split.validation_fraction must lie in (0, 1), got {fraction}")
        order = list(range(len(train)))
        random.Random(int(split_cfg.seed)).shuffle(order)
        n_valid = max(1, round(len(train) * fraction))
        held = set(order[:n_valid])
        new_train = [ex for i, ex in enumerate(train) if i not in held]
        validation = [train[i] for i in sorted(held)]
    elif strategy == "first_n":
        n = int(split_cfg.first_n)
        if not 0 < n < len(train):
            raise FinetuneError(f"data.split.first_n={n} must lie between 1 and {len(train) - 1} "
                                f"(the train split has {len(train)} rows)")
        new_train, validation = train[:n], train[n:]
    else:
        raise FinetuneError(f"unknown data.split.strategy '{strategy}' (given, random_fraction, first_n)")
    return {**splits, "train": new_train, "validation": validation}


def subsample(dataset: Any, max_samples: int | str | None, seed: int) -> Any:
    """A seeded shuffle then the first `max_samples` rows (all rows, in order, for None / "all")."""
    if max_samples in (None, "all") or int(max_samples) >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(int(max_samples)))
