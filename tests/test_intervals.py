"""Bootstrap intervals: seeded, around the point value, and each family's resampled metrics equal
its own scores on the whole split."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from finetune.config import compose
from finetune.intervals import Resampled, bootstrap
from finetune.tasks import recipe
from tests.conftest import REPO


def mean_of(values: np.ndarray) -> Resampled:
    return Resampled("examples", len(values), lambda draw: {"accuracy": values[draw].mean()})


def test_the_interval_is_seeded_and_as_wide_as_the_binomial_noise():
    correct = (np.arange(400) % 4 != 0).astype(float)  # accuracy 0.75 on 400 examples
    first = bootstrap(mean_of(correct), resamples=1000, level=0.95, seed=3)
    assert first == bootstrap(mean_of(correct), resamples=1000, level=0.95, seed=3)
    assert first["accuracy_ci_low"] < 0.75 < first["accuracy_ci_high"]
    half_width = 1.96 * np.sqrt(0.75 * 0.25 / 400)  # the normal approximation, ±0.042
    assert (first["accuracy_ci_high"] - first["accuracy_ci_low"]) / 2 == pytest.approx(half_width, rel=0.15)
    assert first["ci"] == {"level": 0.95, "resamples": 1000, "seed": 3, "unit": "examples", "units": 400}
    wider = bootstrap(mean_of(correct[:40]), resamples=1000, level=0.95, seed=3)
    assert wider["accuracy_ci_high"] - wider["accuracy_ci_low"] > 2.5 * half_width, "ten times fewer examples"


def whole(resampled: Resampled) -> dict[str, float]:
    return resampled.statistic(np.arange(resampled.size))


def test_single_label_resamples_score_as_the_family_scores():
    family = recipe(compose(REPO, ["task=sarcasm", "model=tiny"])).with_labels(["a", "b", "c"])
    gold = Dataset.from_list([{"id": str(i), "text": "x", "label": g} for i, g in enumerate([0, 0, 1, 2, 2, 1, 0])],
                             features=family.features())
    predictions = [{"id": str(i), "label": p} for i, p in enumerate(["a", "b", "b", "c", "a", "b", "a"])]
    scores = family.score(gold, predictions)
    assert whole(family.resampled(gold, predictions)) == pytest.approx(
        {key: scores[key] for key in ("accuracy", "f1", "precision", "recall")})


def test_multi_label_and_regression_resamples_score_as_the_families_score(tmp_path):
    from tests.conftest import EMOTIONS

    family = recipe(compose(REPO, ["task=goemotions", "model=tiny", f"task.labels=[{', '.join(EMOTIONS)}]"]))
    family = family.with_labels(EMOTIONS)
    rows = [[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]]
    gold = Dataset.from_list([{"id": str(i), "text": "x", "label": [float(v) for v in r]} for i, r in enumerate(rows)],
                             features=family.features())
    predictions = [{"id": "0", "labels": ["joy"]}, {"id": "1", "labels": ["sadness"]},
                   {"id": "2", "labels": ["joy", "anger"]}, {"id": "3", "labels": []}]
    scores = family.score(gold, predictions)
    assert whole(family.resampled(gold, predictions)) == pytest.approx(
        {key: scores[key] for key in ("macro_f1", "micro_f1", "subset_accuracy")})
    numbers = recipe(compose(REPO, ["task=stsb", "model=tiny"])).with_labels(["similarity"])
    gold = Dataset.from_list([{"id": str(i), "text": "a", "text_pair": "b", "label": v}
                              for i, v in enumerate([0.5, 2.0, 4.5, 3.0, 1.0])], features=numbers.features())
    predictions = [{"id": str(i), "value": v} for i, v in enumerate([0.7, 1.9, 4.0, 3.5, 1.2])]
    scores = numbers.score(gold, predictions)
    assert whole(numbers.resampled(gold, predictions)) == pytest.approx(
        {key: scores[key] for key in ("pearson", "spearman", "mse", "mae")})


def test_ner_resamples_sentences_and_scores_as_seqeval():
    family = recipe(compose(REPO, ["task=ner", "model=tiny"]))
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    family = family.with_labels(labels)
    index = {label: i for i, label in enumerate(labels)}
    sentences = [(["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "O"]),
                 (["O", "B-LOC", "I-LOC"], ["O", "B-LOC", "O"]),
                 (["B-PER", "O"], ["B-PER", "O"])]
    gold = Dataset.from_list([{"id": str(i), "tokens": ["w"] * len(g), "tags": [index[t] for t in g]}
                              for i, (g, _) in enumerate(sentences)], features=family.features())
    predictions = [{"id": str(i), "tags": p, "unpredicted_words": 0} for i, (_, p) in enumerate(sentences)]
    scores = family.score(gold, predictions)
    resampled = family.resampled(gold, predictions)
    assert resampled.unit == "sentences" and resampled.size == 3
    assert whole(resampled) == pytest.approx({key: scores[key] for key in ("f1", "precision", "recall", "accuracy")})


def test_qa_resamples_questions_and_scores_as_squad():
    family = recipe(compose(REPO, ["task=qa", "model=tiny"]))
    rows = [("q1", ["Paris"]), ("q2", ["the Louvre", "Louvre"]), ("q3", ["in 1990"])]
    gold = Dataset.from_list([{"id": q, "title": "t", "context": "c", "question": "?",
                               "answers": {"text": a, "answer_start": [0] * len(a)}} for q, a in rows],
                             features=family.features())
    predictions = [{"id": "q1", "answer": "Paris"}, {"id": "q2", "answer": "Louvre museum"}, {"id": "q3", "answer": ""}]
    scores = family.score(gold, predictions)
    resampled = family.resampled(gold, predictions)
    assert resampled.unit == "questions"
    assert whole(resampled) == pytest.approx({key: scores[key] for key in ("exact_match", "f1")})


def test_each_family_has_its_trivial_baseline():
    from tests.conftest import EMOTIONS

    single = recipe(compose(REPO, ["task=sarcasm", "model=tiny"])).with_labels(["a", "b"])
    train = Dataset.from_list([{"id": str(i), "text": "x", "label": g} for i, g in enumerate([1, 1, 0])],
                              features=single.features())
    name, predictions = single.baseline(train, train)
    assert name == "majority class (b)" and {p["label"] for p in predictions} == {"b"}
    multi = recipe(compose(REPO, ["task=goemotions", "model=tiny", f"task.labels=[{', '.join(EMOTIONS)}]"]))
    multi = multi.with_labels(EMOTIONS)
    sets = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]
    train = Dataset.from_list([{"id": str(i), "text": "x", "label": s} for i, s in enumerate(sets)],
                              features=multi.features())
    assert multi.baseline(train, train)[1][0]["labels"] == ["sadness", "anger"]
    numbers = recipe(compose(REPO, ["task=stsb", "model=tiny"])).with_labels(["similarity"])
    train = Dataset.from_list([{"id": str(i), "text": "a", "text_pair": "b", "label": v}
                               for i, v in enumerate([1.0, 2.0, 4.5])], features=numbers.features())
    assert numbers.baseline(train, train)[1][0]["value"] == pytest.approx(2.5)
    ner = recipe(compose(REPO, ["task=ner", "model=tiny"])).with_labels(["O", "B-PER", "I-PER"])
    train = Dataset.from_list([{"id": "0", "tokens": ["Ann", "Lee", "won"], "tags": [1, 2, 0]}],
                              features=ner.features())
    assert ner.baseline(train, train)[1][0]["tags"] == ["O", "O", "O"]
    qa = recipe(compose(REPO, ["task=qa", "model=tiny"]))
    train = Dataset.from_list([{"id": "q", "title": "t", "context": "It was written by Ann Lee in 1990.",
                                "question": "Who?", "answers": {"text": ["Ann Lee"], "answer_start": [18]}}],
                              features=qa.features())
    assert qa.baseline(train, train) == ("the context's first 2 word(s)", [{"id": "q", "answer": "It was"}])
    v2 = recipe(compose(REPO, ["task=qa", "model=tiny", "task.version_2_with_negative=true"]))
    assert v2.baseline(train, train) == ("always no answer", [{"id": "q", "answer": ""}])


def test_only_a_model_clearly_above_its_baseline_beats_it():
    from finetune.intervals import paired_difference

    gold = np.arange(200) % 2  # two balanced classes: the majority class scores 0.5
    baseline = Resampled("examples", 200, lambda draw: {"accuracy": (gold[draw] == 0).mean()})
    same = paired_difference(baseline, baseline, "accuracy", resamples=500, level=0.95, seed=0)
    assert same == {"difference": 0.0, "difference_ci_low": 0.0, "difference_ci_high": 0.0, "p_value": 1.0}
    good = (np.arange(200) % 10 != 0) == (gold == gold)  # right on 90% of the examples
    model = Resampled("examples", 200, lambda draw: {"accuracy": good[draw].mean()})
    better = paired_difference(model, baseline, "accuracy", resamples=500, level=0.95, seed=0)
    assert better["difference"] == pytest.approx(0.4) and better["difference_ci_low"] > 0.3
    assert better["p_value"] < 0.01
