"""Reading SQuAD-shaped files: nested v1.1/v2.0 json (plain and gzip), flat Hub-layout rows,
answers checked against their context, malformed files named by question id."""

from __future__ import annotations

import csv
import gzip
import json
import logging
from pathlib import Path

import pytest

from finetune.errors import DataError
from finetune.tasks.question_answering.squad import AnswerReport, nearest_occurrence, read_squad
from tests.conftest import needs_shared

CONTEXT = "Paris is the capital of France. Paris has the Louvre. Lyon is in France too."


def squad_file(path: Path, qas: list[dict], context: str | None = CONTEXT, version: str = "1.1") -> Path:
    """A one-article, one-paragraph SQuAD json file (gzip when the name ends in .gz)."""
    paragraph = {"qas": qas} if context is None else {"context": context, "qas": qas}
    text = json.dumps({"data": [{"title": "Paris", "paragraphs": [paragraph]}], "version": version})
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def qa(qid: str, question: str, *answers: tuple[str, int], **extra) -> dict:
    return {"id": qid, "question": question,
            "answers": [{"text": t, "answer_start": s} for t, s in answers], **extra}


def test_reads_nested_v1_plain_and_gzip(tmp_path):
    qas = [qa("q1", "What is the capital of France?", ("Paris", 0)),
           qa("q2", "Which museum?", ("the Louvre", 42), ("Louvre", 46))]
    for name in ("dev.json", "dev.json.gz"):
        examples = read_squad(squad_file(tmp_path / name, qas), "squad")
        assert [e["id"] for e in examples] == ["q1", "q2"]
        assert examples[1]["answers"] == {"text": ["the Louvre", "Louvre"], "answer_start": [42, 46]}
        assert examples[0]["title"] == "Paris" and examples[0]["context"] == CONTEXT


def test_reads_v2_unanswerable_questions(tmp_path):
    qas = [qa("a", "Capital?", ("Paris", 0), is_impossible=False),
           {"id": "b", "question": "What is the capital of Mars?", "answers": [], "is_impossible": True,
            "plausible_answers": [{"text": "Paris", "answer_start": 0}]}]
    examples = read_squad(squad_file(tmp_path / "v2.json", qas, version="v2.0"), "squad")
    assert examples[1]["answers"] == {"text": [], "answer_start": []}
    assert examples[0]["answers"]["text"] == ["Paris"]


def test_impossible_question_with_answers_is_an_error(tmp_path):
    path = squad_file(tmp_path / "v2.json", [qa("odd", "Capital?", ("Paris", 0), is_impossible=True)])
    with pytest.raises(DataError, match=r"question id 'odd'.*is_impossible is true but the question has"):
        read_squad(path, "squad")


def test_reads_flat_hub_rows_jsonl_and_csv(tmp_path):
    rows = [{"id": "h1", "title": "Paris", "context": CONTEXT, "question": "Capital?",
             "answers": {"text": ["Paris"], "answer_start": [0]}},
            {"id": "h2", "title": "Paris", "context": CONTEXT, "question": "Where is Lyon?",
             "answers": {"text": ["France"], "answer_start": [65]}}]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    csv_path = tmp_path / "rows.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "context", "question", "answers"])
        for r in rows:  # the answers cell once as JSON, once as the Python literal pandas writes
            cell = json.dumps(r["answers"]) if r["id"] == "h1" else repr(r["answers"])
            writer.writerow([r["id"], r["title"], r["context"], r["question"], cell])
    for path, fmt in ((jsonl, "squad"), (jsonl, "jsonl"), (csv_path, "squad"), (csv_path, "csv")):
        examples = read_squad(path, fmt)
        assert [e["answers"] for e in examples] == [r["answers"] for r in rows], (path, fmt)


def test_flat_rows_as_a_json_array(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"id": "x", "context": CONTEXT, "question": "Capital?",
                                 "answers": {"text": ["Paris"], "answer_start": [0]}}]), encoding="utf-8")
    assert read_squad(path, "json")[0]["answers"]["text"] == ["Paris"]


def test_missing_context_names_the_question_id(tmp_path):
    path = squad_file(tmp_path / "bad.json", [qa("no-ctx-1", "Capital?", ("Paris", 0))], context=None)
    with pytest.raises(DataError) as error:
        read_squad(path, "squad")
    message = str(error.value)
    assert str(path) in message and "question id 'no-ctx-1'" in message and "missing 'context'" in message


def test_answers_not_a_list_names_the_question_id(tmp_path):
    bad = {"id": "not-a-list", "question": "Capital?", "answers": "Paris"}
    path = squad_file(tmp_path / "bad.json", [qa("ok", "Capital?", ("Paris", 0)), bad])
    with pytest.raises(DataError, match=r"bad.json, question id 'not-a-list' .*'answers' must be a list"):
        read_squad(path, "squad")


@pytest.mark.parametrize("start", ["0", 1.5, None, True])
def test_bad_answer_start_type_names_the_question_id(tmp_path, start):
    bad = {"id": "bad-start", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": start}]}
    path = squad_file(tmp_path / "bad.json", [bad])
    with pytest.raises(DataError, match=r"question id 'bad-start' .*'answer_start' must be an integer"):
        read_squad(path, "squad")


def test_flat_row_without_context_names_line_and_id(tmp_path):
    path = tmp_path / "rows.jsonl"
    row = {"id": "r9", "question": "Q?", "answers": {"text": [], "answer_start": []}}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"rows.jsonl, line 1, question id 'r9': missing 'context'"):
        read_squad(path, "jsonl")


def test_duplicate_ids_are_rejected(tmp_path):
    path = squad_file(tmp_path / "dup.json", [qa("same", "A?", ("Paris", 0)), qa("same", "B?", ("Lyon", 54))])
    with pytest.raises(DataError, match="duplicate question id 'same'"):
        read_squad(path, "squad")


# -- answers whose answer_start does not index their text -------------------------------------
# "Paris" occurs at 0 and 32; start 30 is wrong (nearest occurrence: 32); "Berlin" never occurs.
WRONG = [qa("good", "Capital?", ("Paris", 0)), qa("shifted", "What has the Louvre?", ("Paris", 30)),
         qa("absent", "Capital of Germany?", ("Berlin", 5)),
         qa("half", "Which museum?", ("Louvre", 46), ("Louvre", 3))]


def test_bad_answer_fix_moves_to_nearest_occurrence_and_reports_ids(tmp_path, caplog):
    report = AnswerReport()
    with caplog.at_level(logging.WARNING, logger="finetune"):
        examples = read_squad(squad_file(tmp_path / "w.json", WRONG), "squad", on_bad_answer="fix",
                              report=report)
    by_id = {e["id"]: e for e in examples}
    assert by_id["shifted"]["answers"]["answer_start"] == [32]
    assert "absent" not in by_id  # its only answer cannot be found: dropped, never trained as "no answer"
    assert by_id["half"]["answers"] == {"text": ["Louvre", "Louvre"], "answer_start": [46, 46]}
    assert (report.bad, report.fixed, report.dropped_answers, report.dropped_questions) == (3, 2, 1, 1)
    assert report.ids == ["shifted", "absent", "half"]
    assert "3 answer(s) whose answer_start does not index their text" in caplog.text
    assert "shifted, absent, half" in caplog.text


def test_bad_answer_drop_removes_answers_and_emptied_questions(tmp_path):
    report = AnswerReport()
    examples = read_squad(squad_file(tmp_path / "w.json", WRONG), "squad", on_bad_answer="drop",
                          report=report)
    by_id = {e["id"]: e for e in examples}
    assert sorted(by_id) == ["good", "half"]
    assert by_id["half"]["answers"] == {"text": ["Louvre"], "answer_start": [46]}
    assert (report.bad, report.fixed, report.dropped_answers, report.dropped_questions) == (3, 0, 3, 2)


def test_bad_answer_fail_names_the_question_id(tmp_path):
    expected = r"question id 'shifted' .*answer_start 30 does not index the answer 'Paris'"
    with pytest.raises(DataError, match=expected):
        read_squad(squad_file(tmp_path / "w.json", WRONG), "squad", on_bad_answer="fail")


def test_nearest_occurrence_prefers_the_closest_then_the_earlier():
    text = "ab ab ab"
    assert nearest_occurrence(text, "ab", 4) == 3
    assert nearest_occurrence(text, "ab", 2) == 3  # 0 is 2 away, 3 is 1 away
    assert nearest_occurrence("abxxab", "ab", 2) == 0  # a tie goes to the earlier occurrence
    assert nearest_occurrence(text, "zz", 0) is None


def test_real_dev_file_reads_cleanly():
    path = needs_shared("squad", "dev-v1.1.json")
    report = AnswerReport()
    examples = read_squad(path, "squad", on_bad_answer="fail", report=report)
    assert len(examples) == 10570 and report.bad == 0
    assert sum(len(e["answers"]["text"]) for e in examples) == 34726


def test_from_hub_maps_the_hub_columns_and_checks_answers(repo):
    from datasets import Dataset

    from finetune.config import compose
    from finetune.tasks import recipe

    family = recipe(compose(repo, ["task=qa", "model=tiny", "data.on_bad_answer=drop"]))
    hub = Dataset.from_dict({"id": ["h1", "h2"], "title": ["Paris", "Paris"], "context": [CONTEXT, CONTEXT],
                             "question": ["Capital?", "Museum?"],
                             "answers": [{"text": ["Paris"], "answer_start": [0]},
                                         {"text": ["Louvre"], "answer_start": [3]}]})
    examples = family.from_hub(hub, "train")
    assert [e["id"] for e in examples] == ["h1"]  # h2's only answer is misplaced: dropped (policy drop)
    assert examples[0]["answers"] == {"text": ["Paris"], "answer_start": [0]}
    assert examples[0]["_where"].startswith("hub:train, row 1")
