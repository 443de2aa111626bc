"""Encoding and decoding of token classification (NER): one IOB2 tag per word.

The model sees sub-tokens: the first sub-token of a word carries the word's label, special tokens
and (by default) the other sub-tokens carry -100. Predictions are word-level: a word's prediction
is its first sub-token's, and words the model never saw (cut by `data.max_length`, or words the
tokenizer turns into nothing) are predicted `O` and counted, never silently dropped.

With `data.long_inputs: windows` a long text is cut into overlapping windows instead (`data.doc_stride`
tokens shared), each trained on its own words' tags, and each word is predicted from the window
where it sits farthest from an edge.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from finetune.checks import boolean, integer, number, one_of
from finetune.errors import DataError, FinetuneError
from finetune.tasks import interface
from finetune.tasks.interface import (
    LONG_INPUTS,
    WINDOW_OF,
    Codec,
    Examples,
    Prediction,
    check_stride,
    column_total,
    cut_windows,
    logits_of,
    map_batches,
    multi_window,
    require_text,
    setting,
    softmax,
    special_edges,
    truncated_flags,
    windows_of,
)
from finetune.tasks.token_classification.conll import iob1_to_iob2

IGNORE = -100  # label id the loss ignores (specials, continuation sub-tokens)
# Words of free text, close to CoNLL-2003's tokenization: abbreviations (U.S.), words with inner
# hyphens or apostrophes, numbers with separators, and each other punctuation mark on its own.
WORD = re.compile(r"(?:[^\W\d_]\.){2,}|\w+(?:[-'’.,]\w+)*|[^\w\s]")


@dataclasses.dataclass(frozen=True)
class Settings(interface.Settings):
    # continuation sub-tokens get the word's tag (B- turned into I-) instead of -100
    label_all_tokens: bool = setting("task.label_all_tokens", boolean())
    # divides the tag logits before the softmax; the evaluate stage fits it on validation
    temperature: float = setting("task.temperature", number(0, low_open=True), default=1.0)
    long_inputs: str = setting("data.long_inputs", one_of(*LONG_INPUTS), default="truncate")
    doc_stride: int = setting("data.doc_stride", integer(0), default=64)  # windows: tokens neighbours share


class TagCodec(Codec):
    family = "token_classification"
    auto_model = "AutoModelForTokenClassification"
    pipeline_tag = "token-classification"
    peft_task_type = "TOKEN_CLS"
    token_outputs = True
    Settings = Settings
    settings: Settings

    def inputs(self, records: list[dict[str, Any]], source: str, first: int = 1) -> Examples:
        """Free text (`text`, split into words here) or a pre-split word list (`tokens`)."""
        examples = []
        for row, record in enumerate(records, start=first):
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

    def tokenize(self, examples: Any, tokenizer: Any, num_proc: int | str = 1) -> tuple[Any, dict[str, Any]]:
        if not getattr(tokenizer, "is_fast", False):
            raise FinetuneError("token classification needs a fast tokenizer (word_ids())")
        settings = self.settings
        max_length, windows = int(settings.max_length), settings.long_inputs == "windows"
        if settings.long_inputs == "head_tail":
            raise FinetuneError("data.long_inputs=head_tail leaves the middle words untagged; token classification "
                                "reads long texts with windows (or truncate)")
        if windows:
            check_stride(settings.doc_stride, max_length, tokenizer)
            edges = special_edges(tokenizer)
        label_all = bool(settings.label_all_tokens)
        inside = continuation_ids(self.labels or [])
        gold = "tags" in examples.column_names

        def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=not windows,
                                max_length=max_length)
            out: dict[str, list] = {key: [] for key in [*encoded, "labels", "word_ids", WINDOW_OF, "truncated",
                                                        "truncated_words", "empty_words"]}
            for i, words in enumerate(batch["tokens"]):
                word_ids = [-1 if w is None else w for w in encoded.word_ids(i)]
                truncated = bool(encoded.encodings[i].overflowing)
                n_lost, n_empty = missing_words(encoded.word_ids(i), len(words), truncated)
                row = {key: encoded[key][i] for key in encoded} | {"word_ids": word_ids,
                                                                   "position": list(range(len(word_ids)))}
                cut = windows and len(word_ids) > max_length
                for n, window in enumerate(cut_windows(row, edges, max_length, settings.doc_stride) if cut else [row]):
                    window["word_ids"] = _unread_continuations(window.pop("position"), window["word_ids"], word_ids)
                    if gold:
                        out["labels"].append(align_labels([None if w < 0 else w for w in window["word_ids"]],
                                                          batch["tags"][i], inside if label_all else None))
                    for key, values in window.items():
                        out[key].append(values)
                    out[WINDOW_OF].append(indices[i])
                    out["truncated"].append(truncated)
                    out["truncated_words"].append(n_lost if n == 0 else 0)  # counted once per example
                    out["empty_words"].append(n_empty if n == 0 else 0)
            out["length"] = [len(ids) for ids in out["input_ids"]]
            if not gold:
                del out["labels"]
            if not windows:
                del out[WINDOW_OF]
            return out

        features = map_batches(examples, encode, examples.column_names, num_proc, with_indices=True)
        stats = {"examples": len(examples), "features": len(features),
                 "truncated": column_total(features, "truncated"),
                 "truncated_words": column_total(features, "truncated_words"),
                 "untokenizable_words": column_total(features, "empty_words"),
                 "words": int(sum(len(t) for t in examples["tokens"])),
                 "tokens": column_total(features, "length")}
        if windows:
            stats["multi_window_examples"] = multi_window(features)
        features = features.remove_columns(["truncated_words", "empty_words"])
        return features, stats

    def decode(self, examples: Any, features: Any, outputs: Any) -> list[Prediction]:
        """Word-level tags (a word's is its first sub-token's) and the entity spans they make,
        with character offsets into the text (for examples given as words: the words joined by
        spaces) and a score (the mean probability of the entity's word tags)."""
        logits = np.asarray(logits_of(outputs))
        if len(logits) != len(features):
            raise FinetuneError(f"{len(logits)} model outputs for {len(features)} features")
        names = self.labels or [str(i) for i in range(logits.shape[-1])]
        columns = examples.column_names
        texts = examples["text"] if "text" in columns else [None] * len(examples)
        offsets = examples["offsets"] if "offsets" in columns else [None] * len(examples)
        word_ids, cut = features["word_ids"], truncated_flags(features)
        predictions = []
        for ident, tokens, text, spans, owned in zip(examples["id"], examples["tokens"], texts, offsets,
                                                     windows_of(examples, features), strict=True):
            if text is None:
                text, spans = join_words(tokens)
            probs = {f: softmax(logits[f] / self.settings.temperature) for f in owned}
            read = read_positions({f: word_ids[f] for f in owned}, len(tokens))
            # an `I-X` argmax that starts an entity is written `B-X`: valid IOB2, the same entities
            tags = iob1_to_iob2(["O" if at is None else names[int(probs[at[0]][at[1]].argmax())] for at in read])
            confidence = [None if at is None else float(probs[at[0]][at[1]].max()) for at in read]
            entities = [{"type": kind, "text": text[spans[first][0]:spans[last][1]], "start": spans[first][0],
                         "end": spans[last][1],
                         "score": round(float(np.mean([confidence[w] for w in range(first, last + 1)])), 6)}
                        for kind, first, last in entity_spans(tags)]
            prediction = {"id": ident, "entities": entities, "tokens": list(tokens), "tags": tags,
                          "unpredicted_words": sum(at is None for at in read)}
            if len(owned) > 1:
                prediction["windows"] = len(owned)
            if any(cut[f] for f in owned):
                prediction["truncated"] = True  # words past data.max_length tokens are predicted O
            predictions.append(prediction)
        return predictions


def _unread_continuations(positions: list[int], window: list[int], full: list[int]) -> list[int]:
    """A window's word ids with the sub-tokens of a word begun before the window set to -1: the
    word's first sub-token (where its tag is trained and read) lies in an earlier window."""
    begun = next((full[p] for p in positions if full[p] >= 0), -1)
    start = positions[window.index(begun)] if begun >= 0 else 0
    if begun < 0 or start == 0 or full[start - 1] != begun:
        return window
    return [-1 if w == begun else w for w in window]


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


def read_positions(windows: dict[int, list[int]], n_words: int) -> list[tuple[int, int] | None]:
    """Where each word's tag is read: (feature, position of its first sub-token) in the window where
    that sub-token sits farthest from an edge (the most context on both sides; the first such
    window on a tie); None for a word no window holds."""
    best: list[tuple[int, int] | None] = [None] * n_words
    margin = [-1] * n_words
    for feature, word_ids in windows.items():
        for word, position in enumerate(first_positions(word_ids, n_words)):
            if position is not None and min(position, len(word_ids) - 1 - position) > margin[word]:
                best[word], margin[word] = (feature, position), min(position, len(word_ids) - 1 - position)
    return best


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
