"""Extractive question answering: the answer is a span of the context (SQuAD v1.1 / v2.0).

A long context is cut into overlapping windows (`data.max_length` tokens, `data.doc_stride`
tokens shared by neighbouring windows), so one example gives one or more features. Every
feature keeps its `example_id` and its token offsets masked to the context, so the same saved
features serve training (start/end labels), validation during training and evaluation; the
spans of all windows of a question compete in post-processing.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from finetune import metrics as metric_fns
from finetune.data.squad import AnswerReport, make_example, read_squad
from finetune.errors import FinetuneError
from finetune.tasks import base
from finetune.tasks.base import Prediction, TaskFamily, setting

log = logging.getLogger("finetune")

#: feature columns the model never sees (the Trainer drops them; the collator does too)
BOOKKEEPING = ("example_id", "offset_mapping", "length")
#: the [CLS] position (first token with question-first inputs): labels and scores "no answer"
NULL_INDEX = 0
NO_OFFSET = [-1, -1]  # offset of a token outside the context (question, special tokens, padding)
QUESTION_WORDS = ("what", "which", "who", "when", "where", "why", "how many", "how much", "how")
LENGTH_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 10**9))


@dataclasses.dataclass(frozen=True)
class Settings(base.Settings):
    max_length: int = setting("data.max_length", 384)  # tokens per window
    doc_stride: int = setting("data.doc_stride", 128)
    max_query_length: int = setting("task.max_query_length", 64)
    n_best_size: int = setting("task.n_best_size", 20)
    max_answer_length: int = setting("task.max_answer_length", 30)
    version_2_with_negative: bool = setting("task.version_2_with_negative", False)
    null_score_diff_threshold: float = setting("task.null_score_diff_threshold", 0.0)


class Family(TaskFamily):
    name = "question_answering"
    auto_model = "AutoModelForQuestionAnswering"
    pipeline_tag = "question-answering"
    primary_metric = "f1"
    input_fields = ("question", "context")
    outputs = ("start_logits", "end_logits")
    token_outputs = True
    formats = ("squad",)
    Settings = Settings

    @property
    def version_2(self) -> bool:
        return bool(self.settings.version_2_with_negative)

    # -- data -------------------------------------------------------------------------------
    def read(self, path: Path, fmt: str, split: str) -> list[dict[str, Any]]:
        policy = str(self.option("data", "on_bad_answer", "fix"))
        examples = read_squad(path, fmt, on_bad_answer=policy, encoding=self.cfg.data.get("encoding"))
        self._check_unanswerable(examples, str(path))
        return examples

    def from_hub(self, dataset: Any, split: str) -> list[dict[str, Any]]:
        policy, report, examples = str(self.option("data", "on_bad_answer", "fix")), AnswerReport(), []
        for i, row in enumerate(dataset):
            qid = str(row.get("id", i))
            where = f"row {i + 1}, question id '{qid}'"
            example = make_example(f"hub:{split}", where, qid, row, policy, report)
            if example is not None:
                examples.append(example)
        if report.bad:
            log.warning(report.summary(f"hub:{split}", policy))
        self._check_unanswerable(examples, f"hub:{split}")
        return examples

    def _check_unanswerable(self, examples: list[dict[str, Any]], where: str) -> None:
        unanswerable = sum(not example["answers"]["text"] for example in examples)
        if unanswerable and not self.version_2:
            log.warning("%s: %d question(s) have no answer but task.version_2_with_negative is false: "
                        "they train the model to point at [CLS] and score only an empty prediction",
                        where, unanswerable)

    def features(self, labels: list[str] | None) -> Any:
        from datasets import Features, List, Value

        return Features({"id": Value("string"), "title": Value("string"), "context": Value("string"),
                         "question": Value("string"),
                         "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))}})

    # -- model ------------------------------------------------------------------------------
    def tokenize(self, examples: Any, tokenizer: Any, labels: list[str] | None) -> tuple[Any, dict[str, Any]]:
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

        features = self.map_batches(examples, encode, examples.column_names)
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
                 "tokens": int(sum(features["length"]))}
        return features, stats

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        return QACollator(tokenizer, pad_to_multiple_of)

    # -- predictions and scores -------------------------------------------------------------
    def decode(self, examples: Any, features: Any, outputs: Any, labels: list[str] | None) -> list[Prediction]:
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

    def score(self, examples: Any, predictions: list[Prediction], labels: list[str] | None) -> dict[str, Any]:
        gold = {ident: list(answers["text"]) for ident, answers
                in zip(_column(examples, "id"), _column(examples, "answers"), strict=True)}
        predicted = {p["id"]: p["answer"] for p in predictions}
        result = metric_fns.squad_metrics(predicted, gold, self.version_2)
        if self.version_2:
            span_f1, diffs, has_answer = {}, {}, {}
            for p in predictions:
                answers = gold[p["id"]]
                span_f1[p["id"]] = metric_fns.squad_scores(p.get("span_answer", ""), answers, True)[1]
                diff = p.get("null_score_diff")
                diffs[p["id"]] = float("-inf") if diff is None else diff
                has_answer[p["id"]] = bool([a for a in answers if metric_fns.normalize_answer(a)])
            best, threshold = metric_fns.best_null_threshold(span_f1, diffs, has_answer)
            result.update(best_f1=best, best_f1_thresh=threshold)
        result["version_2_with_negative"] = self.version_2
        return result

    def write_predictions(self, examples: Any, predictions: list[Prediction], labels: list[str] | None,
                          out_dir: Path) -> list[Path]:
        from finetune.io import write_json

        written = [out_dir / "predictions.json", out_dir / "nbest_predictions.json"]
        write_json(written[0], {p["id"]: p["answer"] for p in predictions})
        write_json(written[1], {p["id"]: p["nbest"] for p in predictions})
        if self.version_2:  # the official v2.0 script's --na-prob-file: higher = more likely unanswerable
            written.append(out_dir / "null_odds.json")
            write_json(written[2], {p["id"]: p.get("null_score_diff") for p in predictions})
        return written

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              labels: list[str] | None, out_dir: Path) -> list[Path]:
        rows = []
        for p, question, answers in zip(predictions, _column(examples, "question"), _column(examples, "answers"),
                                        strict=True):
            _, f1 = metric_fns.squad_scores(p["answer"], answers["text"], self.version_2)
            rows.append((question_type(question), answer_length_bucket(answers["text"]), f1))
        return [plot_breakdown(rows, out_dir / "f1_breakdown.png",
                               title=f"{self.settings.task}: F1 {metrics['f1']:.1f} on {metrics['n_eval']} "
                                     f"questions ({metrics.get('split', 'eval')})")]


class QACollator:
    """Dynamic padding of the model inputs; bookkeeping columns never reach the tensors."""

    def __init__(self, tokenizer: Any, pad_to_multiple_of: int | None):
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        return self.pad([{k: v for k, v in f.items() if k not in BOOKKEEPING} for f in features])


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


def question_type(question: str) -> str:
    """The question word (what/who/when/.../other), for the per-type F1 breakdown."""
    text = question.lower()
    for word in QUESTION_WORDS:
        if re.search(rf"\b{word}\b", text):
            return word
    return "other"


def answer_length_bucket(answers: list[str]) -> str:
    """Bucket of the shortest gold answer's length in words ("none" for an unanswerable one)."""
    lengths = [len(a.split()) for a in answers if a.strip()]
    if not lengths:
        return "none"
    n = min(lengths)
    for low, high in LENGTH_BUCKETS:
        if low <= n <= high:
            return str(low) if low == high else (f"{low}-{high}" if high < 10**9 else f"{low}+")
    return "?"


def plot_breakdown(rows: list[tuple[str, str, float]], path: Path, title: str = "") -> Path:
    """F1 (bars, 0-100) with question counts, by question word and by gold answer length."""
    from finetune.plots import _pyplot

    plt = _pyplot()
    length_order = ["none"] + [str(lo) if lo == hi else (f"{lo}-{hi}" if hi < 10**9 else f"{lo}+")
                               for lo, hi in LENGTH_BUCKETS]
    type_order = [*QUESTION_WORDS, "other"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for ax, column, order, label in ((axes[0], 0, type_order, "question word"),
                                     (axes[1], 1, length_order, "gold answer length (words)")):
        groups: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            groups[row[column]].append(row[2])
        names = [name for name in order if name in groups]
        values = [100.0 * sum(groups[n]) / len(groups[n]) for n in names]
        bars = ax.bar(range(len(names)), values, color="tab:blue")
        for bar, name in zip(bars, names, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, f"n={len(groups[name])}",
                    ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set(ylim=(0, 110), ylabel="F1", xlabel=label)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
