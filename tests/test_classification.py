"""The classification family: reading and validating rows, tokenizing, scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset

from finetune.config import compose
from finetune.errors import DataError, FinetuneError
from finetune.models import load_tokenizer
from finetune.tasks import recipe
from finetune.tasks.interface import window_spans


@pytest.fixture
def family(repo):
    return recipe(compose(repo, ["task=sentiment", "model=tiny", "data.split_column=null",
                                 "data.id_column=null"])).with_labels(["neg", "pos"])


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_rows_and_maps_label_names_or_ids(family, tmp_path):
    for name, labels in (("names.csv", "pos,neg"), ("ids.csv", "1,0")):
        good, bad = labels.split(",")
        path = write(tmp_path, name, f"text,label\ngreat film,{good}\nawful,{bad}\n")
        examples = family.read(path, "csv", "train")
        assert [e["text"] for e in examples] == ["great film", "awful"]
        family.encode_labels(examples, "train")
        assert [e["label"] for e in examples] == [1, 0]


def test_labels_mixing_names_and_ids_are_refused(repo, family, tmp_path):
    """`pos, neg, 0, 1` would be four classes collected from the data, or two sources mixed silently."""
    path = write(tmp_path, "a.csv", "text,label\ngreat film,pos\nfine,pos\nawful,0\n")
    with pytest.raises(DataError) as error:
        family.encode_labels(family.read(path, "csv", "train"), "train")
    assert str(error.value).startswith(f"{path}, line 4, field 'label': the labels mix names and integer ids "
                                       f"('pos' at {path}, line 2, '0' at {path}, line 4)")
    collecting = recipe(compose(repo, ["task=sentiment", "model=tiny", "task.labels=null", "data.split_column=null"]))
    with pytest.raises(DataError, match="mix names and integer ids"):
        collecting.label_set({"train": collecting.read(path, "csv", "train")})


def test_label_outside_the_set_names_file_row_and_field(family, tmp_path):
    path = write(tmp_path, "a.csv", "text,label\ngreat,pos\nmeh,neutral\n")
    examples = family.read(path, "csv", "train")
    with pytest.raises(DataError) as error:
        family.encode_labels(examples, "train")
    assert f"{path}, line 3, field 'label': label 'neutral' is not in the label set" in str(error.value)


def test_empty_text_is_reported(family, tmp_path):
    path = write(tmp_path, "a.jsonl", '{"text": "ok", "label": 1}\n{"text": "  ", "label": 0}\n')
    with pytest.raises(DataError, match=r"a.jsonl, line 2, field 'text': empty text"):
        family.read(path, "jsonl", "train")


def test_misnamed_column_is_reported(family, tmp_path):
    path = write(tmp_path, "a.csv", "review,label\ngood,pos\n")
    with pytest.raises(DataError, match=r"line 2, field 'text': missing column \(found: review, label\)"):
        family.read(path, "csv", "train")


def test_split_column_value_is_read_with_each_row(repo, tmp_path):
    family = recipe(compose(repo, ["task=sentiment", "model=tiny"]))
    path = write(tmp_path, "all.csv", "text,label,split,id\na,1,train,7\nb,0,test,8\nc,1,train,9\n")
    assert [(e["id"], e["_split"]) for e in family.read(path, "csv", "train")] == [("7", "train"), ("8", "test"),
                                                                                   ("9", "train")]


def test_labels_are_collected_sorted_when_not_configured(repo):
    family = recipe(compose(repo, ["task=sentiment", "model=tiny", "task.labels=null"]))
    assert family.label_set({"train": [{"label": "b"}, {"label": "a"}, {"label": "b"}]}) == ["a", "b"]


def test_tokenize_truncates_counts_and_records_lengths(repo):
    cfg = compose(repo, ["task=sentiment", "model=tiny", "data.max_length=8"])
    family = recipe(cfg)
    tokenizer = load_tokenizer(cfg.model)
    examples = Dataset.from_list([{"id": "0", "text": "short one", "label": 0},
                                  {"id": "1", "text": " ".join(["word"] * 40), "label": 1}])
    features, stats = family.codec.tokenize(examples, tokenizer)
    assert stats["truncated"] == 1 and stats["examples"] == 2
    assert features["length"] == [len(ids) for ids in features["input_ids"]]
    assert features["length"][1] == 8 and features["input_ids"][1][-1] == tokenizer.sep_token_id
    assert features["labels"] == [0, 1]


def test_decode_reads_no_gold_and_score_pairs_with_it(family, tmp_path):
    gold = Dataset.from_list([{"id": "a", "text": "x", "label": 0}, {"id": "b", "text": "y", "label": 1},
                              {"id": "c", "text": "z", "label": 1}], features=family.features())
    unlabelled = gold.remove_columns("label")
    features = Dataset.from_list([{"truncated": False}, {"truncated": True}, {"truncated": False}])
    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    predictions = family.codec.decode(unlabelled, features, (logits,))
    assert [p["label"] for p in predictions] == ["neg", "pos", "neg"]
    assert predictions[0]["score"] == pytest.approx(np.exp(2) / (np.exp(2) + 1), abs=1e-6)
    assert sum(predictions[0]["probabilities"].values()) == pytest.approx(1.0)
    assert predictions[1]["truncated"] is True and "truncated" not in predictions[0]
    metrics = family.score(gold, predictions)
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["pos"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3,
                                                         "support": 2})
    assert metrics["f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert metrics["confusion_matrix"] == [[1, 0], [1, 1]] and metrics["n_eval"] == 3
    written = family.write_predictions(gold, predictions, tmp_path)
    rows = [json.loads(line) for line in written[0].read_text().splitlines()]
    assert [(r["gold"], r["label"]) for r in rows] == [("neg", "neg"), ("pos", "pos"), ("pos", "neg")]
    plots = family.plots(gold, predictions, metrics, tmp_path)
    assert plots[0].read_bytes()[:4] == b"\x89PNG"


def test_inputs_name_the_row_and_field(family):
    inputs = family.codec.inputs([{"text": "fine"}, {"text": "good", "id": "x"}], "in.jsonl")
    assert inputs[1] == {"id": "x", "text": "good"}
    with pytest.raises(DataError, match=r"in.jsonl, row 2, field 'text': empty text"):
        family.codec.inputs([{"text": "fine"}, {"text": "  "}], "in.jsonl")
    with pytest.raises(DataError, match=r"in.jsonl, row 1, field 'text': missing field \(found: review\)"):
        family.codec.inputs([{"review": "fine"}], "in.jsonl")


def test_balanced_class_weights_and_explicit_ones(family, repo):
    import torch
    from datasets import Dataset

    from finetune.errors import FinetuneError

    features = Dataset.from_dict({"labels": [0, 0, 0, 1]})
    assert family.class_weights(features, "balanced") == pytest.approx([4 / 6, 2.0])
    assert family.class_weights(features, None) is None
    loss = family.loss(features, compose(repo, ["task=sentiment", "train.class_weights=balanced",
                                                                "train.label_smoothing_factor=0.1"]).train)
    expected = torch.nn.CrossEntropyLoss(weight=torch.tensor([4 / 6, 2.0]), label_smoothing=0.1)
    logits, target = torch.tensor([[0.3, -0.2], [1.0, 2.0]]), torch.tensor([1, 0])
    assert float(loss({"logits": logits}, target)) == pytest.approx(float(expected(logits, target)))
    with pytest.raises(FinetuneError, match=r"train.class_weights: expected 'balanced' or 2 positive numbers"):
        family.class_weights(features, [1.0, -1.0])


# -- sentence pairs ---------------------------------------------------------------------------

def pair_family(repo, tmp_path, *overrides):
    from tests.conftest import pair_rows, write_jsonl

    path = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(6))
    cfg = compose(repo, ["task=mrpc", "model=tiny", f"data.files.train={path}", "data.format=jsonl", *overrides])
    return recipe(cfg), path


def test_pairs_read_and_encode_with_segments_and_longest_first(repo, tmp_path):
    family, path = pair_family(repo, tmp_path, "data.max_length=16")
    assert family.codec.input_fields == ("text", "text_pair")
    rows = family.read(path, "jsonl", "train")
    assert rows[1]["text_pair"] == "indeed " + rows[1]["text"] and rows[1]["label"] == 1
    labels = ["not_equivalent", "equivalent"]
    examples = Dataset.from_list([{"id": "0", "text": "a b", "text_pair": " ".join(["word"] * 40), "label": 0}],
                                 features=family.with_labels(labels).features())
    tokenizer = load_tokenizer(compose(repo, ["model=tiny"]).model)
    features, stats = family.with_labels(labels).codec.tokenize(examples, tokenizer)
    ids, segments = features[0]["input_ids"], features[0]["token_type_ids"]
    assert len(ids) == 16 and stats["truncated"] == 1
    first = segments.index(1)
    assert tokenizer.decode(ids[1:first - 1]) == "a b", "the longer side lost the tokens"
    assert set(segments[first:]) == {1}


def test_missing_pair_column_names_file_line_and_field(repo, tmp_path):
    family, path = pair_family(repo, tmp_path)
    path.write_text(json.dumps({"#1 String": "a", "Quality": 1}) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl, line 1, field '#2 String': missing column \(found: #1 String"):
        family.read(path, "jsonl", "train")
    path.write_text(json.dumps({"#1 String": "a", "#2 String": " ", "Quality": 1}) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl, line 1, field '#2 String': empty text"):
        family.read(path, "jsonl", "train")
    with pytest.raises(DataError, match=r"cli, row 1, field 'text_pair': missing field"):
        family.codec.inputs([{"text": "only one"}], "cli")


def test_real_mrpc_files_read_as_glue_counts_them(repo):
    from tests.conftest import needs_shared

    needs_shared("glue", "mrpc", "dev.tsv")
    from finetune.data.sources import load_examples

    cfg = compose(repo, ["task=mrpc", "model=tiny"])
    splits, _ = load_examples(cfg, recipe(cfg))
    assert {k: len(v) for k, v in splits.items()} == {"train": 3668, "test": 408}
    assert sum(int(e["label"]) for e in splits["test"]) == 279, "GLUE's published count of paraphrases"
    assert any('"' in e["text"] for e in splits["train"]), "lone quotes stay text, rows do not merge"


# -- long inputs -------------------------------------------------------------------------------

def long_examples():
    long = " ".join(f"word{i % 30} number {i}" for i in range(60))
    return Dataset.from_list([{"id": "a", "text": "short one", "label": 0}, {"id": "b", "text": long, "label": 1},
                              {"id": "c", "text": "another short one", "label": 0}]), long


def long_family(repo, mode, *overrides):
    cfg = compose(repo, ["task=sentiment", "model=tiny", "data.max_length=24", f"data.long_inputs={mode}",
                         "data.doc_stride=6", *overrides])
    return recipe(cfg).with_labels(["neg", "pos"]), load_tokenizer(cfg.model)


def test_windows_read_every_token_of_a_long_text_with_its_label(repo):
    family, tokenizer = long_family(repo, "windows")
    examples, long = long_examples()
    features, stats = family.codec.tokenize(examples, tokenizer)
    body = tokenizer(long)["input_ids"][1:-1]
    windows = [f for f in features if f["example_index"] == 1]
    assert len(windows) > 3 and stats["multi_window_examples"] == 1 and stats["truncated"] == 0
    assert all(len(w["input_ids"]) == 24 and w["input_ids"][0] == tokenizer.cls_token_id
               and w["input_ids"][-1] == tokenizer.sep_token_id and w["labels"] == 1 for w in windows)
    # each window is a stretch of the text; together they hold all of it
    spans = window_spans(len(body), 22, 6)
    assert [w["input_ids"][1:-1] for w in windows] == [body[start:end] for start, end in spans]
    assert sorted({i for start, end in spans for i in range(start, end)}) == list(range(len(body)))
    assert features[0]["example_index"] == 0 and features[-1]["example_index"] == 2, "order kept"


def test_window_logits_are_averaged_whatever_the_feature_order(repo):
    family, tokenizer = long_family(repo, "windows")
    examples, _ = long_examples()
    features, _ = family.codec.tokenize(examples, tokenizer)
    logits = np.random.default_rng(0).normal(size=(len(features), 2)).astype(np.float32)
    predictions = family.codec.decode(examples.remove_columns("label"), features, (logits,))
    order = np.random.default_rng(1).permutation(len(features))
    shuffled = family.codec.decode(examples.remove_columns("label"), features.select(order), (logits[order],))
    assert shuffled == predictions
    windows = [i for i, example in enumerate(features["example_index"]) if example == 1]
    mean = logits[windows].mean(axis=0)
    assert predictions[1]["windows"] == len(windows) and "truncated" not in predictions[1]
    assert predictions[1]["label"] == ["neg", "pos"][int(mean.argmax())]
    assert "windows" not in predictions[0] and [p["id"] for p in predictions] == ["a", "b", "c"]


def test_windows_find_their_text_by_position_not_by_id(repo):
    """Ids need not be unique (IMDB's restart per class): a window belongs to its text's row."""
    family, tokenizer = long_family(repo, "windows")
    examples, _ = long_examples()
    same = examples.map(lambda row: {"id": "7"})
    features, _ = family.codec.tokenize(same, tokenizer)
    logits = np.random.default_rng(0).normal(size=(len(features), 2)).astype(np.float32)
    predictions = family.codec.decode(same.remove_columns("label"), features, (logits,))
    assert len(predictions) == 3 and [p.get("windows", 1) for p in predictions] == [1, len(features) - 2, 1]


def test_head_tail_keeps_the_start_and_the_end(repo):
    family, tokenizer = long_family(repo, "head_tail")
    examples, long = long_examples()
    features, stats = family.codec.tokenize(examples, tokenizer)
    full = tokenizer(long)["input_ids"]
    kept = features[1]["input_ids"]
    assert len(kept) == 24 and stats["truncated"] == 1 and len(features) == 3
    assert kept == full[:6] + full[-18:], "a quarter from the start ([CLS] in it), the rest from the end ([SEP] in it)"


def test_pairs_refuse_windows_in_one_line(repo):
    family, tokenizer = long_family(repo, "windows", "data.text_pair_column=text_pair")
    examples = Dataset.from_list([{"id": "a", "text": "one", "text_pair": "two", "label": 0}])
    with pytest.raises(FinetuneError, match="data.long_inputs=windows reads single texts"):
        family.codec.tokenize(examples, tokenizer)
