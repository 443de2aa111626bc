"""Token classification (NER): one IOB2 tag per word (CoNLL-2003, or any tagged corpus).

Canonical examples are `{id, tokens: [str], tags: [label id]}`. The model sees sub-tokens: the
first sub-token of a word carries the word's label, special tokens and (by default) the other
sub-tokens carry -100. Predictions and metrics are word-level: a word's prediction is its first
sub-token's, and words the model never saw (cut by `data.max_length`, or words the tokenizer
turns into nothing) are predicted `O` and counted, never silently dropped.

Config read here (conf/task/ner.yaml sets the defaults):
- `task.labels`: the label list, or null to collect it from train (`O`, then `B-X`, `I-X` per
  type sorted by type); `task.label_map`: {tag: tag} applied to every split before encoding
  (e.g. map a type to drop to `O`); `task.label_all_tokens`: label continuation sub-tokens
  with the word's tag (`B-` turned into `I-`) instead of -100.
- `data.tag_column`, `data.token_column`, `data.tag_scheme` (iob2|iob1|auto),
  `data.on_bad_tag` (fail|repair): see finetune.data.conll; `data.tokens_column`,
  `data.tags_column`: the fields of JSON/JSONL rows and of a Hub dataset.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from finetune import metrics as metric_fns
from finetune.data.conll import Sentence, entity_type, parse_tag, read_conll, read_tagged_records
from finetune.errors import DataError, FinetuneError
from finetune.tasks import base
from finetune.tasks.base import Prediction, TaskFamily, logits_of, require_text, setting, softmax, truncated_flags

IGNORE = -100  # label id the loss ignores (specials, continuation sub-tokens)
# Words of free text, close to CoNLL-2003's tokenization: abbreviations (U.S.), words with inner
# hyphens or apostrophes, numbers with separators, and each other punctuation mark on its own.
WORD = re.compile(r"(?:[^\W\d_]\.){2,}|\w+(?:[-'’.,]\w+)*|[^\w\s]")


@dataclasses.dataclass(frozen=True)
class Settings(base.Settings):
    label_all_tokens: bool = setting("task.label_all_tokens", False)


class Family(TaskFamily):
    name = "token_classification"
    auto_model = "AutoModelForTokenClassification"
    pipeline_tag = "token-classification"
    primary_metric = "f1"
    token_outputs = True
    formats = ("conll",)
    Settings = Settings

    # -- data -------------------------------------------------------------------------------
    def read(self, path: Path, fmt: str, split: str) -> list[dict[str, Any]]:
        scheme = str(self.option("data", "tag_scheme", "iob2"))
        on_bad = str(self.option("data", "on_bad_tag", "fail"))
        if fmt == "csv":
            raise DataError(path, "a CSV table cannot hold token and tag lists; use CoNLL columns "
                            "(data.format=conll) or JSON Lines rows of tokens/tags lists (data.format=jsonl)")
        if fmt in ("json", "jsonl", "parquet"):
            configured = self.cfg.task.get("labels")
            sentences = read_tagged_records(
                path, fmt, tokens_field=str(self.option("data", "tokens_column", "tokens")),
                tags_field=str(self.option("data", "tags_column", "tags")),
                tag_names=list(configured) if configured else None, tag_scheme=scheme, on_bad_tag=on_bad,
                split_column=self.cfg.data.get("split_column"), split=split, encoding=self.cfg.data.get("encoding"))
        else:
            # conll, and whatever else a tagged corpus file is called in practice: .tsv (WNUT),
            # .iob, eng.train / eng.testa (a tab-separated *table* cannot hold token lists anyway).
            sentences = read_conll(path, tag_column=int(self.option("data", "tag_column", -1)),
                                   token_column=int(self.option("data", "token_column", 0)),
                                   tag_scheme=scheme, on_bad_tag=on_bad, encoding=self.cfg.data.get("encoding"))
        return [{"id": str(i), "tokens": s.tokens, "tags": s.tags, "_where": s}
                for i, s in enumerate(sentences)]

    def from_hub(self, dataset: Any, split: str) -> list[dict[str, Any]]:
        tokens_col = str(self.option("data", "tokens_column", "tokens"))
        tags_col = next((c for c in (self.cfg.data.get("tags_column"), "ner_tags", "tags")
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

    def features(self, labels: list[str] | None) -> Any:
        from datasets import ClassLabel, Features, List, Value

        return Features({"id": Value("string"), "tokens": List(Value("string")),
                         "tags": List(ClassLabel(names=labels))})

    def _label_map(self) -> dict[str, str]:
        mapping = self.cfg.task.get("label_map") or {}
        return {str(k): str(v) for k, v in mapping.items()}

    def labels(self, splits: dict[str, list[dict[str, Any]]]) -> list[str]:
        configured = self.cfg.task.get("labels")
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

    def encode_labels(self, examples: list[dict[str, Any]], labels: list[str] | None, *,
                      file: str, split: str) -> list[dict[str, Any]]:
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
                    seen = "the training data never has it" if not self.cfg.task.get("labels") \
                        else "it is not in task.labels"
                    raise DataError(where.file, f"tag '{tag}' in the {split} split: {seen} (labels: "
                                    f"{', '.join(index)}); map it with task.label_map={{{tag}: O}} "
                                    "or list it in task.labels", where=where.token_where(i))
                ids.append(index[tag])
            example["tags"] = ids
        return examples

    def inputs(self, records: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
        """Free text (`text`, split into words here) or a pre-split word list (`tokens`)."""
        examples = []
        for row, record in enumerate(records, start=1):
            if isinstance(record.get("tokens"), list) and "text" not in record:
                tokens = [str(token) for token in record["tokens"]]
                text, offsets = join_words(tokens)
            else:
                text = require_text(record, "text", source, row)
                words = list(WORD.finditer(text))
                tokens, offsets = [w.group() for w in words], [[w.start(), w.end()] for w in words]
            if not tokens:
                raise DataError(source, "no words in the text", row=row, field="text")
            examples.append({"id": str(record.get("id", row)), "text": text, "tokens": tokens, "offsets": offsets})
        return examples

    # -- model ------------------------------------------------------------------------------
    def tokenize(self, examples: Any, tokenizer: Any, labels: list[str] | None) -> tuple[Any, dict[str, Any]]:
        if not getattr(tokenizer, "is_fast", False):
            raise FinetuneError("token classification needs a fast tokenizer (word_ids())")
        max_length = int(self.settings.max_length)
        label_all = bool(self.settings.label_all_tokens)
        inside = continuation_ids(labels or [])
        gold = "tags" in examples.column_names

        def encode(batch: dict[str, list]) -> dict[str, list]:
            encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True,
                                max_length=max_length)
            all_labels, all_words, lost, empty, cut = [], [], [], [], []
            for i, words in enumerate(batch["tokens"]):
                word_ids = encoded.word_ids(i)
                if gold:
                    all_labels.append(align_labels(word_ids, batch["tags"][i], inside if label_all else None))
                all_words.append([-1 if w is None else w for w in word_ids])
                truncated = bool(encoded.encodings[i].overflowing)
                n_lost, n_empty = missing_words(word_ids, len(words), truncated)
                lost.append(n_lost)
                empty.append(n_empty)
                cut.append(truncated)
            if gold:
                encoded["labels"] = all_labels
            encoded["word_ids"] = all_words
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            encoded["truncated"] = cut
            encoded["truncated_words"] = lost
            encoded["empty_words"] = empty
            return encoded

        features = self.map_batches(examples, encode, examples.column_names)
        stats = {"examples": len(examples), "features": len(features),
                 "truncated": int(sum(features["truncated"])),
                 "truncated_words": int(sum(features["truncated_words"])),
                 "untokenizable_words": int(sum(features["empty_words"])),
                 "words": int(sum(len(t) for t in examples["tokens"])),
                 "tokens": int(sum(features["length"]))}
        features = features.remove_columns(["truncated_words", "empty_words"])
        return features, stats

    def collator(self, tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=pad_to_multiple_of,
                                                  label_pad_token_id=IGNORE)

    # -- predictions and scores -------------------------------------------------------------
    def decode(self, examples: Any, features: Any, outputs: Any, labels: list[str] | None) -> list[Prediction]:
        """Word-level tags (a word's is its first sub-token's) and the entity spans they make,
        with character offsets into the text (for examples given as words: the words joined by
        spaces) and a score (the mean probability of the entity's word tags)."""
        logits = np.asarray(logits_of(outputs))
        if len(logits) != len(examples) or len(features) != len(examples):
            raise FinetuneError(f"{len(logits)} predictions for {len(features)} features of "
                                f"{len(examples)} examples")
        names = labels or [str(i) for i in range(logits.shape[-1])]
        columns = examples.column_names
        texts = examples["text"] if "text" in columns else [None] * len(examples)
        offsets = examples["offsets"] if "offsets" in columns else [None] * len(examples)
        predictions = []
        for ident, tokens, text, spans, word_ids, row, cut in zip(
                examples["id"], examples["tokens"], texts, offsets, features["word_ids"], logits,
                truncated_flags(features), strict=True):
            if text is None:
                text, spans = join_words(tokens)
            probs = softmax(row)
            positions = first_positions(word_ids, len(tokens))
            tags = ["O" if at is None else names[int(probs[at].argmax())] for at in positions]
            confidence = [None if at is None else float(probs[at].max()) for at in positions]
            entities = [{"type": kind, "text": text[spans[first][0]:spans[last][1]], "start": spans[first][0],
                         "end": spans[last][1],
                         "score": round(float(np.mean([confidence[w] for w in range(first, last + 1)])), 6)}
                        for kind, first, last in entity_spans(tags)]
            prediction = {"id": ident, "entities": entities, "tokens": list(tokens), "tags": tags,
                          "unpredicted_words": sum(at is None for at in positions)}
            if cut:
                prediction["truncated"] = True  # words past data.max_length tokens are predicted O
            predictions.append(prediction)
        return predictions

    def score(self, examples: Any, predictions: list[Prediction], labels: list[str] | None) -> dict[str, Any]:
        gold = [[labels[t] for t in tags] for tags in examples["tags"]]
        metrics = metric_fns.token_classification_metrics(gold, [p["tags"] for p in predictions])
        metrics["unpredicted_words"] = int(sum(p["unpredicted_words"] for p in predictions))
        return metrics

    def write_predictions(self, examples: Any, predictions: list[Prediction], labels: list[str] | None,
                          out_dir: Path) -> list[Path]:
        from finetune.io import atomic_file

        names = examples.features["tags"].feature.names
        path = out_dir / "predictions.conll"
        with atomic_file(path, encoding="utf-8") as handle:
            for gold, prediction in zip(examples["tags"], predictions, strict=True):
                rows = zip(prediction["tokens"], gold, prediction["tags"], strict=True)
                for token, tag, pred in rows:
                    handle.write(f"{conll_token(token)} {names[tag]} {pred}\n")
                handle.write("\n")
        return [path]

    def plots(self, examples: Any, predictions: list[Prediction], metrics: dict[str, Any],
              labels: list[str] | None, out_dir: Path) -> list[Path]:
        from finetune import plots

        confusion = metrics["type_confusion"]
        path = out_dir / "type_confusion.png"
        return [plots.confusion_matrix(confusion["matrix"], confusion["labels"], path,
                                       title=f"{self.settings.task}: entity types per word")]


def continuation_ids(labels: list[str]) -> list[int]:
    """For each label id, the id a continuation sub-token gets: `B-X` -> `I-X` (when it exists)."""
    index = {label: i for i, label in enumerate(labels)}
    return [index.get("I-" + label[2:], i) if label.startswith("B-") else i for i, label in enumerate(labels)]


def align_labels(word_ids: list[int | None], tags: list[int], inside: list[int] | None) -> list[int]:
    """Sub-token labels: the word's tag on its first sub-token; -100 on specials; continuation
    sub-tokens -100, or (when `inside` maps B- ids to I- ids, i.e. label_all_tokens) the I- tag."""
    out, previous = [], None
    for word in word_ids:
        if word is None:
            out.append(IGNORE)
        elif word != previous:
            out.append(tags[word])
        else:
            out.append(IGNORE if inside is None else inside[tags[word]])
        previous = word
    return out


def missing_words(word_ids: list[int | None], n_words: int, truncated: bool) -> tuple[int, int]:
    """(words lost to truncation, words the tokenizer turned into no sub-token at all)."""
    present = {w for w in word_ids if w is not None}
    last = max(present, default=-1)
    lost = n_words - 1 - last if truncated else 0
    empty = sum(1 for w in range(last + 1 if truncated else n_words) if w not in present)
    return lost, empty


def first_positions(word_ids: list[int], n_words: int) -> list[int | None]:
    """Each word's first sub-token position (its prediction is read there); None for words without one."""
    words: list[int | None] = [None] * n_words
    previous = -1
    for position, word in enumerate(word_ids):
        if word is not None and word >= 0 and word != previous and word < n_words:
            words[word] = position
        previous = word
    return words


def entity_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of each entity in IOB2 tags; as conlleval, an `I-X` after `O`
    or after another type starts an entity."""
    spans, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, tag_type = tag.partition("-")
        if start is not None and (prefix != "I" or tag_type != kind):
            spans.append((kind, start, i - 1))
            start = None
        if prefix in ("B", "I") and start is None:
            start, kind = i, tag_type
    return spans


def join_words(tokens: list[str]) -> tuple[str, list[list[int]]]:
    """The words joined by single spaces, and each word's [start, end) in that text."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append([position, position + len(token)])
        position += len(token) + 1
    return " ".join(tokens), offsets


def conll_token(token: str) -> str:
    """A token as one CoNLL column: whitespace inside it (JSON input may have some) becomes `_`."""
    return "_".join(token.split()) or "_"
