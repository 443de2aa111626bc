"""k-fold cross-validation (stages/kfold.py): every pool example predicted once out of fold, the
folds' spread under one parent run, and the planted label errors found by the label-issue rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from datasets import load_from_disk

from finetune.io import read_json
from tests.conftest import headline_rows, run_stage, write_jsonl

FOLDS = 3
POOL = 90


@pytest.fixture(scope="module")
def cross_validated(tmp_path_factory):
    """3 folds of a tiny model on 90 learnable headlines, 6 of them with their label flipped."""
    work = tmp_path_factory.mktemp("kfold")
    rows = headline_rows(POOL, seed=3)
    flipped = {i for i in range(0, POOL, 15)}  # 6 rows: the marker word says the other label
    for i in flipped:
        rows[i]["is_sarcastic"] = 1 - rows[i]["is_sarcastic"]
    train = write_jsonl(work / "train.jsonl", rows)
    test = write_jsonl(work / "test.jsonl", headline_rows(40, seed=4))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    done = run_stage("kfold.py", "task=sarcasm", "model=tiny", f"data.files.train={train}", f"data.files.test={test}",
                     "data.split.strategy=kfold", f"data.split.folds={FOLDS}", "data.max_length=32",
                     "train.num_train_epochs=8", "train.learning_rate=5e-3", "train.per_device_train_batch_size=8",
                     "train.disable_tqdm=true", "export.onnx=false", cwd=work, uri=uri)
    assert done.returncode == 0, done.stderr[-3000:]
    return work, uri, {str(i) for i in flipped}


def test_every_pool_example_is_predicted_once_out_of_fold(cross_validated):
    work, _, _ = cross_validated
    root = work / "kfold" / "sarcasm-tiny"
    rows = [json.loads(line) for line in (root / "oof.jsonl").read_text().splitlines()]
    assert sorted(int(r["id"]) for r in rows) == list(range(POOL))
    assert {r["fold"] for r in rows} == set(range(FOLDS))
    assert all(set(r["probabilities"]) == {"not_sarcastic", "sarcastic"} for r in rows)
    for fold in range(FOLDS):  # the model that predicted a row never trained on it
        raw = read_json(root / f"fold-{fold}" / "data" / "raw" / "sarcasm" / "manifest.json")
        assert raw["rows"]["validation"] == sum(r["fold"] == fold for r in rows) and raw["rows"]["test"] == 40
        saved = load_from_disk(str(root / f"fold-{fold}" / "data" / "raw" / "sarcasm" / "dataset"))
        trained_on = set(saved["train"]["id"])
        assert not trained_on & {r["id"] for r in rows if r["fold"] == fold}


def test_summary_gives_the_spread_across_folds_under_one_parent_run(cross_validated):
    from mlflow import MlflowClient

    work, uri, _ = cross_validated
    summary = read_json(work / "kfold" / "sarcasm-tiny" / "summary.json")
    assert len(summary["folds"]) == FOLDS and summary["out_of_fold_predictions"] == POOL
    values = [fold["test"] for fold in summary["folds"]]
    assert summary["test_accuracy_mean"] == pytest.approx(sum(values) / FOLDS)
    assert summary["test_accuracy_ci_low"] <= summary["test_accuracy_mean"] <= summary["test_accuracy_ci_high"]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("sarcasm").experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == FOLDS and parent.info.status == "FINISHED"
    assert parent.data.metrics["test_accuracy_mean"] == pytest.approx(summary["test_accuracy_mean"])


def test_label_issues_find_the_flipped_labels(cross_validated):
    work, _, flipped = cross_validated
    with open(work / "kfold" / "sarcasm-tiny" / "label_issues.csv", newline="") as handle:
        issues = list(csv.DictReader(handle))
    top = {row["id"] for row in issues[:len(flipped)]}
    assert len(top & flipped) >= len(flipped) - 1, (issues[:8], flipped)  # a random pick finds ~0.4 of 6
    first = issues[0]
    assert first["suggested_label"] != first["given_label"] and float(first["margin"]) > 0
    assert ("totally" in first["text"]) == (first["suggested_label"] == "sarcastic")


def test_each_fold_keeps_its_outputs_apart(cross_validated):
    work, _, _ = cross_validated
    for fold in range(FOLDS):
        metrics = read_json(work / "kfold" / "sarcasm-tiny" / f"fold-{fold}" / "metrics" / "sarcasm-tiny.json")
        assert metrics["split"] == "test" and metrics["validation"]["n_eval"] > 0
    assert not (work / "metrics").exists(), "k-fold never writes the workspace's DVC outputs"
    assert not Path(work / "models").exists()
