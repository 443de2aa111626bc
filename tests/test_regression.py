"""Regression on sentence pairs (STS-B shape): float targets, correlation metrics, lower-is-better
checkpoint selection, the transformers pipeline reading the raw value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from finetune.config import compose
from finetune.errors import DataError, FinetuneError
from finetune.metrics import reported
from finetune.tasks import recipe
from finetune.tasks.classification.metrics import regression_metrics
from tests.conftest import needs_shared, scored_pair_rows, write_jsonl


def family_for(repo, tmp_path, rows, *overrides):
    path = write_jsonl(tmp_path / "scored.jsonl", rows)
    cfg = compose(repo, ["task=stsb", "model=tiny", f"data.files.train={path}", "data.format=jsonl",
                         "data.id_column=null", *overrides])
    return recipe(cfg).with_labels(["similarity"]), path


def test_reads_float_targets_as_one_output(repo, tmp_path):
    family, path = family_for(repo, tmp_path, scored_pair_rows(4))
    assert type(family).__name__ == "NumberRecipe" and type(family.codec).__name__ == "NumberCodec"
    rows = family.read(path, "jsonl", "train")
    labels = family.label_set({"train": rows})
    assert labels == ["similarity"]
    encoded = family.with_labels(labels).encode_labels(rows, "train")
    assert all(isinstance(row["label"], float) for row in encoded)
    assert family.with_labels(labels).model_kwargs() == {"num_labels": 1, "id2label": {0: "similarity"},
                                           "label2id": {"similarity": 0}, "problem_type": "regression"}


def test_non_numeric_target_names_file_row_and_field(repo, tmp_path):
    rows = scored_pair_rows(3)
    rows[2]["score"] = "high"
    family, path = family_for(repo, tmp_path, rows)
    examples = family.read(path, "jsonl", "train")
    with pytest.raises(DataError, match=r"scored.jsonl, line 3, field 'score': regression target 'high' is not a "
                                        r"number"):
        family.encode_labels(examples, "train")


def test_float_labels_under_single_label_point_at_regression(repo, tmp_path):
    path = write_jsonl(tmp_path / "scored.jsonl", scored_pair_rows(6))
    cfg = compose(repo, ["task=mrpc", "model=tiny", f"data.files.train={path}", "data.format=jsonl", "task.labels=null",
                         "data.text_column=sentence1", "data.text_pair_column=sentence2", "data.label_column=score"])
    family = recipe(cfg)
    rows = family.read(path, "jsonl", "train")
    with pytest.raises(DataError, match=r"scored.jsonl, field 'score': labels such as .* look like a numeric "
                                        r"target: set task.problem_type=regression"):
        family.label_set({"train": rows})


def test_decode_gives_the_raw_value_and_score_correlates(repo, tmp_path):
    family, _ = family_for(repo, tmp_path, scored_pair_rows(2))
    gold = Dataset.from_list([{"id": str(i), "text": "a", "text_pair": "b", "label": v}
                              for i, v in enumerate([0.5, 2.0, 4.5])], features=family.features())
    logits = np.array([[0.7], [1.9], [4.0]])
    predictions = family.codec.decode(gold.remove_columns("label"), gold, (logits,))
    assert [p["value"] for p in predictions] == [0.7, 1.9, 4.0]
    metrics = family.score(gold, predictions)
    assert metrics["pearson"] == pytest.approx(np.corrcoef([0.5, 2.0, 4.5], [0.7, 1.9, 4.0])[0, 1])
    assert metrics["spearman"] == pytest.approx(1.0)
    assert metrics["mse"] == pytest.approx(np.mean(np.square([0.2, 0.1, 0.5])))
    [written] = family.write_predictions(gold, predictions, tmp_path)
    assert json.loads(written.read_text().splitlines()[2]) == {"gold": 4.5, "id": "2", "value": 4.0}
    [scatter] = family.plots(gold, predictions, metrics, tmp_path)
    assert scatter.name == "scatter.png" and scatter.read_bytes()[:4] == b"\x89PNG"


def test_regression_metrics_of_a_constant_prediction():
    metrics = regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert metrics["pearson"] == 0.0 and metrics["spearman"] == 0.0
    assert metrics["mse"] == pytest.approx(2 / 3) and metrics["mae"] == pytest.approx(2 / 3)


def test_lower_is_better_metric_selects_the_lowest(repo, tmp_path):
    from finetune.training import training_arguments

    family, _ = family_for(repo, tmp_path, scored_pair_rows(2), "task.metric=mse")
    assert (family.primary_metric, family.greater_is_better) == ("mse", False)
    cfg = compose(repo, ["task=stsb", "model=tiny"])
    args = training_arguments(cfg.train, tmp_path, family.primary_metric, greater_is_better=family.greater_is_better)
    assert (args.metric_for_best_model, args.greater_is_better) == ("mse", False)
    with pytest.raises(FinetuneError, match=r"task.metric: 'accuracy' is not a regression metric"):
        family_for(repo, tmp_path, scored_pair_rows(2), "task.metric=accuracy")


def test_classes_settings_are_refused(repo, tmp_path):
    family, _ = family_for(repo, tmp_path, scored_pair_rows(2))
    cfg = compose(repo, ["task=stsb", "model=tiny", "train.class_weights=balanced"])
    with pytest.raises(FinetuneError, match=r"train.class_weights: a regression target has no classes"):
        family.loss(None, cfg.train)


def test_trained_export_serves_values(tiny_exports):
    from finetune.inference import Predictor

    cfg = tiny_exports["stsb"]
    metrics = reported(json.loads(Path(cfg.paths.metrics).read_text()))
    assert metrics["pearson"] > 0.5, "the marker word decides the score: a tiny model learns it"
    predictor = Predictor(cfg.paths.export)
    close, far = predictor.predict([{"text": "a man is playing", "text_pair": "likewise a man is playing"},
                                    {"text": "a man is playing", "text_pair": "unlike a man is playing"}])
    assert close["value"] > far["value"]
    spec = json.loads((Path(cfg.paths.export) / "finetune.json").read_text())
    assert spec["settings"]["problem_type"] == "regression" and spec["primary_metric"] == "pearson"
    config = json.loads((Path(cfg.paths.export) / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "similarity"}


def test_real_stsb_files_read_as_glue_counts_them(repo):
    needs_shared("glue", "stsb", "dev.tsv")
    from finetune.data.sources import load_examples

    cfg = compose(repo, ["task=stsb", "model=tiny"])
    family = recipe(cfg)
    splits, _ = load_examples(cfg, family)
    assert {k: len(v) for k, v in splits.items()} == {"train": 5749, "test": 1500}
    scores = [family.encode_label(e["label"], {}, e["_where"]) for e in splits["test"]]
    assert min(scores) == 0.0 and max(scores) == 5.0
