"""The extractive QA family: windowing and labels, post-processing across windows, SQuAD v2.0
null answers, the SQuAD metric's normalisation, and one small end-to-end run of the stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from finetune.config import compose
from finetune.errors import FinetuneError
from finetune.metrics import reported
from finetune.models import load_tokenizer
from finetune.tasks import recipe
from finetune.tasks.question_answering import metrics as m
from finetune.tasks.question_answering.codec import NULL_INDEX
from tests.conftest import REPO, write_tiny_squad

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "golf", "hotel", "india", "kilo", "lima", "mike",
         "oscar", "papa", "romeo", "sierra", "tango", "victor", "whiskey", "yankee", "zulu"]
LONG_CONTEXT = " ".join(f"{w} {n}" for n, w in enumerate(WORDS * 2)) + " end."


def qa_family(*overrides: str):
    """The family with small windows, so that a short context already needs several."""
    cfg = compose(REPO, ["task=qa", "model=tiny", "data.max_length=32", "data.doc_stride=8",
                         "task.max_query_length=8", *overrides])
    return recipe(cfg), load_tokenizer(cfg.model)


def dataset(family, rows: list[dict]) -> Dataset:
    return Dataset.from_list([{"title": "t", **row} for row in rows], features=family.features())


def example(qid: str, context: str, answer: str | None, start: int | None = None,
            question: str = "what is it?") -> dict:
    if answer is None:
        return {"id": qid, "context": context, "question": question,
                "answers": {"text": [], "answer_start": []}}
    start = context.index(answer) if start is None else start
    assert context[start:start + len(answer)] == answer
    return {"id": qid, "context": context, "question": question,
            "answers": {"text": [answer], "answer_start": [start]}}


def labelled_text(feature: dict, context: str) -> str | None:
    """The context text a feature's start/end labels point at (None for the [CLS] label)."""
    start, end = feature["start_positions"], feature["end_positions"]
    if start == NULL_INDEX and end == NULL_INDEX:
        return None
    return context[feature["offset_mapping"][start][0]:feature["offset_mapping"][end][1]]


# -- tokenization ------------------------------------------------------------------------------
def test_answer_straddling_a_window_boundary_is_labelled_in_the_next_window():
    family, tokenizer = qa_family()
    features, _ = family.codec.tokenize(dataset(family, [example("q", LONG_CONTEXT, None)]), tokenizer)
    first = features[0]["offset_mapping"]
    boundary = max(end for _, end in first)  # last character of the context inside window 0
    last_start = max(start for start, _ in first)
    after = LONG_CONTEXT.index(" ", boundary + 1)  # end of the word following window 0
    answer = LONG_CONTEXT[last_start:after]
    assert last_start < boundary < after  # starts inside window 0, ends beyond it

    examples = dataset(family, [example("q", LONG_CONTEXT, answer, last_start)])
    features, stats = family.codec.tokenize(examples, tokenizer)
    assert len(features) > 2 and stats["answers_lost_to_truncation"] == 0
    labelled = [labelled_text(f, LONG_CONTEXT) for f in features]
    assert labelled[0] is None  # window 0 holds only part of the answer: labelled "no answer here"
    assert answer in labelled[1:]
    assert all(text in (None, answer) for text in labelled)
    for feature in features:  # offsets are masked to the context; bookkeeping columns are present
        ids = feature["input_ids"]
        assert feature["example_id"] == "q" and feature["length"] == len(ids) <= 32
        sep = ids.index(tokenizer.sep_token_id)
        assert all(o == [-1, -1] for o in feature["offset_mapping"][:sep + 1])
        assert feature["offset_mapping"][-1] == [-1, -1]


def test_answer_at_the_very_end_of_the_context():
    family, tokenizer = qa_family()
    answer = "end."
    features, stats = family.codec.tokenize(dataset(family, [example("q", LONG_CONTEXT, answer)]), tokenizer)
    assert LONG_CONTEXT.endswith(answer) and stats["answers_lost_to_truncation"] == 0
    last = features[len(features) - 1]
    assert labelled_text(last, LONG_CONTEXT) == answer
    assert last["end_positions"] == last["length"] - 2  # the token before the final [SEP]


def test_question_is_stripped_and_long_questions_are_cut():
    family, tokenizer = qa_family()
    rows = [example("a", "Paris is big.", "Paris", question="   where?  "),
            example("b", "Paris is big.", "Paris", question="where " * 20)]
    features, stats = family.codec.tokenize(dataset(family, rows), tokenizer)
    first = features[0]["input_ids"]
    assert first[:4] == [tokenizer.cls_token_id, *tokenizer("where?", add_special_tokens=False)["input_ids"],
                         tokenizer.sep_token_id]
    assert stats["questions_truncated"] == 1
    assert labelled_text(features[1], "Paris is big.") == "Paris"


def test_several_tokenize_processes_give_the_same_features_in_the_same_order():
    rows = [example(f"q{i}", LONG_CONTEXT, WORDS[i % len(WORDS)]) for i in range(40)]
    single, tokenizer = qa_family("data.num_proc=1")
    parallel, _ = qa_family("data.num_proc=2")
    one, stats_one = single.codec.tokenize(dataset(single, rows), tokenizer)
    two, stats_two = parallel.codec.tokenize(dataset(parallel, rows), tokenizer)
    assert len(one) > len(rows) and stats_one == stats_two
    assert one.to_list() == two.to_list()


def test_doc_stride_must_leave_room_for_context():
    family, tokenizer = qa_family("data.doc_stride=30")
    with pytest.raises(FinetuneError, match="data.doc_stride=30 must be below the context room"):
        family.codec.tokenize(dataset(family, [example("q", "Paris is big.", "Paris")]), tokenizer)


def test_collator_pads_model_inputs_and_drops_bookkeeping():
    family, tokenizer = qa_family()
    rows = [example("a", "Paris is big.", "Paris"), example("b", LONG_CONTEXT, "end.")]
    features, _ = family.codec.tokenize(dataset(family, rows), tokenizer)
    batch = family.collator(tokenizer, 8)([features[0], features[len(features) - 1]])
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] >= features[0]["length"]
    assert batch["start_positions"].tolist()[0] == features[0]["start_positions"]


# -- post-processing ---------------------------------------------------------------------------
def padded_logits(features, fill: float = 0.0, extra: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Logits as the Trainer returns them: each row its feature's length, then -100 padding."""
    width = max(features["length"]) + extra
    starts = np.full((len(features), width), -100.0)
    ends = np.full((len(features), width), -100.0)
    for i, length in enumerate(features["length"]):
        starts[i, :length] = fill
        ends[i, :length] = fill
    return starts, ends


def token_of(feature: dict, char: int, side: int) -> int:
    """The token whose offset side (0 = start, 1 = end) equals `char`."""
    return next(i for i, o in enumerate(feature["offset_mapping"]) if o != [-1, -1] and o[side] == char)


def test_decode_picks_the_best_span_across_windows():
    family, tokenizer = qa_family()
    examples = dataset(family, [example("q", LONG_CONTEXT, "lima 9")])
    features, _ = family.codec.tokenize(examples, tokenizer)
    assert len(features) >= 3
    starts, ends = padded_logits(features)
    starts[:, :3] = ends[:, :3] = 50.0  # [CLS] and question tokens: never a span
    weak, strong = features[0], features[len(features) - 1]
    w_text, s_text = "alpha 0", WORDS[-1] + " 39"
    i = token_of(weak, LONG_CONTEXT.index(w_text), 0)
    starts[0, i], ends[0, i + 1] = 3.0, 3.0
    j = token_of(strong, LONG_CONTEXT.index(s_text), 0)
    starts[len(features) - 1, j], ends[len(features) - 1, j + 1] = 5.0, 5.0
    short = int(np.argmin(features["length"]))  # padding right after a feature must be ignored
    starts[short, features[short]["length"]:] = 99.0
    [prediction] = family.codec.decode(examples.remove_columns("answers"), features, (starts, ends))
    assert prediction["answer"] == s_text
    scores = [c["score"] for c in prediction["nbest"]]
    assert scores == sorted(scores, reverse=True) and len(scores) <= 20
    assert prediction["nbest"][0]["text"] == s_text and prediction["nbest"][1]["text"] == w_text
    assert prediction["nbest"][0]["start"] == LONG_CONTEXT.index(s_text)
    assert abs(sum(c["probability"] for c in prediction["nbest"]) - 1) < 1e-3


def test_decode_respects_max_answer_length():
    family, tokenizer = qa_family("task.max_answer_length=2")
    context = "one two three four five"
    examples = dataset(family, [example("q", context, "two")])
    features, _ = family.codec.tokenize(examples, tokenizer)
    starts, ends = padded_logits(features)
    f = features[0]
    starts[0, token_of(f, 0, 0)] = 9.0  # "one two three" (3 tokens) would score 18
    ends[0, token_of(f, context.index("three") + 5, 1)] = 9.0
    ends[0, token_of(f, context.index("two") + 3, 1)] = 4.0  # "one two": 13, within 2 tokens
    [prediction] = family.codec.decode(examples.remove_columns("answers"), features, (starts, ends))
    assert prediction["answer"] == "one two"


def test_v2_null_answer_and_threshold():
    context = "Paris is the capital of France."
    rows = [example("has", context, "Paris"), example("none", context, None, question="capital of mars?")]
    family, tokenizer = qa_family("task.version_2_with_negative=true")
    examples = dataset(family, rows)
    features, stats = family.codec.tokenize(examples, tokenizer)
    assert [(f["start_positions"], f["end_positions"]) for f in features][1] == (NULL_INDEX, NULL_INDEX)
    assert stats["answers"] == 1
    starts, ends = padded_logits(features)
    for row, null, span in ((0, 1.0, 5.0), (1, 5.0, 2.0)):  # null score 2 vs 10; 10 vs 4
        starts[row, NULL_INDEX] = ends[row, NULL_INDEX] = null
        k = token_of(features[row], 0, 0)
        starts[row, k] = ends[row, k] = span
    predictions = family.codec.decode(examples.remove_columns("answers"), features, (starts, ends))
    assert [p["answer"] for p in predictions] == ["Paris", ""]
    assert [p["null_score_diff"] for p in predictions] == pytest.approx([-8.0, 6.0])
    assert predictions[1]["nbest"][0]["text"] == "" and predictions[1]["nbest"][0]["start"] is None
    result = family.score(examples, predictions)
    assert (result["exact_match"], result["f1"], result["n_eval"]) == (100.0, 100.0, 2)
    assert (result["HasAns_total"], result["NoAns_total"], result["NoAns_f1"]) == (1, 1, 100.0)
    fitted = family.tune(examples, features, (starts, ends))["null_score_diff_threshold"]
    assert -8.0 <= fitted < 6.0, "fitted where both questions are right"

    lenient, _ = qa_family("task.version_2_with_negative=true", "task.null_score_diff_threshold=7.0")
    predictions = lenient.codec.decode(examples.remove_columns("answers"), features, (starts, ends))
    assert [p["answer"] for p in predictions] == ["Paris", "Paris"]
    result = lenient.score(examples, predictions)
    assert (result["f1"], result["NoAns_f1"], result["HasAns_f1"]) == (50.0, 0.0, 100.0)


def test_write_predictions_files(tmp_path):
    family, _ = qa_family()
    predictions = [{"id": "a", "answer": "Paris", "start": 0, "end": 5, "score": 0.9,
                    "nbest": [{"text": "Paris", "score": 3.0, "probability": 0.9, "start": 0, "end": 5}]}]
    examples = dataset(family, [example("a", "Paris is big.", "Paris")])
    written = family.write_predictions(examples, predictions, tmp_path)
    assert [p.name for p in written] == ["predictions.json", "nbest_predictions.json", "gold_answers.json"]
    assert json.loads((tmp_path / "predictions.json").read_text()) == {"a": "Paris"}
    assert json.loads((tmp_path / "nbest_predictions.json").read_text())["a"][0]["end"] == 5


# -- the SQuAD metric --------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "normalised"), [
    ("The Quick, Brown  Fox!", "quick brown fox"),
    ("an apple a day", "apple day"),
    ("Theatre of the Absurd", "theatre of absurd"),     # articles only as whole words
    ("  A.D. 1066\n", "ad 1066"),
    ("¿Qué?", "¿qué"),                                  # only ASCII punctuation, like the official script
    ("Anne's café", "annes café"),
    ("", ""),
])
def test_normalisation(text, normalised):
    assert m.normalize_answer(text) == normalised


def test_exact_match_and_f1_on_hand_made_cases():
    assert m.squad_f1("the cat sat", "a cat sat on the mat") == pytest.approx(2 / 3)  # P 1, R 1/2
    assert m.squad_f1("cat cat", "cat") == pytest.approx(2 / 3)  # repeated tokens count once each
    assert m.squad_f1("dog", "cat") == 0.0
    assert m.squad_exact("The Denver Broncos.", "denver broncos") == 1.0
    assert m.squad_scores("Broncos", ["Denver Broncos", "Carolina Panthers"]) == (0.0, pytest.approx(2 / 3))
    assert m.squad_scores("Denver Broncos", ["Carolina Panthers", "the Denver Broncos"]) == (1.0, 1.0)
    result = m.squad_metrics({"a": "Denver Broncos", "b": "Broncos"},
                             {"a": ["Denver Broncos"], "b": ["Denver Broncos"], "c": ["x"]})
    assert result == {"exact_match": pytest.approx(100 / 3), "f1": pytest.approx((100 + 200 / 3) / 3),
                      "n_eval": 3}  # "c" has no prediction: scored as the empty answer


def test_v2_metric_splits_and_empty_gold():
    gold = {"has": ["Paris"], "none": [], "article": ["the"]}  # "the" normalises to nothing: unanswerable
    result = m.squad_metrics({"has": "Paris", "none": "", "article": "the"}, gold, version_2=True)
    assert (result["exact_match"], result["HasAns_total"], result["NoAns_total"]) == (100.0, 1, 2)
    result = m.squad_metrics({"has": "", "none": "Paris", "article": ""}, gold, version_2=True)
    assert (result["HasAns_f1"], result["NoAns_f1"], result["f1"]) == (0.0, 50.0, pytest.approx(100 / 3))


# -- end to end: download -> tokenize -> train -> evaluate with the real stage functions --------
@pytest.mark.slow
def test_end_to_end_stages_write_metrics_and_predictions(tmp_path):
    from finetune.pipeline.download import download
    from finetune.pipeline.evaluate import evaluate
    from finetune.pipeline.tokenize import tokenize
    from finetune.pipeline.train import train

    write_tiny_squad(tmp_path / "train.json", 10, "tr")
    valid_ids = write_tiny_squad(tmp_path / "dev.json", 3, "dv")
    cfg = compose(REPO, ["task=qa", "model=tiny", "tracking=none",
                         f"data.files.train={tmp_path / 'train.json'}",
                         f"data.files.test={tmp_path / 'dev.json'}",
                         "data.max_train_samples=null", "data.max_eval_samples=null",
                         "train.num_train_epochs=1", "train.per_device_train_batch_size=8",
                         "train.disable_tqdm=true"], workdir=tmp_path)
    assert str(cfg.paths.metrics).startswith(str(tmp_path))
    assert download(cfg)["rows"] == {"train": 27, "validation": 3, "test": 9}, "a passage's questions stay together"
    stats = tokenize(cfg)
    assert stats["test"]["examples"] == 9 and stats["train"]["answers_lost_to_truncation"] == 0
    summary = train(cfg)
    assert summary["primary_metric"] == "f1" and summary["train_examples"] == stats["train"]["features"]
    metrics = evaluate(cfg)

    saved = reported(json.loads(Path(cfg.paths.metrics).read_text()))
    assert {"exact_match", "f1", "n_eval"} <= set(saved) and saved["n_eval"] == 9
    assert 0.0 <= saved["exact_match"] <= saved["f1"] <= 100.0 and saved == reported(json.loads(json.dumps(metrics)))
    out = Path(cfg.paths.predictions)
    predictions = json.loads((out / "predictions.json").read_text())
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    assert sorted(predictions) == sorted(valid_ids) == sorted(nbest)
    contexts = json.loads((tmp_path / "dev.json").read_text())["data"][0]["paragraphs"]
    for qid, text in predictions.items():
        context = contexts[int(qid.split("-")[1])]["context"]
        assert text in context and nbest[qid][0]["text"] == text
        assert context[nbest[qid][0]["start"]:nbest[qid][0]["end"]] == text
    assert (Path(cfg.paths.plots) / "eval" / "f1_breakdown.png").stat().st_size > 0
