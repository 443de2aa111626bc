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

from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
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
    train = splits.get("train", [])
    strata = ranked([stratum(row) for row in train]) if stratum and split_cfg.strategy == "kfold" else None
    plan = carve(len(train), split_cfg, set(splits), strata, group_ids(train, group), pool)
    if plan is None:
        return splits
    return {**splits, **{role: [train[i] for i in rows] for role, rows in plan.items()}}


def carve(size: int, split_cfg: DictConfig, given: set[str], strata: np.ndarray | None = None,
          groups: np.ndarray | None = None, pool: int | str | None = None) -> dict[str, np.ndarray] | None:
    """The train rows (indices, in source order) of each role that `data.split.strategy` makes
    from a train split of `size` rows, train's own included; None when it keeps the source's splits.

    `strata`: each row's class as a small integer (k-fold deals each class evenly); `groups`: each
    row's group as an integer (rows of one group stay together; None: every row its own).
    """
    strategy = split_cfg.strategy
    if strategy not in STRATEGIES:
        raise FinetuneError(f"unknown data.split.strategy '{strategy}' ({', '.join(STRATEGIES)})")
    if strategy == "given":
        return None
    if "train" not in given:
        raise FinetuneError(f"split strategy '{strategy}' needs a train split; found {sorted(given)}")
    if "validation" in given:
        raise FinetuneError(f"split strategy '{strategy}' would replace the source's own validation split; "
                            "use data.split.strategy=given")
    seed = int(split_cfg.seed)
    train = np.arange(size)
    carved: dict[str, np.ndarray] = {}
    if strategy == "first_n":
        if "test" in given:
            raise FinetuneError("split strategy 'first_n' would replace the source's own test split; "
                                "use data.split.strategy=random_fraction")
        n = int(split_cfg.first_n)
        if not 0 < n < size:
            raise FinetuneError(f"data.split.first_n={n} must lie between 1 and {size - 1} "
                                f"(the train split has {size} rows)")
        train, carved["test"] = train[:n], train[n:]
    if strategy == "random_fraction" and split_cfg.get("test_fraction") and "test" not in given:
        held = held_out(_of(groups, train), float(split_cfg.test_fraction), seed + 1, "data.split.test_fraction")
        train, carved["test"] = train[~held], train[held]
    if strategy == "kfold":
        if pool not in (None, "all") and int(pool) < len(train):
            train = np.sort(np.random.default_rng(seed).choice(train, int(pool), replace=False))
        folds, fold = int(split_cfg.folds), int(split_cfg.fold)
        assigned = fold_of(_of(groups, train), folds, fold, seed, None if strata is None else strata[train])
        train, carved["validation"] = train[assigned != fold], train[assigned == fold]
    else:
        held = held_out(_of(groups, train), float(split_cfg.validation_fraction), seed)
        train, carved["validation"] = train[~held], train[held]
    return {"train": train, **carved}


def _of(values: np.ndarray | None, rows: np.ndarray) -> np.ndarray | int | None:
    """`values` of `rows`; without values (every row its own group), the number of rows."""
    return len(rows) if values is None else values[rows]


def held_out(groups: np.ndarray | int, fraction: float, seed: int,
             key: str = "data.split.validation_fraction") -> np.ndarray:
    """Which rows a seeded `fraction` of their groups holds out (a boolean mask); `groups`: each
    row's group, or the number of rows where each is its own."""
    if not 0 < fraction < 1:
        raise FinetuneError(f"{key} must lie in (0, 1), got {fraction}")
    count, inverse = _groups(groups)
    order = np.random.default_rng(seed).permutation(count)
    chosen = np.zeros(count, dtype=bool)
    chosen[order[:max(1, round(count * fraction))]] = True
    return chosen if inverse is None else chosen[inverse]


def _groups(groups: np.ndarray | int) -> tuple[int, np.ndarray | None]:
    """(number of groups, each row's group index); None for rows that are their own groups."""
    if isinstance(groups, (int, np.integer)):
        return int(groups), None
    names, inverse = np.unique(groups, return_inverse=True)
    return len(names), inverse


def fold_of(groups: np.ndarray | int, folds: int, fold: int, seed: int,
            strata: np.ndarray | None = None) -> np.ndarray:
    """Each row's fold: groups shuffled with `seed`, then dealt round-robin within each stratum
    (a group's stratum is its first row's), so every fold holds each class in about its share."""
    if folds < 2:
        raise FinetuneError(f"data.split.folds must be 2 or more, got {folds}")
    if not 0 <= fold < folds:
        raise FinetuneError(f"data.split.fold={fold} must lie between 0 and {folds - 1} (data.split.folds={folds})")
    if isinstance(groups, (int, np.integer)):
        names, first, groups = np.arange(groups), np.arange(groups), np.arange(groups)
    else:
        names, first, groups = np.unique(groups, return_index=True, return_inverse=True)
    group_strata = np.zeros(len(names), dtype=np.int64) if strata is None else strata[first]
    rng, dealt, start = np.random.default_rng(seed), np.zeros(len(names), dtype=np.int64), 0
    for name in np.unique(group_strata):
        members = rng.permutation(np.flatnonzero(group_strata == name))
        dealt[members] = (start + np.arange(len(members))) % folds
        start += len(members)  # the next stratum continues the deal, so fold sizes stay even
    if len(names) < folds:
        raise FinetuneError(f"data.split.folds={folds}: the train split has only {len(names)} groups of rows")
    return dealt[groups]


def group_ids(rows: list[dict[str, Any]], group: Key | None = None) -> np.ndarray | None:
    """Each row's group as an integer (a row without a group is its own); None without `group`."""
    if group is None:
        return None
    ids: dict[Hashable, int] = {}
    return np.asarray([ids.setdefault(("row", i) if (key := group(row)) is None else ("group", key), len(ids))
                       for i, row in enumerate(rows)], dtype=np.int64)


def ranked(values: list[Hashable]) -> np.ndarray:
    """Each value's rank among the distinct values sorted as text (a stratum's small integer)."""
    order = {value: i for i, value in enumerate(sorted(set(values), key=str))}
    return np.asarray([order[value] for value in values], dtype=np.int64)


def subsample(dataset: Any, max_samples: int | str | None, seed: int) -> Any:
    """A seeded shuffle then the first `max_samples` rows (all rows, in order, for None / "all")."""
    if max_samples in (None, "all") or int(max_samples) >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(int(max_samples)))
