"""Encoding and decoding of extractive question answering: the answer is a span of the context.

A long context is cut into overlapping windows (`data.max_length` tokens, `data.doc_stride`
tokens shared by neighbouring windows), so one example gives one or more features. Every
feature keeps its `example_id` and its token offsets masked to the context, so the same saved
features serve training (start/end labels), validation during training and evaluation; the
spans of all windows of a question compete in post-processing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from typing import Any

import numpy as np

from finetune.checks import boolean, integer, number
from finetune.errors import FinetuneError
from finetune.tasks import interface
from finetune.tasks.interface import Codec, Prediction, column_total, map_batches, setting

log = logging.getLogger("finetune")

#: feature columns the model never sees (the Trainer drops them; the collator does too)
BOOKKEEPING = ("example_id", "offset_mapping", "length")
#: the [CLS] position (first token with question-first inputs): labels and scores "no answer"
NULL_INDEX = 0
NO_OFFSET = [-1, -1]  # offset of a token outside the context (question, special tokens, padding)


@dataclasses.dataclass(frozen=True)
class Settings(interface.Settings):
    doc_stride: int = setting("data.doc_stride", integer(0))
    max_query_length: int = setting("task.max_query_length", integer(1))
    n_best_size: int = setting("task.n_best_size", integer(1))
    max_answer_length: int = setting("task.max_answer_length", integer(1))
    version_2_with_negative: bool = setting("task.version_2_with_negative", boolean())
    null_score_diff_threshold: float = setting("task.null_score_diff_threshold", number())


class SpanCodec(Codec):
    family = "question_answering"
    auto_model = "AutoModelForQuestionAnswering"
    pipeline_tag = "question-answering"
    peft_task_type = "QUESTION_ANS"
    outputs = ("start_logits", "end_logits")
    token_outputs = True
    Settings = Settings
    settings: Settings

    @property
    def input_fields(self) -> tuple[str, ...]:
        return ("question", "context")

    @property
    def version_2(self) -> bool:
        return bool(self.settings.version_2_with_negative)

    def tokenize(self, examples: Any, tokenizer: Any, num_proc: int | str = 1) -> tuple[Any, dict[str, Any]]:
        settings = self.settings
        max_length, stride, max_query = settings.max_length, settings.doc_stride, settings.max_query_length
        gold = "answers" in examples.column_names
        if not getattr(tokenizer, "is_fast", False):
            raise FinetuneError("question answering needs a fast tokenizer (offset mapping); "
                                f"{type(tokenizer).__name__} is not one")
        room = max_length - max_query - tokenizer.num_special_tokens_to_add(pair=True)
        if not 0 <= stride < room:
            raise FinetuneError(f"data.doc_stride={stride} must be below the context room of a window "
                                f"(data.max_length={max_length} - task.max_query_length={max_query} "
                                f"- special tokens = {room})")

        def encode(batch: dict[str, list]) -> dict[str, list]:
            questions, cut = _limit_questions([q.strip() for q in batch["question"]], tokenizer, max_query)
            encoded = tokenizer(questions, batch["context"], truncation="only_second", max_length=max_length,
                                stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
            owners = encoded.pop("overflow_to_sample_mapping")
            out = {key: [] for key in ("start_positions", "end_positions", "example_id", "offset_mapping",
                                       "length", "_has_answer", "_in_window", "_question_cut")}
            for i, offsets in enumerate(encoded["offset_mapping"]):
                owner = owners[i]
                sequence_ids = encoded.sequence_ids(i)
                answers = batch["answers"][owner] if gold else {"text": []}
                start, end = NULL_INDEX, NULL_INDEX
                if answers["text"]:
                    first = answers["answer_start"][0]
                    span = answer_tokens(offsets, sequence_ids, first, first + len(answers["text"][0]))
                    if span is not None:
                        start, end = span
                out["start_positions"].append(start)
                out["end_positions"].append(end)
                out["example_id"].append(batch["id"][owner])
                out["offset_mapping"].append([list(o) if s == 1 else NO_OFFSET
                                              for o, s in zip(offsets, sequence_ids, strict=True)])
                out["length"].append(len(encoded["input_ids"][i]))
                out["_has_answer"].append(bool(answers["text"]))
                out["_in_window"].append(start != NULL_INDEX)
                out["_question_cut"].append(owner in cut)
            if not gold:
                del out["start_positions"], out["end_positions"]
            return {**encoded, **out}

        features = map_batches(examples, encode, examples.column_names, num_proc)
        answered, found, cut = set(), set(), set()
        for ident, has, inside, question_cut in zip(features["example_id"], features["_has_answer"],
                                                     features["_in_window"], features["_question_cut"],
                                                     strict=True):
            if has:
                answered.add(ident)
            if inside:
                found.add(ident)
            if question_cut:
                cut.add(ident)
        features = features.remove_columns(["_has_answer", "_in_window", "_question_cut"])
        lost = len(answered - found)
        if lost:
            log.warning("%d of %d answers lie in no window of data.max_length=%d tokens "
                        "(they train as 'no answer')", lost, len(answered), max_length)
        stats = {"examples": len(examples), "features": len(features), "answers": len(answered),
                 "answers_lost_to_truncation": lost, "truncated": lost, "questions_truncated": len(cut),
                 "multi_window_examples": _multi_window(features["example_id"]),
                 "tokens": column_total(features, "length")}
        return features, stats

    def decode(self, examples: Any, features: Any, outputs: Any) -> list[Prediction]:
        """The best span of each question over all its windows: the answer text, its character
        offsets in the context and its probability among the n-best; "" for no answer (SQuAD v2.0
        settings, when the null score beats the best span by more than the threshold)."""
        start_logits, end_logits = _start_end(outputs)
        if len(start_logits) != len(features):
            raise FinetuneError(f"{len(start_logits)} model outputs for {len(features)} features")
        settings, version_2 = self.settings, self.version_2
        n_best = settings.n_best_size
        by_example: dict[str, list[int]] = defaultdict(list)
        for index, ident in enumerate(_column(features, "example_id")):
            by_example[ident].append(index)
        offsets, bounds = offset_table(features)
        predictions = []
        for ident, context in zip(_column(examples, "id"), _column(examples, "context"), strict=True):
            candidates, null_score = [], None
            for index in by_example.get(ident, []):
                spans = offsets[bounds[index]:bounds[index + 1]]
                # batches are padded: keep this feature's own tokens
                starts = np.asarray(start_logits[index][:len(spans)], dtype=np.float64)
                ends = np.asarray(end_logits[index][:len(spans)], dtype=np.float64)
                score = float(starts[NULL_INDEX] + ends[NULL_INDEX])  # "no answer in this window"
                null_score = score if null_score is None else min(null_score, score)
                candidates.extend(best_spans(starts, ends, spans, n_best, settings.max_answer_length))
            candidates.sort(key=lambda c: -c[0])
            nbest = [{"text": context[s:e], "score": score, "start": s, "end": e}
                     for score, s, e in candidates[:n_best]]
            best_span = nbest[0] if nbest else None
            if version_2 and null_score is not None:
                nbest.append({"text": "", "score": null_score, "start": None, "end": None})
                nbest.sort(key=lambda c: -c["score"])
                nbest = nbest[:n_best + 1]
            if not nbest:
                nbest = [{"text": "", "score": 0.0, "start": None, "end": None}]
            _add_probabilities(nbest)
            answer = best_span
            prediction: Prediction = {"id": ident}
            if version_2:
                diff = (null_score - best_span["score"]) if best_span and null_score is not None else None
                prediction["null_score_diff"] = diff
                prediction["span_answer"] = best_span["text"] if best_span else ""
                if best_span is None or diff > settings.null_score_diff_threshold:
                    answer = next(c for c in nbest if c["start"] is None) if null_score is not None else None
            if answer is None:
                answer = {"text": "", "start": None, "end": None, "probability": nbest[0]["probability"]}
            prediction.update(answer=answer["text"], start=answer["start"], end=answer["end"],
                              score=answer["probability"], nbest=nbest)
            predictions.append(prediction)
        return predictions


def answer_tokens(offsets: list[tuple[int, int]], sequence_ids: list[int | None], start_char: int,
                  end_char: int) -> tuple[int, int] | None:
    """(first, last) token of the answer characters [start_char, end_char) if the window holds
    all of it, else None (the feature then trains as "no answer in this window")."""
    context = [i for i, s in enumerate(sequence_ids) if s == 1]
    if not context:
        return None
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return None
    token_start = first
    while token_start <= last and offsets[token_start][0] <= start_char:
        token_start += 1
    token_end = last
    while token_end >= first and offsets[token_end][1] >= end_char:
        token_end -= 1
    return token_start - 1, token_end + 1


def best_spans(starts: np.ndarray, ends: np.ndarray, offsets: Any, n_best: int,
               max_answer: int) -> list[tuple[float, int, int]]:
    """(score, start char, end char) of the best valid spans of one window: both ends on context
    tokens, end not before start, at most `max_answer` tokens; score = start + end logit."""
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    candidates = np.flatnonzero(spans[:, 0] >= 0)
    if not len(candidates):
        return []
    top_starts = candidates[np.argsort(-starts[candidates], kind="stable")[:n_best]]
    top_ends = candidates[np.argsort(-ends[candidates], kind="stable")[:n_best]]
    scores = starts[top_starts][:, None] + ends[top_ends][None, :]
    width = top_ends[None, :] - top_starts[:, None]
    scores = np.where((width >= 0) & (width < max_answer), scores, -np.inf)
    order = np.argsort(-scores, axis=None, kind="stable")[:n_best]
    rows, cols = np.unravel_index(order, scores.shape)
    return [(float(scores[r, c]), int(spans[top_starts[r], 0]), int(spans[top_ends[c], 1]))
            for r, c in zip(rows, cols, strict=True) if np.isfinite(scores[r, c])]


def _limit_questions(questions: list[str], tokenizer: Any, max_query: int) -> tuple[list[str], set[int]]:
    """Cut questions longer than `max_query` tokens at a token boundary (as the BERT recipe does),
    so a window always has room for context."""
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    cut, limited = set(), []
    for i, (question, offsets) in enumerate(zip(questions, encoded["offset_mapping"], strict=True)):
        if len(offsets) > max_query:
            cut.add(i)
            question = question[:offsets[max_query - 1][1]]
        limited.append(question)
    return limited, cut


def offset_table(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """All features' masked offsets as one (tokens, 2) array plus each feature's row bounds.

    Read through Arrow: turning ~2M offset pairs into Python lists would take seconds per evaluation.
    """
    import pyarrow as pa

    column = features.with_format("arrow")["offset_mapping"]
    column = pa.concat_arrays(column.chunks) if isinstance(column, pa.ChunkedArray) else column
    bounds = column.offsets.to_numpy().astype(np.int64)
    pairs = column.flatten().flatten().to_numpy().astype(np.int64).reshape(-1, 2)
    return pairs, bounds - bounds[0]


def _column(dataset: Any, name: str) -> list[Any]:
    """One column as a Python list (a datasets.Column is lazy and slow to index row by row)."""
    return list(dataset[name]) if isinstance(dataset[name], list) else dataset[name][:]


def _multi_window(example_ids: list[str]) -> int:
    counts: dict[str, int] = defaultdict(int)
    for ident in example_ids:
        counts[ident] += 1
    return sum(1 for n in counts.values() if n > 1)


def _start_end(outputs: Any) -> tuple[np.ndarray, np.ndarray]:
    """(start_logits, end_logits) of a Trainer prediction output."""
    if isinstance(outputs, (tuple, list)) and len(outputs) >= 2:
        return np.asarray(outputs[0]), np.asarray(outputs[1])
    array = np.asarray(outputs)
    if array.ndim == 3 and array.shape[0] == 2:
        return array[0], array[1]
    raise FinetuneError(f"expected (start_logits, end_logits) from a question answering model, "
                        f"got {type(outputs).__name__}")


def _add_probabilities(nbest: list[dict[str, Any]]) -> None:
    scores = np.array([c["score"] for c in nbest], dtype=np.float64)
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    for candidate, prob in zip(nbest, probs, strict=True):
        candidate["score"] = round(float(candidate["score"]), 4)
        candidate["probability"] = round(float(prob), 6)
