"""Multi-label classification: the three ways labels come in, empty label sets, thresholds fixed
and tuned on validation, positive weights, metrics, the served export."""

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
from finetune.tasks.classification.metrics import multi_label_metrics
from tests.conftest import EMOTIONS, needs_shared, write_emotions, write_jsonl

LABELS = ", ".join(EMOTIONS)


def family_for(repo, path, *overrides):
    cfg = compose(repo, ["task=goemotions", "model=tiny", f"data.files.train={path}", f"task.labels=[{LABELS}]",
                         *overrides])
    return recipe(cfg).with_labels(EMOTIONS)


def encoded(family, path, fmt):
    rows = family.read(path, fmt, "train")
    return [row["label"] for row in family.with_labels(family.label_set({"train": rows})).encode_labels(rows, "train")]


def test_delimited_ids_in_a_headerless_table(repo, tmp_path):
    path = tmp_path / "e.tsv"
    path.write_text('so "glad" today\t0,2\tc1\ntearful\t1\tc2\n', encoding="utf-8")
    family = family_for(repo, path)
    assert type(family).__name__ == "LabelSetRecipe" and type(family.codec).__name__ == "LabelSetCodec"
    assert encoded(family, path, "tsv") == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_json_lists_of_names_or_ids(repo, tmp_path):
    names = write_jsonl(tmp_path / "n.jsonl", [{"text": "a", "labels": ["anger", "joy"]},
                                               {"text": "b", "labels": ["sadness"]}])
    ids = write_jsonl(tmp_path / "i.jsonl", [{"text": "a", "labels": [0, 2]}, {"text": "b", "labels": [1]}])
    for path in (names, ids):
        family = family_for(repo, path, "data.columns=null", "data.id_column=null", "data.format=jsonl")
        assert encoded(family, path, "jsonl") == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    mixed = write_jsonl(tmp_path / "m.jsonl", [{"text": "a", "labels": ["anger", "joy"]}, {"text": "b", "labels": [1]}])
    with pytest.raises(DataError, match=r"m.jsonl, line 2, field 'labels': the labels mix names and integer ids"):
        family = family_for(repo, mixed, "data.columns=null", "data.id_column=null", "data.format=jsonl")
        encoded(family, mixed, "jsonl")


def test_one_binary_column_per_label(repo, tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("comment,joy,sadness,anger\nyay,1,0,0\nugh,0,1,1\n", encoding="utf-8")
    family = family_for(repo, path, "data.columns=null", "data.id_column=null", "data.format=csv", "task.labels=null",
                        "data.text_column=comment", "data.label_columns=[joy,sadness,anger]")
    rows = family.read(path, "csv", "train")
    assert family.label_set({"train": rows}) == EMOTIONS
    assert encoded(family, path, "csv") == [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    path.write_text("comment,joy,sadness,anger\nyay,1,0,maybe\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"e.csv, line 2, field 'anger': expected 0 or 1, got 'maybe'"):
        family.read(path, "csv", "train")


def test_id_outside_the_label_list_names_file_line_and_field(repo, tmp_path):
    path = tmp_path / "e.tsv"
    path.write_text("glad\t0\tc1\nodd\t0,3\tc2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"e.tsv, line 2, field 'labels': label '3' is not in the label set "
                                        r"\['joy', 'sadness', 'anger'\]"):
        encoded(family_for(repo, path), path, "tsv")


def test_an_example_without_labels_is_an_error_unless_allowed(repo, tmp_path):
    path = tmp_path / "e.tsv"
    path.write_text("glad\t0\tc1\nnothing here\t\tc2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"e.tsv, line 2, field 'labels': no label \(set data.empty_labels=allow"):
        encoded(family_for(repo, path), path, "tsv")
    assert encoded(family_for(repo, path, "data.empty_labels=allow"), path, "tsv")[1] == [0.0, 0.0, 0.0]


def test_a_list_label_under_single_label_points_at_multi_label(repo, tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [{"text": "a", "label": ["x", "y"]}])
    cfg = compose(repo, ["task=sentiment", "model=tiny", f"data.files.train={path}", "data.split_column=null",
                         "data.id_column=null", "task.labels=[x,y]"])
    family = recipe(cfg)
    with pytest.raises(DataError, match=r"line 1, field 'label': label \['x', 'y'\] is a list: "
                                        r"set task.problem_type=multi_label_classification"):
        family.with_labels(["x", "y"]).encode_labels(family.read(path, "jsonl", "train"), "train")


def gold_examples(family, targets):
    rows = [{"id": str(i), "text": "t", "label": t} for i, t in enumerate(targets)]
    return Dataset.from_list(rows, features=family.features())


def logits(probabilities):
    p = np.asarray(probabilities, dtype=np.float64)
    return np.log(p / (1 - p))


def test_decode_applies_the_threshold_and_scores(repo, tmp_path):
    family = family_for(repo, write_emotions(tmp_path / "e.tsv", 4), "task.threshold=0.4")
    gold = gold_examples(family, [[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    outputs = logits([[0.9, 0.1, 0.45], [0.3, 0.35, 0.2], [0.2, 0.1, 0.8]])
    predictions = family.codec.decode(gold.remove_columns("label"), gold, outputs)
    assert [p["labels"] for p in predictions] == [["joy", "anger"], [], ["anger"]]
    assert predictions[0]["probabilities"]["anger"] == pytest.approx(0.45)
    metrics = family.score(gold, predictions)
    assert metrics["per_label"]["sadness"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))
    assert metrics["macro_f1"] == pytest.approx((1 + 0 + 1) / 3)
    assert metrics["subset_accuracy"] == pytest.approx(2 / 3)
    [written] = family.write_predictions(gold, predictions, tmp_path)
    assert json.loads(written.read_text().splitlines()[0])["gold"] == ["joy", "anger"]
    [plot] = family.plots(gold, predictions, metrics, tmp_path)
    assert plot.name == "per_label_f1.png" and plot.read_bytes()[:4] == b"\x89PNG"


def test_tuning_fits_one_or_per_label_thresholds_on_validation(repo, tmp_path):
    path = write_emotions(tmp_path / "e.tsv", 4)
    # joy's positives sit at 0.3, sadness's at 0.7: one global threshold cannot suit both.
    gold = gold_examples(family_for(repo, path), [[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
    outputs = logits([[0.3, 0.2, 0.1], [0.1, 0.7, 0.1], [0.2, 0.6, 0.1], [0.32, 0.75, 0.1]])
    assert family_for(repo, path, "task.tune_threshold=none").tune(gold, gold, outputs) == {}
    per_label = family_for(repo, path, "task.tune_threshold=per_label")
    [joy, sadness, anger] = per_label.tune(gold, gold, outputs)["threshold"]
    assert 0.2 < joy <= 0.3 and 0.6 < sadness <= 0.7 and anger == 0.5, "anger has no positive: kept"
    tuned = per_label.with_codec(per_label.codec.with_settings({"threshold": [joy, sadness, anger]}))
    assert tuned.score(gold, tuned.codec.decode(gold, gold, outputs))["subset_accuracy"] == 1.0
    shared = family_for(repo, path, "task.tune_threshold=global", "task.metric=micro_f1")
    threshold = shared.tune(gold, gold, outputs)["threshold"]
    fitted = shared.with_codec(shared.codec.with_settings({"threshold": threshold}))
    best = fitted.score(gold, fitted.codec.decode(gold, gold, outputs))["micro_f1"]
    for other in (0.1, 0.25, 0.5, 0.65, 0.9):
        moved = shared.with_codec(shared.codec.with_settings({"threshold": other}))
        assert moved.score(gold, moved.codec.decode(gold, gold, outputs))["micro_f1"] <= best
    with pytest.raises(FinetuneError, match=r"task.tune_threshold: expected one of none, global, per_label"):
        family_for(repo, path, "task.tune_threshold=always")


def test_positive_weights_balance_each_label(repo, tmp_path):
    import torch

    family = family_for(repo, write_emotions(tmp_path / "e.tsv", 4))
    features = Dataset.from_list([{"labels": t} for t in [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0],
                                                           [0.0, 0.0, 0.0]]])
    cfg = compose(repo, ["task=goemotions", "model=tiny", "train.class_weights=balanced"])
    loss = family.loss(features, cfg.train)
    outputs = {"logits": torch.zeros(1, 3)}
    # zero logits: BCE = log 2 per label; a positive target's term is weighted by negatives/positives.
    weighted = loss(outputs, torch.tensor([[1.0, 1.0, 1.0]]))
    assert float(weighted) == pytest.approx(np.log(2) * (1 + 3 + 1) / 3, rel=1e-5), "weights 1, 3, 1 (no positive)"
    assert family.loss(features, compose(repo, ["task=goemotions", "train.class_weights=null"]).train) is None
    bad = compose(repo, ["task=goemotions", "train.class_weights=[1,2]"])
    with pytest.raises(FinetuneError, match=r"train.class_weights: expected 'balanced' or 3 positive numbers"):
        family.loss(features, bad.train)
    smoothed = compose(repo, ["task=goemotions", "train.label_smoothing_factor=0.1"])
    with pytest.raises(FinetuneError, match=r"train.label_smoothing_factor: applies to single-label"):
        family.loss(features, smoothed.train)


def test_metrics_on_boolean_matrices():
    metrics = multi_label_metrics([[1, 0], [1, 1], [0, 0]], [[1, 0], [0, 1], [0, 1]], ["a", "b"])
    assert metrics["per_label"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert metrics["per_label"]["b"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert metrics["micro_precision"] == pytest.approx(2 / 3) and metrics["micro_recall"] == pytest.approx(2 / 3)
    assert metrics["subset_accuracy"] == pytest.approx(1 / 3) and metrics["labels_per_example"] == 1.0


def test_trained_export_applies_the_tuned_threshold(tiny_exports):
    from finetune.inference import Predictor

    cfg = tiny_exports["goemotions"]
    metrics = reported(json.loads(Path(cfg.paths.metrics).read_text()))
    assert metrics["split"] == "test" and metrics["macro_f1"] > 0.6, "each label has its own word"
    spec = json.loads((Path(cfg.paths.export) / "finetune.json").read_text())
    assert spec["settings"]["threshold"] == metrics["tuned"]["threshold"] != 0.5
    predictor = Predictor(cfg.paths.export)
    [both] = predictor.predict([{"text": "the game was glad and furious today"}])
    assert set(both["labels"]) == {"joy", "anger"}
    config = json.loads((Path(cfg.paths.export) / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    card = (Path(cfg.paths.export) / "README.md").read_text()
    assert f"reaches the threshold {metrics['tuned']['threshold']}, fitted on the validation split" in card


def test_real_goemotions_files_read_as_the_paper_counts_them(repo):
    needs_shared("goemotions", "test.tsv")
    from collections import Counter

    from finetune.data.sources import load_examples

    cfg = compose(repo, ["task=goemotions", "model=tiny"])
    family = recipe(cfg)
    splits, _ = load_examples(cfg, family)
    assert {k: len(v) for k, v in splits.items()} == {"train": 43410, "validation": 5426, "test": 5427}
    per_row = Counter(len(e["label"]) for e in splits["train"])
    # The mirror's README says 36,309 single-label rows, but its counts then sum to 43,411: the file has 36,308.
    assert per_row == {1: 36308, 2: 6541, 3: 532, 4: 28, 5: 1}
    assert any('"' in e["text"] for e in splits["train"]), "quotes stay text"


@pytest.mark.parametrize(("row", "problem"), [
    ("odd\t0,7\tc9", "label '7' is not in the label set ['joy', 'sadness', 'anger']"),
    ("blank\t\tc9", "no label (set data.empty_labels=allow if an example may have none)"),
])
def test_stage_script_prints_a_bad_label_as_one_line(tmp_path, row, problem):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    files = {split: write_emotions(tmp_path / f"{split}.tsv", 6, seed) for seed, split in
             enumerate(("train", "validation", "test"))}
    lines = files["train"].read_text().splitlines()
    files["train"].write_text("\n".join(lines[:3] + [row] + lines[3:]) + "\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "download.py"), "task=goemotions", f"task.labels=[{LABELS}]",
         *[f"data.files.{split}={path}" for split, path in files.items()], f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "FINETUNE_ROOT": str(REPO)})
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {files['train']}, line 4, field 'labels': {problem}"
