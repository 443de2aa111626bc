"""Readers for SQuAD-shaped question answering data.

Two layouts, both giving canonical examples `{id, title, context, question, answers: {text: [...],
answer_start: [...]}}` (no answers = unanswerable, SQuAD v2.0):

- SQuAD json (`data -> paragraphs -> qas -> answers`), v1.1 and v2.0 (`is_impossible`), plain or
  `.json.gz`, as published by the SQuAD authors;
- flat rows (JSON array, JSON Lines, CSV/TSV, parquet) with `id, title, context, question,
  answers` in the Hub's layout (`answers = {"text": [...], "answer_start": [...]}`; in CSV the
  cell holds that dict as JSON or as a Python literal).

Every answer is checked against its context: an `answer_start` that does not index its text is
reported with the question id and then fixed, dropped or made fatal (`data.on_bad_answer`), so
a wrong character offset never turns silently into a wrong training label.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.data.readers import TOO_DEEP, detect_format, load_json, open_text, read_records
from finetune.errors import DataError, FinetuneError

log = logging.getLogger("finetune")

ON_BAD_ANSWER = ("fix", "drop", "fail")
#: how many offending question ids a report names before it only counts
REPORT_IDS = 20
_NESTED_HEAD = re.compile(r'^\s*\{\s*"(data|version)"\s*:')


@dataclass
class AnswerReport:
    """What the answer check found in one file: counts plus the ids of the questions concerned."""

    bad: int = 0               # answers whose answer_start does not index their text
    fixed: int = 0             # ... moved to the nearest occurrence of the text (on_bad_answer=fix)
    dropped_answers: int = 0   # ... removed (drop, or fix when the text does not occur at all)
    dropped_questions: int = 0  # questions left without any answer by those removals
    ids: list[str] = field(default_factory=list)

    def note(self, qid: str) -> None:
        if len(self.ids) < REPORT_IDS and qid not in self.ids:
            self.ids.append(qid)

    def summary(self, path: str | Path, policy: str) -> str:
        named = ", ".join(self.ids) + (", ..." if self.bad > len(self.ids) else "")
        return (f"{path}: {self.bad} answer(s) whose answer_start does not index their text "
                f"(data.on_bad_answer={policy}): {self.fixed} moved to the nearest occurrence, "
                f"{self.dropped_answers} dropped, {self.dropped_questions} question(s) dropped; ids: {named}")


def read_squad(path: str | Path, fmt: str | None = None, *, on_bad_answer: str = "fix",
               report: AnswerReport | None = None, encoding: str | None = None) -> list[dict[str, Any]]:
    """Canonical examples from a SQuAD-shaped file, every answer checked against its context.

    `fmt` is "squad" (layout detected from the content and extension) or a table format.
    """
    if on_bad_answer not in ON_BAD_ANSWER:
        raise FinetuneError(f"data.on_bad_answer must be one of {', '.join(ON_BAD_ANSWER)}, "
                            f"got '{on_bad_answer}'")
    path = Path(path)
    physical = detect_format(path) if fmt in (None, "squad") else fmt
    report = report if report is not None else AnswerReport()
    nested = physical == "json" and _looks_nested(path, encoding)
    rows = _nested_rows(path, encoding) if nested else _flat_rows(path, physical, encoding)
    examples: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for where, qid, raw in rows:
        if qid in seen:
            raise DataError(path, f"duplicate question id '{qid}' (first at {seen[qid]})", where=where)
        seen[qid] = where
        example = make_example(path, where, qid, raw, on_bad_answer, report)
        if example is not None:
            examples.append(example)
    if report.bad:
        log.warning(report.summary(path, on_bad_answer))
    return examples


def make_example(path: str | Path, where: str, qid: str, raw: dict[str, Any], on_bad_answer: str,
                 report: AnswerReport) -> dict[str, Any] | None:
    """One canonical example from raw fields (None when every answer had to be dropped)."""
    context = raw.get("context")
    if not isinstance(context, str) or not context.strip():
        problem = "missing 'context'" if context is None else "'context' is not a non-empty string"
        raise DataError(path, problem, where=where)
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(path, "missing or empty 'question'", where=where)
    title = raw.get("title")
    texts, starts = _answers(path, where, raw.get("answers"), raw.get("is_impossible"))
    kept_texts, kept_starts = [], []
    for text, start in zip(texts, starts, strict=True):
        if context[start:start + len(text)] == text:
            kept_texts.append(text)
            kept_starts.append(start)
            continue
        report.bad += 1
        report.note(qid)
        found = f"{context[start:start + len(text)]!r}" if 0 <= start < len(context) else "out of range"
        problem = (f"answer_start {start} does not index the answer {text!r} in the context "
                   f"(found {found})")
        if on_bad_answer == "fail":
            raise DataError(path, problem + "; set data.on_bad_answer=fix or drop to repair or skip it",
                            where=where)
        nearest = nearest_occurrence(context, text, start) if on_bad_answer == "fix" else None
        if nearest is None:
            report.dropped_answers += 1
            log.debug("%s, %s: %s: dropped", path, where, problem)
            continue
        report.fixed += 1
        log.debug("%s, %s: %s: moved to %d", path, where, problem, nearest)
        kept_texts.append(text)
        kept_starts.append(nearest)
    if texts and not kept_texts:  # an answerable question must not become "unanswerable"
        report.dropped_questions += 1
        return None
    return {"id": qid, "title": "" if title is None else str(title), "context": context,
            "question": question, "answers": {"text": kept_texts, "answer_start": kept_starts},
            "_where": f"{path}, {where}"}


def nearest_occurrence(context: str, text: str, start: int) -> int | None:
    """The start of the occurrence of `text` in `context` closest to `start` (earlier on ties)."""
    best, position = None, context.find(text)
    while position != -1:
        if best is None or abs(position - start) < abs(best - start):
            best = position
        position = context.find(text, position + 1)
    return best


def _answers(path: str | Path, where: str, answers: Any, is_impossible: Any) -> tuple[list[str], list[int]]:
    """(texts, starts) from the nested list-of-dicts or the Hub's dict-of-lists layout."""
    if answers is None:
        raise DataError(path, "missing 'answers' (use an empty list for an unanswerable question)",
                        where=where)
    if isinstance(answers, dict):
        texts, starts = answers.get("text"), answers.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise DataError(path, "'answers' must be {text: [...], answer_start: [...]} with lists of "
                            "equal length", where=where)
    elif isinstance(answers, list):
        texts, starts = [], []
        for number, answer in enumerate(answers, start=1):
            if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
                raise DataError(path, f"answer {number} must be an object with 'text' and 'answer_start'",
                                where=where)
            texts.append(answer["text"])
            starts.append(answer["answer_start"])
    else:
        raise DataError(path, f"'answers' must be a list, found {type(answers).__name__}", where=where)
    for number, (text, start) in enumerate(zip(texts, starts, strict=True), start=1):
        if not isinstance(text, str) or not text.strip():
            raise DataError(path, f"answer {number}: 'text' must be a non-empty string, found {text!r}",
                            where=where)
        if isinstance(start, bool) or not isinstance(start, int):
            raise DataError(path, f"answer {number}: 'answer_start' must be an integer character offset, "
                            f"found {start!r} ({type(start).__name__})", where=where)
    if is_impossible is not None:
        if not isinstance(is_impossible, bool):
            raise DataError(path, f"'is_impossible' must be true or false, found {is_impossible!r}",
                            where=where)
        if is_impossible and texts:
            raise DataError(path, "is_impossible is true but the question has answers", where=where)
        if not is_impossible and not texts:
            raise DataError(path, "is_impossible is false but the question has no answers", where=where)
    return list(texts), list(starts)


def _parse_cell(path: str | Path, where: str, cell: str) -> Any:
    try:
        return json.loads(cell)
    except json.JSONDecodeError:
        pass
    except RecursionError:
        raise DataError(path, TOO_DEEP, where=where) from None
    try:
        return ast.literal_eval(cell)
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        raise DataError(path, "'answers' is neither JSON nor a Python literal", where=where) from None


def _looks_nested(path: Path, encoding: str | None) -> bool:
    """A SQuAD json object (`{"data": ...}` / `{"version": ...}`) rather than flat rows."""
    with open_text(path, encoding) as handle:
        return bool(_NESTED_HEAD.match(handle.read(4096)))


def _nested_rows(path: Path, encoding: str | None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, question id, raw fields) for every question of a SQuAD json file."""
    document = load_json(path, encoding)
    articles = document.get("data") if isinstance(document, dict) else None
    if not isinstance(articles, list):
        raise DataError(path, "a SQuAD file needs a top-level 'data' list of articles")
    for a, article in enumerate(articles, start=1):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataError(path, "missing 'paragraphs' list", where=f"article {a}")
        for p, paragraph in enumerate(article["paragraphs"], start=1):
            place = f"article {a}, paragraph {p}"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise DataError(path, "missing 'qas' list", where=place)
            for q, qa in enumerate(paragraph["qas"], start=1):
                if not isinstance(qa, dict):
                    raise DataError(path, f"question {q} is not an object", where=place)
                qid = qa.get("id")
                if qid is None or str(qid) == "":
                    raise DataError(path, "question without an 'id'", where=f"{place}, question {q}")
                qid = str(qid)
                raw = {"title": article.get("title"), "context": paragraph.get("context"),
                       "question": qa.get("question"), "answers": qa.get("answers"),
                       "is_impossible": qa.get("is_impossible")}
                yield f"question id '{qid}' ({place})", qid, raw


def _flat_rows(path: Path, fmt: str, encoding: str | None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, question id, raw fields) for every row of a table file in the Hub's layout."""
    for number, (where, row) in enumerate(read_records(path, fmt, encoding=encoding), start=1):
        qid = row.get("id")
        qid = str(number) if qid is None or str(qid) == "" else str(qid)
        place = f"{where}, question id '{qid}'"
        if "context" not in row:
            raise DataError(path, f"missing 'context' (found columns: {', '.join(map(str, row))})",
                            where=place)
        if fmt in ("csv", "tsv") and isinstance(row.get("answers"), str):
            # a CSV cell holds the answers dict as JSON, or as the Python literal pandas writes
            row = {**row, "answers": _parse_cell(path, place, row["answers"])}
        yield place, qid, row
