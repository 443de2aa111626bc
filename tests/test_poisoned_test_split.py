"""No stage before evaluate reads the test split, and nothing evaluate chooses depends on it: the
same run with every test text and label replaced gives the same model, the same validation scores,
temperature and thresholds; only the reported test numbers change."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from finetune.config import compose
from finetune.io import read_json
from finetune.pipeline.download import download
from finetune.pipeline.evaluate import evaluate
from finetune.pipeline.tokenize import tokenize
from finetune.pipeline.train import train
from tests.conftest import REPO, headline_rows, write_jsonl


def run(work: Path, test_rows: list[dict]) -> tuple[dict, bytes]:
    train_file = write_jsonl(work / "train.jsonl", headline_rows(120, seed=1))
    test_file = write_jsonl(work / "test.jsonl", test_rows)
    cfg = compose(REPO, ["task=sarcasm", "model=tiny", f"data.files.train={train_file}",
                         f"data.files.test={test_file}", "data.split.strategy=random_fraction",
                         "data.split.validation_fraction=0.25", "data.max_length=32", "train.num_train_epochs=6",
                         "train.learning_rate=3e-3", "train.per_device_train_batch_size=8", "train.bf16=false",
                         "train.compile=false", "train.disable_tqdm=true", "tracking.enabled=false"], workdir=work)
    for stage in (download, tokenize, train, evaluate):
        stage(cfg)
    return read_json(cfg.paths.metrics), (Path(cfg.paths.model) / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def clean_and_poisoned(tmp_path_factory):
    clean = headline_rows(40, seed=2)
    rng = random.Random(0)
    poisoned = [{**row, "headline": " ".join(rng.choice(["zzz", "qq", "%%", "lorem"]) for _ in range(12)),
                 "is_sarcastic": 1 - row["is_sarcastic"]} for row in clean]
    return run(tmp_path_factory.mktemp("clean"), clean), run(tmp_path_factory.mktemp("poisoned"), poisoned)


def test_the_model_does_not_depend_on_the_test_split(clean_and_poisoned):
    (_, clean_weights), (_, poisoned_weights) = clean_and_poisoned
    assert clean_weights == poisoned_weights


def test_what_evaluate_chooses_does_not_depend_on_the_test_split(clean_and_poisoned):
    (clean, _), (poisoned, _) = clean_and_poisoned
    assert clean["tuned"] == poisoned["tuned"] and "temperature" in clean["tuned"]
    assert clean["validation"] == poisoned["validation"]


def test_only_the_reported_numbers_change(clean_and_poisoned):
    (clean, _), (poisoned, _) = clean_and_poisoned
    assert clean["split"] == poisoned["split"] == "test"
    assert clean["test"]["accuracy"] > 0.8 > poisoned["test"]["accuracy"], "the poison reached the report"
