"""Readers for tagged corpora: CoNLL column files and JSON/JSONL rows of `tokens`/`tags` lists.

CoNLL files as they really occur: one token a line, columns separated by spaces or by tabs
(2 columns `TOKEN TAG` as in WNUT, 4 columns `WORD POS CHUNK NER` as in CoNLL-2003), a blank line
between sentences, `-DOCSTART-` lines skipped, any column as the tag (`tag_column`, default
the last), optionally gzip-compressed. A line holding a tab is split on tabs (so a token may hold
a space); any other line is split on runs of spaces.

Tags are IOB (`O`, `B-TYPE`, `I-TYPE`) and always come out as IOB2 (every entity starts with
`B-`). `tag_scheme` says what the input is:

- `iob2`: strict. An `I-X` that starts an entity (after `O` or after another type) is
  malformed IOB2. With `on_bad_tag: fail` (the default) it is a DataError naming the file and
  line; with `on_bad_tag: repair` it becomes `B-X` (what conlleval/seqeval assume anyway).
- `iob1`: the original CoNLL-2003 scheme (an entity starts with `I-`; `B-` only separates two
  adjacent entities of one type); converted to IOB2.
- `auto`: per file, IOB1 if any entity starts with `I-`, else IOB2; converted either way.

A tag that is no IOB tag at all (`B-` without a type, `X-PER`, `PER`) is always a DataError:
there is no safe repair for it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.data.readers import NUL_BYTE, open_text, read_records, require_field
from finetune.errors import DataError, FinetuneError

log = logging.getLogger("finetune")

TAG_SCHEMES = ("iob2", "iob1", "auto")
ON_BAD_TAG = ("fail", "repair")
DOCSTART = "-DOCSTART-"
_TAG = re.compile(r"^([BI])-(\S.*)$")


@dataclass
class Sentence:
    """One tagged sentence and where it stands in its file (for error messages)."""

    tokens: list[str]
    tags: list[str]
    file: str
    where: str                      # the sentence's place: "line 12" or "row 3"
    lines: list[int] | None = None  # the line of every token (CoNLL files)
    split: str | None = None        # the row's value of `data.split_column` (table files)

    def token_where(self, index: int) -> str:
        """Where token `index` stands: its line, or the row and the token's position."""
        if self.lines is not None:
            return f"line {self.lines[index]}"
        return f"{self.where}, token {index + 1}"

    def __str__(self) -> str:
        return f"{self.file}, {self.where}"


def parse_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) of an IOB tag: ("O", "") or ("B"|"I", TYPE); ValueError when it is none."""
    if tag == "O":
        return "O", ""
    match = _TAG.match(tag)
    if not match:
        raise ValueError(f"tag {tag!r} is not an IOB tag (O, B-TYPE or I-TYPE)")
    return match.group(1), match.group(2)


def entity_type(tag: str) -> str:
    """The entity type of a tag, `O` for outside (a word-level confusion class)."""
    prefix, kind = parse_tag(tag)
    return "O" if prefix == "O" else kind


def starts_with_inside(tags: Sequence[str]) -> list[int]:
    """Indices of `I-X` tags that start an entity (after `O`, another type, or at the start)."""
    found = []
    previous = ""
    for i, tag in enumerate(tags):
        prefix, kind = parse_tag(tag)
        if prefix == "I" and previous != kind:
            found.append(i)
        previous = kind if prefix != "O" else ""
    return found


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 -> IOB2: an `I-X` that starts an entity becomes `B-X`; valid IOB2 comes back unchanged."""
    out = list(tags)
    for i in starts_with_inside(tags):
        out[i] = "B-" + parse_tag(tags[i])[1]
    return out


def check_scheme_options(tag_scheme: str, on_bad_tag: str) -> None:
    if tag_scheme not in TAG_SCHEMES:
        raise FinetuneError(f"data.tag_scheme={tag_scheme!r} is not one of {', '.join(TAG_SCHEMES)}")
    if on_bad_tag not in ON_BAD_TAG:
        raise FinetuneError(f"data.on_bad_tag={on_bad_tag!r} is not one of {', '.join(ON_BAD_TAG)}")


def normalize(sentences: list[Sentence], file: str | Path, tag_scheme: str = "iob2",
              on_bad_tag: str = "fail") -> list[Sentence]:
    """Validate every tag and convert the file's sentences to IOB2 in place (see module doc)."""
    check_scheme_options(tag_scheme, on_bad_tag)
    for sentence in sentences:
        for i, tag in enumerate(sentence.tags):
            try:
                parse_tag(tag)
            except ValueError as error:
                raise DataError(file, str(error), where=sentence.token_where(i)) from None
    scheme = tag_scheme
    if scheme == "auto":
        scheme = "iob1" if any(starts_with_inside(s.tags) for s in sentences) else "iob2"
        log.info("%s: tags read as %s", file, scheme.upper())
    repaired = 0
    for sentence in sentences:
        starts = starts_with_inside(sentence.tags)
        if not starts:
            continue
        if scheme == "iob2" and on_bad_tag == "fail":
            i = starts[0]
            before = f"after {sentence.tags[i - 1]!r}" if i else "at the start of a sentence"
            raise DataError(file, f"tag {sentence.tags[i]!r} {before} starts an entity with I-, which IOB2 "
                            "does not allow; for IOB1 input set data.tag_scheme=iob1 (or auto), to turn "
                            "it into B- set data.on_bad_tag=repair", where=sentence.token_where(i))
        repaired += len(starts) if scheme == "iob2" else 0
        sentence.tags = iob1_to_iob2(sentence.tags)
    if repaired:
        log.warning("%s: repaired %d I- tags that started an entity into B- (data.on_bad_tag=repair)",
                    file, repaired)
    return sentences


def read_conll(path: str | Path, *, tag_column: int = -1, token_column: int = 0, tag_scheme: str = "iob2",
               on_bad_tag: str = "fail", encoding: str | None = None) -> list[Sentence]:
    """Sentences of a CoNLL column file, tags in IOB2; DataError naming file and line on bad input."""
    check_scheme_options(tag_scheme, on_bad_tag)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    width: int | None = None
    width_line = 0

    def flush() -> None:
        if tokens:
            sentences.append(Sentence(list(tokens), list(tags), str(path), f"line {lines[0]}", list(lines)))
            tokens.clear()
            tags.clear()
            lines.clear()

    with open_text(path, encoding) as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.rstrip("\r\n")
            if "\x00" in text:
                raise DataError(path, NUL_BYTE, where=f"line {number}")
            if not text.strip():
                flush()
                continue
            fields = [f.strip() for f in text.split("\t")] if "\t" in text else text.split()
            if fields[0] == DOCSTART:
                flush()
                continue
            if width is None:
                width, width_line = len(fields), number
                if width < 2:
                    raise DataError(path, f"expected at least 2 columns (TOKEN ... TAG), found {width}: "
                                    f"{text[:60]!r}", where=f"line {number}")
                for name, column in (("data.tag_column", tag_column), ("data.token_column", token_column)):
                    if not -width <= column < width:
                        raise DataError(path, f"{name}={column} but lines have {width} columns",
                                        where=f"line {number}")
            elif len(fields) != width:
                raise DataError(path, f"expected {width} columns (as on line {width_line}), "
                                f"found {len(fields)}: {text[:60]!r}", where=f"line {number}")
            token, tag = fields[token_column], fields[tag_column]
            if not token or not tag:
                raise DataError(path, f"empty token or tag: {text[:60]!r}", where=f"line {number}")
            tokens.append(token)
            tags.append(tag)
            lines.append(number)
    flush()
    return normalize(sentences, path, tag_scheme, on_bad_tag)


def read_tagged_records(path: str | Path, fmt: str, *, tokens_field: str = "tokens", tags_field: str = "tags",
                        tag_names: Sequence[str] | None = None, tag_scheme: str = "iob2",
                        on_bad_tag: str = "fail", split_column: str | None = None,
                        encoding: str | None = None) -> list[Sentence]:
    """Sentences of a JSON/JSONL (or any table) file whose rows hold `tokens` and `tags` lists.

    Integer tags are looked up in `tag_names` (the configured `task.labels`).
    """
    sentences = []
    for where, row in read_records(path, fmt, encoding=encoding):
        split = str(require_field(path, where, row, split_column)) if split_column is not None else None
        tokens = require_field(path, where, row, tokens_field)
        tags = require_field(path, where, row, tags_field)
        for name, value in ((tokens_field, tokens), (tags_field, tags)):
            if not isinstance(value, list) or not value:
                raise DataError(path, f"expected a non-empty list, found {_short(value)}", where=where,
                                field=name)
        if len(tokens) != len(tags):
            raise DataError(path, f"{len(tokens)} tokens but {len(tags)} tags", where=where, field=tags_field)
        if not all(isinstance(t, str) and t.strip() for t in tokens):
            raise DataError(path, "every token must be a non-empty string", where=where, field=tokens_field)
        names = _tag_names(path, where, tags, tag_names, tags_field)
        sentences.append(Sentence([str(t) for t in tokens], names, str(path), where, split=split))
    return normalize(sentences, path, tag_scheme, on_bad_tag)


def _tag_names(path: str | Path, where: str, tags: Iterable[Any], names: Sequence[str] | None,
               field: str) -> list[str]:
    out = []
    for tag in tags:
        if isinstance(tag, str):
            out.append(tag)
        elif isinstance(tag, int) and not isinstance(tag, bool) and names and 0 <= tag < len(names):
            out.append(str(names[tag]))
        else:
            need = "" if names else " (integer tags need task.labels)"
            raise DataError(path, f"tag {tag!r} is not a tag name{need}", where=where, field=field)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
