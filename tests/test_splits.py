"""Split strategies and subsampling are deterministic for a seed."""

from __future__ import annotations

import pytest
from datasets import Dataset
from omegaconf import OmegaConf

from finetune.data.splits import SPLIT, apply_split_strategy, by_split_column, subsample
from finetune.errors import FinetuneError


def rows(n: int) -> list[dict]:
    return [{"id": str(i)} for i in range(n)]


def strategy(**kwargs) -> OmegaConf:
    base = {"strategy": "given", "validation_fraction": 0.1, "first_n": 5, "folds": 5, "fold": 0, "seed": 42}
    return OmegaConf.create(base | kwargs)


def ids(split: list[dict]) -> list[str]:
    return [r["id"] for r in split]


def test_given_keeps_the_source_splits():
    splits = {"train": rows(3), "test": rows(2)}
    assert apply_split_strategy(splits, strategy()) == splits


def test_random_fraction_is_seeded_disjoint_and_complete():
    first = apply_split_strategy({"train": rows(100)}, strategy(strategy="random_fraction"))
    again = apply_split_strategy({"train": rows(100)}, strategy(strategy="random_fraction"))
    other = apply_split_strategy({"train": rows(100)}, strategy(strategy="random_fraction", seed=7))
    assert first == again
    assert len(first["validation"]) == 10 and len(first["train"]) == 90
    ids = {r["id"] for r in first["train"]} | {r["id"] for r in first["validation"]}
    assert len(ids) == 100
    assert first["validation"] != other["validation"]


def test_random_fraction_carves_a_test_split_from_a_single_source():
    out = apply_split_strategy({"train": rows(100)}, strategy(strategy="random_fraction", test_fraction=0.2))
    assert [len(out[role]) for role in ("train", "validation", "test")] == [72, 8, 20]
    assert len(set(ids(out["train"])) | set(ids(out["validation"])) | set(ids(out["test"]))) == 100
    given = {"train": rows(100), "test": rows(5)}  # a given test split stays as it is
    assert apply_split_strategy(given, strategy(strategy="random_fraction", test_fraction=0.2))["test"] == rows(5)


def test_first_n_reports_the_tail_and_validates_on_a_share_of_the_head():
    out = apply_split_strategy({"train": rows(30)}, strategy(strategy="first_n", first_n=20))
    assert ids(out["test"]) == [str(i) for i in range(20, 30)]
    assert len(out["validation"]) == 2 and len(out["train"]) == 18
    assert sorted(ids(out["train"]) + ids(out["validation"]), key=int) == [str(i) for i in range(20)]


def test_first_n_refuses_to_replace_a_given_test_split():
    with pytest.raises(FinetuneError, match="random_fraction"):
        apply_split_strategy({"train": rows(8), "test": rows(2)}, strategy(strategy="first_n"))


def test_kfold_folds_partition_train_and_keep_the_test_split():
    source = {"train": rows(53), "test": rows(4)}
    validations = [apply_split_strategy(source, strategy(strategy="kfold", fold=k)) for k in range(5)]
    held = [ids(out["validation"]) for out in validations]
    assert sorted(sum(held, []), key=int) == [str(i) for i in range(53)]  # every row validates exactly once
    assert {len(h) for h in held} <= {10, 11}
    for out in validations:
        assert not set(ids(out["train"])) & set(ids(out["validation"])) and out["test"] == source["test"]
    again = apply_split_strategy(source, strategy(strategy="kfold", fold=2))
    assert ids(again["validation"]) == held[2]


def test_kfold_is_stratified_by_class_and_keeps_groups_together():
    data = [{"id": str(i), "label": "rare" if i % 10 == 0 else "common", "doc": i // 3} for i in range(100)]
    for k in range(5):
        out = apply_split_strategy({"train": data}, strategy(strategy="kfold", fold=k),
                                   stratum=lambda r: r["label"])
        assert sum(r["label"] == "rare" for r in out["validation"]) == 2  # 10 rare rows, 2 per fold
    grouped = [apply_split_strategy({"train": data}, strategy(strategy="kfold", fold=k), group=lambda r: r["doc"])
               for k in range(5)]
    for out in grouped:
        docs = {r["doc"] for r in out["validation"]}
        assert not docs & {r["doc"] for r in out["train"]}


def test_random_fraction_keeps_groups_together():
    data = [{"id": str(i), "passage": i // 4} for i in range(80)]
    out = apply_split_strategy({"train": data}, strategy(strategy="random_fraction"), group=lambda r: r["passage"])
    assert len(out["validation"]) == 8  # 2 of 20 passages, 4 questions each
    assert not {r["passage"] for r in out["validation"]} & {r["passage"] for r in out["train"]}


@pytest.mark.parametrize("bad", [
    {"strategy": "first_n", "first_n": 8},
    {"strategy": "random_fraction", "validation_fraction": 1.5},
    {"strategy": "shuffle_everything"},
    {"strategy": "kfold", "folds": 1},
    {"strategy": "kfold", "folds": 3, "fold": 3},
    {"strategy": "kfold", "folds": 9},
])
def test_bad_strategy_settings_are_reported(bad):
    with pytest.raises(FinetuneError):
        apply_split_strategy({"train": rows(8)}, strategy(**bad))


def test_strategy_refuses_to_replace_a_given_validation_split():
    with pytest.raises(FinetuneError, match="strategy=given"):
        apply_split_strategy({"train": rows(8), "validation": rows(2)}, strategy(strategy="first_n"))


def test_subsample_is_a_seeded_shuffle_then_head():
    data = Dataset.from_list(rows(50))
    a = subsample(data, 10, 42)["id"]
    assert a == subsample(data, 10, 42)["id"]
    assert a == data.shuffle(seed=42)["id"][:10]
    assert a != subsample(data, 10, 3)["id"]
    assert subsample(data, None, 42)["id"] == data["id"]
    assert subsample(data, 500, 42)["id"] == data["id"]
    assert subsample(data, "all", 42)["id"] == data["id"]


def rows_with(values: list) -> list[dict]:
    return [{"id": str(i), SPLIT: str(value)} for i, value in enumerate(values)]


def test_split_column_names_match_in_any_case_and_dev_is_validation():
    splits = by_split_column(rows_with(["Train", "DEV", "train", "TEST"]), "set", None, "f.csv")
    assert {role: [r["id"] for r in rows] for role, rows in splits.items()} == {
        "train": ["0", "2"], "validation": ["1"], "test": ["3"]}


def test_split_values_map_a_column_of_its_own_values():
    rows = rows_with(["TRAIN", "TRIAL", "TEST", "EXTRA", "TRAIN"])
    splits = by_split_column(rows, "set", {"train": ["TRAIN", "extra"], "validation": "TRIAL", "test": "TEST"}, "f")
    assert [r["id"] for r in splits["train"]] == ["0", "3", "4"] and len(splits["validation"]) == 1
    numbered = by_split_column(rows_with([0, 1, 2, 0]), "fold", {"train": 0, "validation": 1, "test": 2}, "f")
    assert [len(rows) for rows in numbered.values()] == [2, 1, 1]


@pytest.mark.parametrize(("values", "mapping", "message"), [
    (["TRAIN", "TRIAL", "TEST"], None, "f.csv: column 'set' holds 'TRIAL', which names no split (values found: "
                                       "'TRAIN' (1 row), 'TRIAL' (1 row), 'TEST' (1 row)); map the values"),
    (["TRAIN", "TEST"], {"train": "TRAIN", "validation": "DEV", "test": "TEST"},
     "data.split_values: no row of f.csv has the value 'DEV' for validation in column 'set'"),
    (["a"], {"train": "a", "test": "A"}, "data.split_values: 'A' is given to both train and test"),
    (["a"], {"dev": "a"}, "data.split_values: 'dev' is not a split"),
])
def test_split_column_errors_list_the_values_found(values, mapping, message):
    with pytest.raises(FinetuneError) as error:
        by_split_column(rows_with(values), "set", mapping, "f.csv")
    assert message in str(error.value)
