"""`finetune-predict`: predictions from an export folder or a registered model, on the command
line's texts or an input file.

    finetune-predict exports/sentiment-minilm "What a film" "Dull and long"
    finetune-predict exports/ner-minilm --input news.txt --output entities.jsonl
    finetune-predict exports/qa-minilm --question "Who wrote it?" --context "Ann Lee wrote it in 1990."
    finetune-predict exports/mrpc-minilm "He left early." --text-pair "He did not stay long."
    finetune-predict models:/sentiment-minilm@champion --input reviews.csv --backend onnx
    finetune-predict exports/sentiment-minilm/adapter "What a film"   # a LoRA adapter on its base model

Prints one JSON line per input (or writes them to --output, with a progress bar), its `id` the
input's own or its line (row) number. An empty input is an error unless --skip-empty leaves it
out (the other ids stay). Errors are one line naming the file, row and field, with exit status 1
(2 for bad arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from finetune.data.readers import dict_reader, json_object
from finetune.errors import DataError, FinetuneError
from finetune.inference import BACKENDS
from finetune.precision import PRECISIONS

INPUT_FORMATS = (".txt", ".jsonl", ".csv")
CHUNK = 4096  # records read, predicted and written at a time: an input file of any size in bounded memory


def read_inputs(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for every input of a .txt (one text a line), .jsonl (one object a line) or
    .csv (a header row naming the fields) file, read as a stream; a record without an `id` gets
    its line (row) number. Blank lines at the end of the file are no inputs; others are empty ones."""
    suffix = path.suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise DataError(path, f"unknown input format '{suffix}' (use {', '.join(INPUT_FORMATS)})")
    if not path.is_file():
        raise DataError(path, "no such file")
    with open(path, encoding="utf-8-sig", newline="" if suffix == ".csv" else None) as handle:
        try:
            if suffix == ".csv":
                for number, row in enumerate(dict_reader(handle), start=1):
                    yield f"row {number}", {"id": str(number), **row}
                return
            blank: list[int] = []  # blank lines count as inputs only once a later line holds one
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    blank.append(number)
                    continue
                for empty in blank:
                    yield f"line {empty}", {"id": str(empty)} | ({"text": ""} if suffix == ".txt" else {})
                blank = []
                yield f"line {number}", {"id": str(number), **_record(path, line, number, suffix)}
        except UnicodeDecodeError as error:
            raise DataError(path, f"not UTF-8 text (byte {error.start})") from None


def _record(path: Path, line: str, number: int, suffix: str) -> dict[str, Any]:
    return {"text": line} if suffix == ".txt" else json_object(path, line, number)


def without_empty(inputs: Iterable[tuple[str, dict[str, Any]]], path: Path, skip: bool) -> Iterator[dict[str, Any]]:
    """The records holding any text besides their id (an empty line, `{"text": ""}` holds none);
    an empty one is an error unless `skip`."""
    for where, record in inputs:
        if any(value is not None and str(value).strip() for key, value in record.items() if key != "id"):
            yield record
        elif not skip:
            raise DataError(path, "an empty input has no prediction: fill it in, or give --skip-empty to leave "
                            "empty inputs out (the others keep their ids)", where=where)


def chunks(records: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The records CHUNK at a time."""
    chunk: list[dict[str, Any]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="finetune-predict", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an export folder (exports/<task>-<model>) or models:/<name>@<alias>")
    parser.add_argument("texts", nargs="*", help="texts to predict on (classification, NER)")
    parser.add_argument("--input", type=Path, help="a .txt, .jsonl or .csv file of inputs")
    parser.add_argument("--skip-empty", action="store_true",
                        help="leave out the empty inputs of --input (the others keep their line or row ids)")
    parser.add_argument("--text-pair", action="append", default=None, metavar="TEXT",
                        help="sentence-pair models: the second text of each text, in order (once per text)")
    parser.add_argument("--output", type=Path, help="write JSON lines here instead of printing them")
    parser.add_argument("--question", help="question answering: the question (with --context)")
    parser.add_argument("--context", help="question answering: the context the answer is taken from")
    parser.add_argument("--backend", choices=BACKENDS, default="torch")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="torch backend: auto = bf16 autocast where timing the first batch both ways finds it "
                             "faster and its outputs within the family's tolerance (cached per machine, model, shape)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    args = parser.parse_intermixed_args(argv)  # texts and --text-pair interleaved
    given = sum([bool(args.texts), args.input is not None, args.question is not None or args.context is not None])
    if given != 1:
        parser.error("give texts, or --input FILE, or --question with --context (exactly one of them)")
    if (args.question is None) != (args.context is None):
        parser.error("--question and --context go together")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.text_pair is not None and len(args.text_pair) != len(args.texts):
        parser.error(f"--text-pair: give one for each text ({len(args.texts)} texts, {len(args.text_pair)} pairs)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.output is None:
            for prediction in run(args):
                print(json.dumps(prediction, ensure_ascii=False))
            return 0
        from finetune.io import atomic_file

        written = 0
        with atomic_file(args.output, encoding="utf-8") as handle:  # no half-written file on an error
            for prediction in run(args):
                handle.write(json.dumps(prediction, ensure_ascii=False) + "\n")
                written += 1
    except FinetuneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {written} predictions to {args.output}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The predictions, chunk by chunk: an --input file is checked whole in one streaming pass
    before any weights load, then read again and predicted CHUNK records at a time."""
    from transformers.utils import logging as hf_logging

    from finetune.inference import Predictor, codec_of, resolve_source

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    if args.input is not None:
        source = str(args.input)

        def records() -> Iterator[dict[str, Any]]:
            return without_empty(read_inputs(args.input), args.input, args.skip_empty)
    else:
        if args.question is not None:
            given, source = [{"question": args.question, "context": args.context}], "--question/--context"
        else:
            given, source = [{"text": text} for text in args.texts], "the command line"
            for record, pair in zip(given, args.text_pair or [], strict=False):
                record["text_pair"] = pair

        def records() -> Iterator[dict[str, Any]]:
            return iter(given)
    folder, scratch = resolve_source(args.model)
    try:
        codec = codec_of(folder)
        if args.texts and "text" not in codec.input_fields:
            raise FinetuneError(f"{args.model} answers questions: give --question and --context")
        if args.texts and ("text_pair" in codec.input_fields) != (args.text_pair is not None):
            raise FinetuneError(f"{args.model} reads sentence pairs: give --text-pair for each text"
                                if args.text_pair is None else f"{args.model} reads one text: leave out --text-pair")
        total = 0
        for chunk in chunks(records()):  # every record checked before seconds go into loading weights
            codec.inputs(chunk, source, first=total + 1)
            total += len(chunk)
        if not total:
            raise DataError(args.input, "no inputs in the file")
        predictor = Predictor(folder, backend=args.backend, precision=args.precision, batch_size=args.batch_size,
                              threads=args.threads)
        bar = progress(total, enabled=args.output is not None)
        done = 0
        for chunk in chunks(records()):
            yield from predictor.predict_inputs(codec.inputs(chunk, source, first=done + 1))
            done += len(chunk)
            bar.update(len(chunk))
        bar.close()
    finally:
        if scratch is not None:
            scratch.cleanup()


def progress(total: int, enabled: bool) -> Any:
    """A bar over the inputs with its rate (predictions/s) and time left."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predict", unit="input", disable=not enabled, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
