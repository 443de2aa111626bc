"""The token-classification family: labels, sub-token alignment, word-level scoring, a user corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import DictConfig

from finetune.config import compose
from finetune.errors import DataError, FinetuneError
from finetune.metrics import reported
from finetune.tasks import recipe
from finetune.tasks.token_classification.metrics import token_classification_metrics
from tests.conftest import REPO, user_corpus

LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER"]
LONG_WORD = "antidisestablishmentarianism"  # 8 MiniLM word pieces


def ner_config(*overrides: str, workdir: Path | None = None) -> DictConfig:
    return compose(REPO, ["task=ner", "model=tiny", "tracking=none", *overrides], workdir=workdir)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from finetune.models import load_tokenizer

    return load_tokenizer(ner_config().model)


def examples_dataset(family: Any, sentences: list[tuple[list[str], list[str]]], labels: list[str]) -> Any:
    from datasets import Dataset

    index = {label: i for i, label in enumerate(labels)}
    rows = [{"id": str(i), "tokens": tokens, "tags": [index[t] for t in tags]}
            for i, (tokens, tags) in enumerate(sentences)]
    return Dataset.from_list(rows, features=family.with_labels(labels).features())


def fake_logits(rows: list[list[str]], labels: list[str], pad_to: int | None = None) -> np.ndarray:
    """Logits that predict the given label per sub-token position, padded with -100 like the Trainer."""
    width = pad_to or max(len(r) for r in rows)
    out = np.full((len(rows), width, len(labels)), -100.0, dtype=np.float32)
    for i, row in enumerate(rows):
        for j, label in enumerate(row):
            out[i, j] = 0.0
            out[i, j, labels.index(label)] = 5.0
    return out


# -- labels -----------------------------------------------------------------------------------

def test_labels_collected_in_stable_order() -> None:
    family = recipe(ner_config())
    train = [{"tags": ["B-PER", "O", "B-LOC"]}, {"tags": ["B-ORG", "I-ORG", "O"]}]
    assert family.label_set({"train": train}) == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert recipe(ner_config("task.labels=[O,B-X,I-X]")).label_set({"train": train}) == ["O", "B-X", "I-X"]
    with pytest.raises(FinetuneError, match="not an IOB tag"):
        recipe(ner_config("task.labels=[O,X]")).label_set({"train": train})


def test_unseen_tag_in_validation_names_file_and_line(tmp_path: Path) -> None:
    family = recipe(ner_config())
    (tmp_path / "train.txt").write_text("Paris B-LOC\nis O\n\nnice O\n")
    (tmp_path / "valid.txt").write_text("Bob B-PER\nleft O\n\nIn O\nParis B-LOC\nagain O\n\nAcme B-ORG\n")
    splits = {"train": family.read(tmp_path / "train.txt", "conll", "train"),
              "validation": family.read(tmp_path / "valid.txt", "conll", "validation")}
    labels = family.label_set(splits)
    assert labels == ["O", "B-LOC", "I-LOC"]
    with pytest.raises(DataError) as error:
        family.with_labels(labels).encode_labels(splits["validation"], "validation")
    assert f"{tmp_path / 'valid.txt'}, line 1" in str(error.value) and "B-PER" in str(error.value)

    mapped = recipe(ner_config("task.label_map={B-PER: O, B-ORG: B-LOC}"))
    splits = {"train": mapped.read(tmp_path / "train.txt", "conll", "train"),
              "validation": mapped.read(tmp_path / "valid.txt", "conll", "validation")}
    encoded = mapped.with_labels(labels).encode_labels(splits["validation"], "validation")
    assert [e["tags"] for e in encoded] == [[0, 0], [0, 1, 0], [1]]


def test_hub_rows_map_class_label_names() -> None:
    from datasets import ClassLabel, Dataset, Features, List, Value

    # the ClassLabel names of eriktks/conll2003
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    features = Features({"id": Value("string"), "tokens": List(Value("string")),
                         "ner_tags": List(ClassLabel(names=names))})
    hub = Dataset.from_list([{"id": "0", "tokens": ["EU", "rejects"], "ner_tags": [3, 0]},
                             {"id": "1", "tokens": [], "ner_tags": []},
                             {"id": "2", "tokens": ["Peter", "Blackburn"], "ner_tags": [1, 2]}],
                            features=features)
    rows = recipe(ner_config()).from_hub(hub, "train")
    assert [(r["tokens"], r["tags"]) for r in rows] == [(["EU", "rejects"], ["B-ORG", "O"]),
                                                       (["Peter", "Blackburn"], ["B-PER", "I-PER"])]


# -- tokenization and alignment ---------------------------------------------------------------

def test_alignment_on_a_word_of_many_sub_tokens(tokenizer: Any) -> None:
    for label_all in (False, True):
        family = recipe(ner_config(f"task.label_all_tokens={str(label_all).lower()}"))
        sentence = (["The", LONG_WORD, "of", "Paris"], ["O", "B-MISC", "O", "B-LOC"])
        examples = examples_dataset(family, [sentence], LABELS)
        features, stats = family.with_labels(LABELS).codec.tokenize(examples, tokenizer)
        row = features[0]
        pieces = row["word_ids"].count(1)
        assert pieces >= 4  # the premise: the long word splits into many word pieces
        assert row["word_ids"][0] == -1 and row["word_ids"][-1] == -1
        assert row["labels"][0] == -100 and row["labels"][-1] == -100
        first = row["word_ids"].index(1)
        assert row["labels"][first] == LABELS.index("B-MISC")
        rest = row["labels"][first + 1: first + pieces]
        expected = LABELS.index("I-MISC") if label_all else -100
        assert rest == [expected] * (pieces - 1)
        assert row["labels"][row["word_ids"].index(3)] == LABELS.index("B-LOC")
        assert row["length"] == len(row["input_ids"])
        assert stats["truncated_words"] == 0 and stats["truncated"] == 0


def test_truncation_counts_lost_words_and_predicts_them_o(tokenizer: Any) -> None:
    family = recipe(ner_config("data.max_length=8"))
    tokens = ["Peter", LONG_WORD, "lives", "in", "Paris", "now"]
    tags = ["B-PER", "O", "O", "O", "B-LOC", "O"]
    examples = examples_dataset(family, [(tokens, tags), (["Paris"], ["B-LOC"])], LABELS)
    features, stats = family.with_labels(LABELS).codec.tokenize(examples, tokenizer)
    word_ids = features[0]["word_ids"]
    assert len(word_ids) == 8
    kept = max(word_ids)
    assert kept < len(tokens) - 1  # the premise: words after `kept` were cut
    assert stats["truncated"] == 1 and stats["truncated_words"] == len(tokens) - 1 - kept

    # a model that predicts B-PER everywhere it can see
    rows = [["B-PER"] * len(f["word_ids"]) for f in features]
    predictions = family.with_labels(LABELS).codec.decode(examples, features, fake_logits(rows, LABELS, pad_to=12))
    assert predictions[0]["tags"] == ["B-PER"] * (kept + 1) + ["O"] * (len(tokens) - 1 - kept)
    assert predictions[0]["unpredicted_words"] == len(tokens) - 1 - kept
    assert predictions[1]["tags"] == ["B-PER"]
    metrics = family.with_labels(LABELS).score(examples, predictions)
    assert metrics["unpredicted_words"] == len(tokens) - 1 - kept


# -- word-level scoring -----------------------------------------------------------------------

def test_metric_is_word_level_not_sub_token_level(tokenizer: Any) -> None:
    """A split word predicted B- on every piece: one correct entity per word, not one per piece."""
    family = recipe(ner_config())
    tokens, tags = ["Johannesburg", "and", LONG_WORD], ["B-LOC", "O", "B-MISC"]
    examples = examples_dataset(family, [(tokens, tags)], LABELS)
    features, _ = family.with_labels(LABELS).codec.tokenize(examples, tokenizer)
    word_ids = features[0]["word_ids"]
    # every piece predicts its word's gold tag: B- copied onto continuation pieces
    sub_predictions = ["O" if w < 0 else tags[w] for w in word_ids]
    predictions = family.with_labels(LABELS).codec.decode(examples, features, fake_logits([sub_predictions], LABELS))
    assert predictions[0]["tags"] == tags
    metrics = family.with_labels(LABELS).score(examples, predictions)
    assert metrics["f1"] == 1.0 and metrics["precision"] == 1.0 and metrics["accuracy"] == 1.0
    assert metrics["per_type"]["LOC"]["support"] == 1 and metrics["per_type"]["MISC"]["f1"] == 1.0

    # The same outputs scored per sub-token count each continuation piece as another entity.
    sub_gold, previous = [], None
    for word in word_ids:
        if word < 0:
            sub_gold.append("O")
        elif word == previous and tags[word] != "O":
            sub_gold.append("I-" + tags[word][2:])  # the gold label of a continuation piece
        else:
            sub_gold.append(tags[word])
        previous = word
    sub_metrics = token_classification_metrics([sub_gold], [sub_predictions])
    assert sub_metrics["precision"] < 0.5 < metrics["precision"]


def test_first_sub_token_decides_the_word(tokenizer: Any) -> None:
    family = recipe(ner_config())
    examples = examples_dataset(family, [([LONG_WORD, "Paris"], ["B-MISC", "B-LOC"])], LABELS)
    features, _ = family.with_labels(LABELS).codec.tokenize(examples, tokenizer)
    word_ids = features[0]["word_ids"]
    first = word_ids.index(0)
    sub = ["O" if w != 0 else "B-PER" for w in word_ids]
    sub[first] = "B-MISC"
    sub[word_ids.index(1)] = "I-LOC"
    predictions = family.with_labels(LABELS).codec.decode(examples, features, fake_logits([sub], LABELS))
    assert predictions[0]["tags"] == ["B-MISC", "B-LOC"]  # an I- after another type starts an entity: B- in IOB2
    metrics = family.with_labels(LABELS).score(examples, predictions)
    assert metrics["f1"] == 1.0


def test_metrics_per_type_and_confusion() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]
    metrics = token_classification_metrics(gold, predicted)
    assert metrics["precision"] == pytest.approx(2 / 4) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert metrics["per_type"]["LOC"]["recall"] == 0.0
    confusion = metrics["type_confusion"]
    assert confusion["labels"] == ["O", "LOC", "ORG", "PER"]
    assert confusion["matrix"][1] == [0, 0, 1, 0]  # gold LOC word predicted ORG
    assert confusion["matrix"][0] == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="sentence 0"):
        token_classification_metrics([["O"]], [["O", "O"]])


def test_predictions_file_is_conll(tmp_path: Path) -> None:
    family = recipe(ner_config())
    examples = examples_dataset(family, [(["New York", "rocks"], ["B-LOC", "O"]), (["Bob"], ["B-PER"])], LABELS)
    predictions = [{"id": "0", "tokens": ["New York", "rocks"], "tags": ["B-LOC", "O"]},
                   {"id": "1", "tokens": ["Bob"], "tags": ["O"]}]
    [path] = family.write_predictions(examples, predictions, tmp_path)
    assert path.name == "predictions.conll"
    assert path.read_text() == "New_York B-LOC B-LOC\nrocks O O\n\nBob B-PER O\n\n"


def test_decode_free_text_gives_entity_spans_with_character_offsets(tokenizer: Any) -> None:
    """Unlabelled text in, entities out: type, the exact characters, their offsets and a score."""
    from datasets import Dataset

    family = recipe(ner_config())
    text = "Angela  Merkel visited the U.S. (Washington) in 2019."
    examples = Dataset.from_list(family.codec.inputs([{"text": text}], "cli"))
    assert examples[0]["tokens"] == ["Angela", "Merkel", "visited", "the", "U.S.", "(", "Washington", ")", "in",
                                     "2019", "."]
    features, _ = family.with_labels(LABELS).codec.tokenize(examples, tokenizer)
    assert "labels" not in features.column_names, "no gold, no labels"
    word_tags = {0: "B-PER", 1: "I-PER", 4: "B-LOC", 6: "B-LOC"}
    sub = ["O" if w < 0 else word_tags.get(w, "O") for w in features[0]["word_ids"]]
    [prediction] = family.with_labels(LABELS).codec.decode(examples, features, fake_logits([sub], LABELS))
    entities = prediction["entities"]
    assert [(e["type"], e["text"]) for e in entities] == [("PER", "Angela  Merkel"), ("LOC", "U.S."),
                                                          ("LOC", "Washington")]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)
    assert all(0.0 < e["score"] <= 1.0 for e in entities)


def test_entity_spans_follow_conlleval() -> None:
    from finetune.tasks.token_classification.codec import entity_spans

    assert entity_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == [
        ("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 4), ("ORG", 5, 5)]
    assert entity_spans(["O", "O"]) == []



def test_hub_fallback_fails_fast_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune.data.sources import load_examples

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cfg = ner_config(f"data.dir={tmp_path}")
    expected = r"mirror: .*conll2003/train\.txt.* not found.*eriktks/conll2003.*offline"
    with pytest.raises(FinetuneError, match=expected):
        load_examples(cfg, recipe(cfg))


# -- a user corpus, overrides only, through the real stages --------------------------------------

@pytest.mark.slow
def test_user_corpus_trains_and_evaluates_with_overrides_only(tmp_path: Path) -> None:
    from finetune.io import read_json
    from finetune.pipeline.download import download
    from finetune.pipeline.evaluate import evaluate
    from finetune.pipeline.tokenize import tokenize
    from finetune.pipeline.train import train

    user_corpus(tmp_path / "train.tsv", 64, 0)
    user_corpus(tmp_path / "dev.tsv", 12, 1)
    test = user_corpus(tmp_path / "test.tsv", 10, 2)
    cfg = ner_config(f"data.files.train={tmp_path / 'train.tsv'}",
                     f"data.files.validation={tmp_path / 'dev.tsv'}",
                     f"data.files.test={tmp_path / 'test.tsv'}", "task.labels=null", "data.eval_split=test",
                     "train.num_train_epochs=4", "train.learning_rate=5e-3",
                     "train.per_device_train_batch_size=8", "train.disable_tqdm=true",
                     "train.logging_steps=50", workdir=tmp_path)  # all outputs below tmp_path
    manifest = download(cfg)
    assert manifest["labels"] == ["O", "B-DOSE", "I-DOSE", "B-DRUG", "I-DRUG"]
    assert manifest["rows"] == {"train": 64, "validation": 12, "test": 10}
    stats = tokenize(cfg)
    assert stats["test"]["truncated_words"] == 0
    train(cfg)
    model_config = read_json(tmp_path / "models" / "ner-tiny" / "config.json")
    assert model_config["id2label"] == {"0": "O", "1": "B-DOSE", "2": "I-DOSE", "3": "B-DRUG", "4": "I-DRUG"}
    metrics = evaluate(cfg)

    saved = reported(json.loads((tmp_path / "metrics" / "ner-tiny.json").read_text()))
    assert {"precision", "recall", "f1", "accuracy", "per_type"} <= set(saved)
    assert set(saved["per_type"]) <= {"DOSE", "DRUG"} and saved["per_type"]["DOSE"]["support"] == 10
    assert saved["split"] == "test" and saved["f1"] == metrics["test"]["f1"]
    assert saved["f1"] > 0.5  # the pattern is trivial: even a 2-layer random BERT learns it
    lines = (tmp_path / "predictions" / "ner-tiny" / "predictions.conll").read_text().split("\n")
    blocks = "\n".join(lines).strip("\n").split("\n\n")
    assert len(blocks) == len(test)
    for block, sentence in zip(blocks, test, strict=True):
        rows = [line.split(" ") for line in block.split("\n")]
        assert all(len(row) == 3 for row in rows)
        assert [(r[0], r[1]) for r in rows] == sentence
        assert {r[2] for r in rows} <= set(manifest["labels"])
    assert (tmp_path / "plots" / "ner-tiny" / "eval" / "type_confusion.png").stat().st_size > 0


# -- long inputs: windows ----------------------------------------------------------------------

def long_sentence() -> tuple[list[str], list[str]]:
    """40 words, one city every fifth word; long words cross the window edges mid-word."""
    tokens = ["Paris" if i % 5 == 0 else (LONG_WORD if i % 5 == 2 else "and") for i in range(40)]
    return tokens, ["B-LOC" if t == "Paris" else "O" for t in tokens]


def test_windows_train_every_word_once_per_window_and_tag_every_word(tokenizer: Any) -> None:
    family = recipe(ner_config("data.max_length=24", "data.long_inputs=windows", "data.doc_stride=6"))
    tokens, tags = long_sentence()
    examples = examples_dataset(family, [(["Paris"], ["B-LOC"]), (tokens, tags)], LABELS)
    codec = family.with_labels(LABELS).codec
    features, stats = codec.tokenize(examples, tokenizer)
    windows = [f for f in features if f["example_index"] == 1]
    assert len(windows) > 3 and stats["truncated"] == 0 and stats["truncated_words"] == 0
    assert stats["multi_window_examples"] == 1 and all(len(w["input_ids"]) <= 24 for w in windows)
    for window in windows:  # a label sits only on a word's first sub-token, never on a word begun earlier
        labelled = [w for w, label in zip(window["word_ids"], window["labels"], strict=True) if label != -100]
        assert labelled == sorted(set(labelled)) and -1 not in labelled
        assert all(LABELS[label] == tags[w] for w, label in zip(window["word_ids"], window["labels"], strict=True)
                   if label != -100)
    assert set().union(*[{w for w, label in zip(f["word_ids"], f["labels"], strict=True) if label != -100}
                         for f in windows]) == set(range(len(tokens))), "every word trained in some window"

    # a model that predicts each window's own gold finds every entity of the long text, one tag per word
    rows = [[LABELS[label] if label != -100 else "O" for label in f["labels"]] for f in features]
    predictions = codec.decode(examples.remove_columns("tags"), features, fake_logits(rows, LABELS))
    assert predictions[1]["tags"] == tags and predictions[1]["windows"] == len(windows)
    assert len(predictions[1]["entities"]) == tags.count("B-LOC") and predictions[1]["unpredicted_words"] == 0
    assert predictions[0]["tags"] == ["B-LOC"] and "windows" not in predictions[0]


def test_a_word_is_read_where_it_sits_farthest_from_an_edge() -> None:
    from finetune.tasks.token_classification.codec import read_positions

    # word 1 sits at position 4 of feature 7 (3 from its end) and at position 2 of feature 8 (2 from its start)
    windows = {7: [-1, 0, 0, 0, 1, 2, 2, -1], 8: [-1, 0, 1, 2, 3, 3, 3, 3, 3, -1]}
    assert read_positions(windows, 4) == [(7, 1), (7, 4), (8, 3), (8, 4)]
    assert read_positions({9: [-1, 0, -1]}, 2) == [(9, 1), None]


def test_head_tail_is_refused_for_tags_in_one_line(tokenizer: Any) -> None:
    family = recipe(ner_config("data.long_inputs=head_tail")).with_labels(LABELS)
    examples = examples_dataset(family, [(["Paris"], ["B-LOC"])], LABELS)
    with pytest.raises(FinetuneError, match="data.long_inputs=head_tail leaves the middle words untagged"):
        family.codec.tokenize(examples, tokenizer)
