"""Training and scoring of extractive question answering (SQuAD v1.1 / v2.0): sources read by
finetune.tasks.question_answering.squad, scores by the official SQuAD evaluation's rules."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from finetune.checks import one_of, text
from finetune.intervals import Resampled
from finetune.tasks import interface
from finetune.tasks.interface import Examples, Prediction, Recipe, setting
from finetune.tasks.question_answering import metrics as scores
from finetune.tasks.question_answering.codec import BOOKKEEPING, SpanCodec, _column
from finetune.tasks.question_answering.plots import answer_length_bucket, plot_breakdown, question_type
from finetune.tasks.question_answering.squad import AnswerReport, make_example, read_squad

log = logging.getLogger("finetune")
GOLD = "gold_answers.json"  # {question id: its gold answers}, beside the predictions (comparing runs)


@dataclasses.dataclass(frozen=True)
class Sources(interface.Sources):
    # answer_start not indexing its text: fix (nearest occurrence) | drop | fail
    on_bad_answer: str = setting("data.on_bad_answer", one_of("fix", "drop", "fail"))
    encoding: str = setting("data.encoding", text())


class SpanRecipe(Recipe):
    Sources = Sources
    codec: SpanCodec
    sources: Sources
    primary_metric = "f1"

    def read(self, path: Path, fmt: str, split: str) -> Examples:
        examples = read_squad(path, fmt, on_bad_answer=self.sources.on_bad_answer, encoding=self.sources.encoding)
        self._check_unanswerable(examples, str(path))
        return examples

    def from_hub(self, dataset: Any, split: str) -> Examples:
        policy, report, examples = self.sources.on_bad_answer, AnswerReport(), []
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
        if unanswerable and not self.codec.version_2:
            log.warning("%s: %d question(s) have no answer but task.version_2_with_negative is false: "
                        "they train the model to point at [CLS] and score only an empty prediction",
                        where, unanswerable)

    def group(self, example: dict[str, Any]) -> Any:
        return example["context"]  # questions on one passage stay in one split

    def features(self) -> Any:
        from datasets import Features, List, Value

        return Features({"id": Value("string"), "title": Value("string"), "context": Value("string"),
                         "question": Value("string"),
                         "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))}})

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        return QACollator(tokenizer, pad_to_multiple_of)

    def score(self, examples: Any, predictions: list[Prediction]) -> dict[str, Any]:
        gold = {ident: list(answers["text"]) for ident, answers
                in zip(_column(examples, "id"), _column(examples, "answers"), strict=True)}
        predicted = {p["id"]: p["answer"] for p in predictions}
        result = scores.squad_metrics(predicted, gold, self.codec.version_2)
        result["version_2_with_negative"] = self.codec.version_2
        return result

    @property
    def tunes(self) -> bool:
        return self.codec.version_2

    def tune(self, examples: Any, features: Any, outputs: Any) -> dict[str, Any]:
        """SQuAD v2.0: the null-score threshold (`task.null_score_diff_threshold`) that maximises F1 on
        these examples: a question is answered "" when its null score beats its best span's by more."""
        if not self.tunes:
            return {}
        predictions = self.codec.decode(examples, features, outputs)
        span_f1, diffs, has_answer = {}, {}, {}
        for p, answers in zip(predictions, _column(examples, "answers"), strict=True):
            texts = list(answers["text"])
            span_f1[p["id"]] = scores.squad_scores(p.get("span_answer", ""), texts, True)[1]
            diff = p.get("null_score_diff")
            diffs[p["id"]] = float("-inf") if diff is None else diff
            has_answer[p["id"]] = bool([a for a in texts if scores.normalize_answer(a)])
        _, threshold = scores.best_null_threshold(span_f1, diffs, has_answer)
        return {"null_score_diff_threshold": round(float(threshold), 6)}

    def baseline(self, train: Any, examples: Any) -> tuple[str, list[Prediction]]:
        """SQuAD v2.0: always "no answer"; v1.1: the context's first words, as many as the median
        gold answer of train has."""
        ids, contexts = _column(examples, "id"), _column(examples, "context")
        if self.codec.version_2:
            return "always no answer", [{"id": ident, "answer": ""} for ident in ids]
        lengths = [len(texts[0].split()) for texts in (a["text"] for a in _column(train, "answers")) if texts]
        words = max(1, int(np.median(lengths))) if lengths else 1
        return (f"the context's first {words} word(s)",
                [{"id": ident, "answer": " ".join(context.split()[:words])} for ident, context in zip(ids, contexts,
                                                                                                       strict=True)])

    def resampled(self, examples: Any, predictions: list[Prediction]) -> Resampled:
        """Questions are the unit: each one's exact match and F1 against its gold answers."""
        answered = {p["id"]: p["answer"] for p in predictions}
        rows = [scores.squad_scores(answered.get(ident, ""), list(answers["text"]), self.codec.version_2)
                for ident, answers in zip(_column(examples, "id"), _column(examples, "answers"), strict=True)]
        exact, f1 = np.asarray(rows, dtype=np.float64).reshape(-1, 2).T

        def statistic(draw: np.ndarray) -> dict[str, float]:
            return {"exact_match": 100.0 * float(exact[draw].mean()), "f1": 100.0 * float(f1[draw].mean())}

        return Resampled("questions", len(rows), statistic)

    def write_predictions(self, examples: Any, predictions: list[Prediction], out_dir: Path) -> list[Path]:
        from finetune.io import write_json

        written = [out_dir / "predictions.json", out_dir / "nbest_predictions.json", out_dir / GOLD]
        write_json(written[0], {p["id"]: p["answer"] for p in predictions})
        write_json(written[1], {p["id"]: p["nbest"] for p in predictions})
        write_json(written[2], {ident: list(answers["text"]) for ident, answers
                                in zip(_column(examples, "id"), _column(examples, "answers"), strict=True)})
        if self.codec.version_2:  # the official v2.0 script's --na-prob-file: higher = more likely unanswerable
            written.append(out_dir / "null_odds.json")
            write_json(written[-1], {p["id"]: p.get("null_score_diff") for p in predictions})
        return written

    def read_predictions(self, out_dir: Path) -> tuple[dict[str, list[Any]], list[Prediction]]:
        from finetune.io import read_json

        gold, answered = read_json(out_dir / GOLD), read_json(out_dir / "predictions.json")
        return ({"id": list(gold), "answers": [{"text": texts} for texts in gold.values()]},
                [{"id": ident, "answer": answered.get(ident, "")} for ident in gold])

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              out_dir: Path) -> list[Path]:
        rows = []
        for p, question, answers in zip(predictions, _column(examples, "question"), _column(examples, "answers"),
                                        strict=True):
            _, f1 = scores.squad_scores(p["answer"], answers["text"], self.codec.version_2)
            rows.append((question_type(question), answer_length_bucket(answers["text"]), f1))
        return [plot_breakdown(rows, out_dir / "f1_breakdown.png",
                               title=f"{self.codec.settings.task}: F1 {metrics['f1']:.1f} on {metrics['n_eval']} "
                                     f"questions ({metrics.get('split', 'eval')})")]

    def usage(self, folder: str, metrics: dict[str, Any]) -> dict[str, list[str]]:
        # transformers 5 removed the extractive question-answering pipeline; the Auto classes load the folder.
        return {"transformers": ["from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
                                 f"tokenizer = AutoTokenizer.from_pretrained('{folder}')",
                                 f"model = AutoModelForQuestionAnswering.from_pretrained('{folder}')",
                                 "# finetune-predict (below) does the windowing and span decoding "
                                 "the evaluation scored"],
                "predict": ['--question "Who wrote it?" --context "It was written by Ann Lee in 1990."'], "notes": []}


class QACollator:
    """Dynamic padding of the model inputs; bookkeeping columns never reach the tensors."""

    def __init__(self, tokenizer: Any, pad_to_multiple_of: int | None):
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        return self.pad([{k: v for k, v in f.items() if k not in BOOKKEEPING} for f in features])
