"""Training and scoring of token classification (CoNLL-2003, or any tagged corpus).

Canonical examples are `{id, tokens: [str], tags: [label id]}`, read from CoNLL columns or from
JSON/JSONL/Parquet rows of token and tag lists (finetune.tasks.token_classification.conll). The
label set comes from `task.labels`, or is collected from train (`O`, then `B-X`, `I-X` per type
sorted by type); `task.label_map` ({tag: tag}) applies to every split before encoding. Metrics
are seqeval's, on word-level tags.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from finetune.checks import integer, one_of, text
from finetune.data.splits import SPLIT
from finetune.errors import DataError, FinetuneError
from finetune.intervals import Resampled, ratio
from finetune.tasks import interface
from finetune.tasks.interface import Examples, Prediction, Recipe, logits_of, setting
from finetune.tasks.token_classification.codec import IGNORE, TagCodec
from finetune.tasks.token_classification.conll import Sentence, entity_type, parse_tag, read_conll, read_tagged_records
from finetune.tasks.token_classification.metrics import token_classification_metrics
from finetune.temperature import Scored

PREDICTIONS = "predictions.conll"  # TOKEN GOLD PRED per line, a blank line after each sentence


@dataclasses.dataclass(frozen=True)
class Sources(interface.Sources):
    tag_scheme: str = setting("data.tag_scheme", one_of("iob2", "iob1", "auto"))
    on_bad_tag: str = setting("data.on_bad_tag", one_of("fail", "repair"))
    token_column: int = setting("data.token_column", integer())  # CoNLL columns
    tag_column: int = setting("data.tag_column", integer())
    tokens_column: str = setting("data.tokens_column", text())  # JSON rows, Hub datasets
    tags_column: str = setting("data.tags_column", text())
    encoding: str = setting("data.encoding", text())
    split_column: str | None = setting("data.split_column")
    labels: list[str] | None = setting("task.labels")
    label_map: dict[str, str] | None = setting("task.label_map")


class TagRecipe(Recipe):
    Sources = Sources
    codec: TagCodec
    sources: Sources
    primary_metric = "f1"

    def read(self, path: Path, fmt: str, split: str) -> Examples:
        sources = self.sources
        scheme, on_bad = sources.tag_scheme, sources.on_bad_tag
        if fmt == "csv":
            raise DataError(path, "a CSV table cannot hold token and tag lists; use CoNLL columns "
                            "(data.format=conll) or JSON Lines rows of tokens/tags lists (data.format=jsonl)")
        if fmt in ("json", "jsonl", "parquet"):
            sentences = read_tagged_records(
                path, fmt, tokens_field=sources.tokens_column, tags_field=sources.tags_column,
                tag_names=list(sources.labels) if sources.labels else None, tag_scheme=scheme, on_bad_tag=on_bad,
                split_column=sources.split_column, encoding=sources.encoding)
        else:
            # conll, and whatever else a tagged corpus file is called in practice: .tsv (WNUT),
            # .iob, eng.train / eng.testa (a tab-separated *table* cannot hold token lists anyway).
            sentences = read_conll(path, tag_column=sources.tag_column, token_column=sources.token_column,
                                   tag_scheme=scheme, on_bad_tag=on_bad, encoding=sources.encoding)
        return [{"id": str(i), "tokens": s.tokens, "tags": s.tags, SPLIT: s.split, "_where": s}
                for i, s in enumerate(sentences)]

    def from_hub(self, dataset: Any, split: str) -> Examples:
        tokens_col = self.sources.tokens_column
        tags_col = next((c for c in (self.sources.tags_column, "ner_tags", "tags")
                         if c and c in dataset.column_names), None)
        if tokens_col not in dataset.column_names or tags_col is None:
            raise FinetuneError(f"hub split '{split}' has columns {dataset.column_names}; set "
                                "data.tokens_column / data.tags_column")
        names = getattr(getattr(dataset.features[tags_col], "feature", None), "names", None)
        examples = []
        for i, row in enumerate(dataset):
            if not row[tokens_col]:
                continue  # the Hub copy of CoNLL-2003 once held an empty example
            tags = [names[t] if names and isinstance(t, int) else str(t) for t in row[tags_col]]
            where = Sentence(list(row[tokens_col]), tags, f"hub:{split}", f"row {i + 1}")
            examples.append({"id": str(row.get("id", i)), "tokens": where.tokens, "tags": tags,
                             "_where": where})
        return examples

    def features(self) -> Any:
        from datasets import ClassLabel, Features, List, Value

        return Features({"id": Value("string"), "tokens": List(Value("string")),
                         "tags": List(ClassLabel(names=self.labels))})

    def _label_map(self) -> dict[str, str]:
        mapping = self.sources.label_map or {}
        return {str(k): str(v) for k, v in mapping.items()}

    def label_set(self, splits: dict[str, Examples]) -> list[str]:
        configured = self.sources.labels
        if configured:
            labels = [str(label) for label in configured]
            for label in labels:
                try:
                    parse_tag(label)
                except ValueError as error:
                    raise FinetuneError(f"task.labels: {error}") from None
            if len(set(labels)) != len(labels):
                raise FinetuneError(f"task.labels has duplicates: {labels}")
            return labels
        if "train" not in splits:
            raise FinetuneError("cannot collect the tag set without a train split; set task.labels")
        mapping = self._label_map()
        types = {entity_type(mapping.get(tag, tag)) for ex in splits["train"] for tag in ex["tags"]} - {"O"}
        return ["O"] + [f"{prefix}-{kind}" for kind in sorted(types) for prefix in ("B", "I")]

    def encode_labels(self, examples: Examples, split: str) -> Examples:
        labels = self.labels
        index = {label: i for i, label in enumerate(labels or [])}
        mapping = self._label_map()
        unknown = sorted(set(mapping.values()) - set(index))
        if unknown:
            raise FinetuneError(f"task.label_map maps to '{unknown[0]}', which is not a label {labels}")
        for example in examples:
            ids = []
            for i, tag in enumerate(example["tags"]):
                tag = mapping.get(tag, tag)
                if tag not in index:
                    where: Sentence = example["_where"]
                    seen = "the training data never has it" if not self.sources.labels \
                        else "it is not in task.labels"
                    raise DataError(where.file, f"tag '{tag}' in the {split} split: {seen} (labels: "
                                    f"{', '.join(index)}); map it with task.label_map={{{tag}: O}} "
                                    "or list it in task.labels", where=where.token_where(i))
                ids.append(index[tag])
            example["tags"] = ids
        return examples

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=pad_to_multiple_of,
                                                  label_pad_token_id=IGNORE)

    def score(self, examples: Any, predictions: list[Prediction]) -> dict[str, Any]:
        labels = self.labels or []
        gold = [[labels[t] for t in tags] for tags in examples["tags"]]
        metrics = token_classification_metrics(gold, [p["tags"] for p in predictions])
        metrics["unpredicted_words"] = int(sum(p["unpredicted_words"] for p in predictions))
        return metrics

    def baseline(self, train: Any, examples: Any) -> tuple[str, list[Prediction]]:
        return "all O", [{"id": ident, "tags": ["O"] * len(tokens), "entities": [], "unpredicted_words": 0}
                         for ident, tokens in zip(examples["id"], examples["tokens"], strict=True)]

    def scored(self, examples: Any, features: Any, outputs: Any) -> Scored:
        """The tag logits of every labelled sub-token (each word's first, unless label_all_tokens)."""
        logits, rows, gold = np.asarray(logits_of(outputs)), [], []
        for row, labels in zip(logits, features["labels"], strict=True):
            labels = np.asarray(labels)
            at = np.flatnonzero(labels != IGNORE)
            rows.append(row[at])
            gold.append(labels[at])
        return Scored(np.concatenate(rows), np.concatenate(gold), "softmax")

    def resampled(self, examples: Any, predictions: list[Prediction]) -> Resampled:
        """Sentences are the unit: each one's entity counts (as seqeval counts them) and word hits."""
        from seqeval.metrics.sequence_labeling import get_entities

        labels = self.labels or []
        rows = []
        for tags, prediction in zip(examples["tags"], predictions, strict=True):
            gold, predicted = set(get_entities([labels[t] for t in tags])), set(get_entities(prediction["tags"]))
            hits = sum(labels[t] == p for t, p in zip(tags, prediction["tags"], strict=True))
            rows.append((len(gold & predicted), len(predicted), len(gold), hits, len(tags)))
        found, predicted, actual, hits, words = np.asarray(rows, dtype=np.float64).reshape(-1, 5).T

        def statistic(draw: np.ndarray) -> dict[str, float]:
            f, p, a = found[draw].sum(), predicted[draw].sum(), actual[draw].sum()
            return {"f1": float(ratio(2 * f, p + a)), "precision": float(ratio(f, p)), "recall": float(ratio(f, a)),
                    "accuracy": float(ratio(hits[draw].sum(), words[draw].sum()))}

        return Resampled("sentences", len(rows), statistic)

    def write_predictions(self, examples: Any, predictions: list[Prediction], out_dir: Path) -> list[Path]:
        from finetune.io import atomic_file

        names = examples.features["tags"].feature.names
        path = out_dir / PREDICTIONS
        with atomic_file(path, encoding="utf-8") as handle:
            for gold, prediction in zip(examples["tags"], predictions, strict=True):
                rows = zip(prediction["tokens"], gold, prediction["tags"], strict=True)
                for token, tag, pred in rows:
                    handle.write(f"{conll_token(token)} {names[tag]} {pred}\n")
                handle.write("\n")
        return [path]

    def read_predictions(self, out_dir: Path) -> tuple[dict[str, list[Any]], list[Prediction]]:
        index = {label: i for i, label in enumerate(self.labels or [])}
        sentences = [block.splitlines() for block in
                     (out_dir / PREDICTIONS).read_text(encoding="utf-8").split("\n\n") if block.strip()]
        rows = [[line.rsplit(" ", 2) for line in lines] for lines in sentences]
        return ({"id": [str(i) for i in range(len(rows))], "tokens": [[r[0] for r in row] for row in rows],
                 "tags": [[index[r[1]] for r in row] for row in rows]},
                [{"id": str(i), "tags": [r[2] for r in row]} for i, row in enumerate(rows)])

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              out_dir: Path) -> list[Path]:
        from finetune import plots

        confusion = metrics["type_confusion"]
        path = out_dir / "type_confusion.png"
        return [plots.confusion_matrix(confusion["matrix"], confusion["labels"], path,
                                       title=f"{self.codec.settings.task}: entity types per word")]


def conll_token(token: str) -> str:
    """A token as one CoNLL column: whitespace inside it (JSON input may have some) becomes `_`."""
    return "_".join(token.split()) or "_"
