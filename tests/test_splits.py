"""Split strategies and subsampling are deterministic for a seed."""

from __future__ import annotations

import pytest
from datasets import Dataset
from omegaconf import OmegaConf

from finetune.data.splits import apply_split_strategy, subsample
from finetune.errors import FinetuneError


def rows(n: int) -> list[dict]:
    return [{"id": str(i)} for i in range(n)]


def strategy(**kwargs) -> OmegaConf:
    base = {"strategy": "given", "validation_fraction": 0.1, "first_n": 5, "seed": 42}
    return OmegaConf.create(base | kwargs)


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


def test_first_n_takes_the_head_for_training():
    out = apply_split_strategy({"train": rows(8)}, strategy(strategy="first_n", first_n=5))
    assert [r["id"] for r in out["train"]] == ["0", "1", "2", "3", "4"]
    assert [r["id"] for r in out["validation"]] == ["5", "6", "7"]


@pytest.mark.parametrize("bad", [
    {"strategy": "first_n", "first_n": 8},
    {"strategy": "random_fraction", "validation_fraction": 1.5},
    {"strategy": "shuffle_everything"},
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
