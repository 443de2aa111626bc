"""The three roles of a task's examples, and seeded subsampling: the same seed, the same split.

Every task ends with three splits: `train` (fitted on), `validation` (everything that chooses:
the best checkpoint, early stopping, thresholds, the temperature, sweeps, the registry's gate) and
`test` (reported by the evaluate stage, read by nothing before it). A source with fewer splits
gets the missing ones carved from its train split by `data.split.strategy`:

- given: the source's own splits, as they are.
- random_fraction: a seeded `validation_fraction` of train becomes validation; with
  `test_fraction` set and no test split given, a seeded share of train becomes test first.
- first_n: the first `first_n` train rows are the training pool, the rest the test split; then a
  seeded `validation_fraction` of the pool becomes validation (the tutorials' sarcasm split).
- kfold: train is cut into `folds` seeded folds (stratified by label where the family has one,
  rows of one group kept together); fold `fold` is validation, the others train. With
  `data.max_train_samples` set, a seeded sample of that many rows is the pool the folds cut.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from finetune.errors import FinetuneError

Splits = dict[str, list[dict[str, Any]]]
STRATEGIES = ("given", "random_fraction", "first_n", "kfold")
GROUP = "_group"  # an example's value of `data.split.group_column`, read by the split only
SPLIT = "_split"  # an example's value of `data.split_column`: the role it is given to
ROLES = ("train", "validation", "test")
# what a split column's value means when data.split_values is null (compared case-insensitively)
ROLE_NAMES = {"train": ["train"], "validation": ["validation", "valid", "val", "dev"], "test": ["test"]}


Key = Callable[[dict[str, Any]], Hashable]


def by_split_column(rows: list[dict[str, Any]], column: str, values: dict[str, Any] | None, source: str) -> Splits:
    """The rows of a file holding several splits, each given to the role its `column` value names.

    `values` maps each role to its value (or list of values), e.g. {train: TRAIN, validation: TRIAL,
    test: TEST}; None: ROLE_NAMES. Values match case-insensitively. A value that no role claims, or
    a role given whose value no row holds, is an error listing the values found.
    """
    names = ROLE_NAMES if values is None else values
    unknown = [role for role in names if role not in ROLES]
    if unknown:
        raise FinetuneError(f"data.split_values: '{unknown[0]}' is not a split (the splits: {', '.join(ROLES)})")
    role_of: dict[str, str] = {}
    for role, given in names.items():
        for value in given if isinstance(given, (list, tuple)) or OmegaConf.is_list(given) else [given]:
            claimed = role_of.setdefault(str(value).lower(), role)
            if claimed != role:
                raise FinetuneError(f"data.split_values: '{value}' is given to both {claimed} and {role}")
    found = Counter(str(row[SPLIT]) for row in rows)
    listed = ", ".join(f"{value!r} ({count:,} row{'s' * (count != 1)})" for value, count in found.items())
    hint = (f"; map the values to train, validation and test with data.split_values="
            f"{{train: {next(iter(found), 'TRAIN')}, validation: ..., test: ...}}")
    unclaimed = [value for value in found if value.lower() not in role_of]
    if unclaimed:
        raise FinetuneError(f"{source}: column '{column}' holds {unclaimed[0]!r}, which names no split "
                            f"(values found: {listed}){hint if values is None else ''}")
    splits: Splits = {}
    for row in rows:
        splits.setdefault(role_of[str(row[SPLIT]).lower()], []).append(row)
    absent = [role for role in names if role not in splits] if values is not None else []
    if absent:
        raise FinetuneError(f"data.split_values: no row of {source} has the value {names[absent[0]]!r} "
                            f"for {absent[0]} in column '{column}' (values found: {listed})")
    return {role: splits[role] for role in ROLES if role in splits}


def apply_split_strategy(splits: Splits, split_cfg: DictConfig, stratum: Key | None = None,
                         group: Key | None = None, pool: int | str | None = None) -> Splits:
    """The source's splits with validation (and for first_n, test) carved from train.

    `stratum` gives an example's class for a stratified k-fold (None: plain seeded folds);
    `group` its group, whose examples never straddle two splits (None, or a None group: its own);
    `pool` the number of train rows k-fold cuts (a seeded sample; None or "all": every row).
    """
    strategy = split_cfg.strategy
    if strategy not in STRATEGIES:
        raise FinetuneError(f"unknown data.split.strategy '{strategy}' ({', '.join(STRATEGIES)})")
    if strategy == "given":
        return splits
    if "train" not in splits:
        raise FinetuneError(f"split strategy '{strategy}' needs a train split; found {sorted(splits)}")
    if "validation" in splits:
        raise FinetuneError(f"split strategy '{strategy}' would replace the source's own validation split; "
                            "use data.split.strategy=given")
    train, seed = splits["train"], int(split_cfg.seed)
    carved: Splits = {}
    if strategy == "first_n":
        if "test" in splits:
            raise FinetuneError("split strategy 'first_n' would replace the source's own test split; "
                                "use data.split.strategy=random_fraction")
        n = int(split_cfg.first_n)
        if not 0 < n < len(train):
            raise FinetuneError(f"data.split.first_n={n} must lie between 1 and {len(train) - 1} "
                                f"(the train split has {len(train)} rows)")
        train, carved["test"] = train[:n], train[n:]
    if strategy == "random_fraction" and split_cfg.get("test_fraction") and "test" not in splits:
        train, carved["test"] = fraction_split(train, float(split_cfg.test_fraction), seed + 1, group,
                                               "data.split.test_fraction")
    if strategy == "kfold":
        if pool not in (None, "all") and int(pool) < len(train):
            kept = sorted(random.Random(seed).sample(range(len(train)), int(pool)))
            train = [train[i] for i in kept]
        train, carved["validation"] = fold_split(train, int(split_cfg.folds), int(split_cfg.fold), seed, stratum,
                                                 group)
    else:
        train, carved["validation"] = fraction_split(train, float(split_cfg.validation_fraction), seed, group)
    return {**splits, "train": train, **carved}


def fraction_split(rows: list[dict[str, Any]], fraction: float, seed: int, group: Key | None = None,
                   key: str = "data.split.validation_fraction") -> tuple[list, list]:
    """(kept, held): a seeded `fraction` of the rows' groups held out, each side in source order."""
    if not 0 < fraction < 1:
        raise FinetuneError(f"{key} must lie in (0, 1), got {fraction}")
    groups = grouped(rows, group)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    held_keys = set(keys[:max(1, round(len(keys) * fraction))])
    held = {i for key in held_keys for i in groups[key]}
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def fold_split(rows: list[dict[str, Any]], folds: int, fold: int, seed: int, stratum: Key | None = None,
               group: Key | None = None) -> tuple[list, list]:
    """(train, validation) for fold `fold` of `folds`: see `fold_of`."""
    if folds < 2:
        raise FinetuneError(f"data.split.folds must be 2 or more, got {folds}")
    if not 0 <= fold < folds:
        raise FinetuneError(f"data.split.fold={fold} must lie between 0 and {folds - 1} (data.split.folds={folds})")
    assigned = fold_of(rows, folds, seed, stratum, group)
    if len(set(assigned)) < folds:
        raise FinetuneError(f"data.split.folds={folds}: the train split has only {len(set(assigned))} groups of rows")
    return ([r for r, f in zip(rows, assigned, strict=True) if f != fold],
            [r for r, f in zip(rows, assigned, strict=True) if f == fold])


def fold_of(rows: list[dict[str, Any]], folds: int, seed: int, stratum: Key | None = None,
            group: Key | None = None) -> list[int]:
    """Each row's fold: groups shuffled with `seed`, then dealt round-robin within each stratum
    (a group's stratum is its first row's), so every fold holds each class in about its share."""
    groups = grouped(rows, group)
    by_stratum: dict[Hashable, list[Hashable]] = defaultdict(list)
    for key, members in groups.items():
        by_stratum[stratum(rows[members[0]]) if stratum else None].append(key)
    rng, assigned, start = random.Random(seed), [0] * len(rows), 0
    for name in sorted(by_stratum, key=str):
        keys = by_stratum[name]
        rng.shuffle(keys)
        for position, key in enumerate(keys):
            for i in groups[key]:
                assigned[i] = (start + position) % folds
        start += len(keys)  # the next stratum continues the deal, so fold sizes stay even
    return assigned


def grouped(rows: list[dict[str, Any]], group: Key | None = None) -> dict[Hashable, list[int]]:
    """Row indices per group (a row without a group is its own), in order of first appearance."""
    groups: dict[Hashable, list[int]] = {}
    for i, row in enumerate(rows):
        key = group(row) if group else None
        groups.setdefault(("row", i) if key is None else ("group", key), []).append(i)
    return groups


def subsample(dataset: Any, max_samples: int | str | None, seed: int) -> Any:
    """A seeded shuffle then the first `max_samples` rows (all rows, in order, for None / "all")."""
    if max_samples in (None, "all") or int(max_samples) >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(int(max_samples)))
