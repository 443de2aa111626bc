"""Readers for table-shaped files: each row comes with where it stands in its file.

Formats: csv, tsv (or any single-character delimiter, `LABEL text` lines included: a delimiter
split at most `maxsplit` times), json (an array of objects, or JSON Lines), jsonl, parquet, xlsx
(an Excel workbook's first sheet, or the one named); the text formats may be gzip-compressed
(`.gz`). Errors name the file and the line (or row) at fault.

What would pass through silently corrupted is refused: a NUL byte in a field (a binary file, or
UTF-16 read as UTF-8), a column name that appears twice in a header (or a JSON object).

Text is UTF-8 unless `data.encoding` says otherwise; a leading UTF-8 byte-order mark (what Excel
writes, and GLUE's MRPC dev.tsv has) is dropped. Undecodable bytes, a truncated gzip stream or a
corrupt Parquet file are a DataError naming the file and, for text, the line.

Quoting is a per-format default: on for CSV, off for TSV, whose fields in the wild (GLUE,
GoEmotions) hold unbalanced `"` characters that a quoting reader would merge rows over.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from finetune.checks import CHARACTER_NAMES
from finetune.errors import DataError, FinetuneError

TABLE_FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "xlsx")
NUL_BYTE = ("a NUL byte in the text: a binary file, or one in another encoding (UTF-16?) read as UTF-8; "
            "set data.encoding")
TOO_DEEP = "JSON nested deeper than Python's reader can follow (a broken or generated file?)"
QUOTING = {"csv": True, "tsv": False}  # `"`-quoted fields by default
Record = tuple[str, dict[str, Any]]  # (where in the file, e.g. "line 12", row)


def detect_format(path: str | Path, given: str | None = None) -> str:
    """The file's format: `given` if set, else from the extension (ignoring `.gz`)."""
    if given:
        return given
    suffixes = [s.lstrip(".").lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == "gz":
        suffixes.pop()
    if not suffixes:
        raise DataError(path, "cannot tell the format without an extension; set data.format")
    if suffixes[-1] == "xls":
        raise DataError(path, "the old Excel format (.xls) is not read: save the sheet as .xlsx or CSV")
    ext = {"txt": "conll", "conll": "conll", "iob": "conll", "bio": "conll"}.get(suffixes[-1], suffixes[-1])
    return ext


def check_encoding(encoding: str | None) -> str:
    """The codec `encoding` names (default UTF-8), or a one-line error naming data.encoding."""
    try:
        return codecs.lookup(encoding or "utf-8").name
    except LookupError:
        raise FinetuneError(f"data.encoding: unknown text encoding '{encoding}' "
                            "(e.g. utf-8, latin-1, cp1252, utf-16)") from None


def open_raw(path: str | Path) -> Any:
    """The file's bytes, gunzipped if it ends in `.gz`; a missing file or a folder is a DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a folder, not a file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


@contextlib.contextmanager
def open_text(path: str | Path, encoding: str | None = None) -> Iterator[TextIO]:
    """The file as text; decoding and gzip errors inside the block become one-line DataErrors."""
    codec = check_encoding(encoding)
    with open_raw(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig" if codec == "utf-8" else codec,
                                                 newline="") as handle:
        try:
            yield handle
        except UnicodeDecodeError as error:
            raise undecodable(path, codec, error) from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise DataError(path, f"not a complete gzip file ({error}): truncated, corrupt or not "
                            "gzip-compressed; download or compress it again") from None


def undecodable(path: str | Path, codec: str, error: UnicodeDecodeError) -> DataError:
    """Where the first byte that `codec` cannot decode stands, found by decoding line by line."""
    with open_raw(path) as raw:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode(codec)
            except UnicodeDecodeError as bad:
                byte = line[bad.start:bad.start + 1].hex()
                return DataError(path, f"not valid {codec} (byte 0x{byte} at column {bad.start + 1}); "
                                 "set data.encoding to the file's encoding (e.g. latin-1, cp1252)",
                                 where=f"line {number}")
    return DataError(path, f"not valid {codec} ({error.reason}); set data.encoding to the file's encoding")


def read_records(path: str | Path, fmt: str, *, quoting: bool | None = None, columns: list[str] | None = None,
                 encoding: str | None = None, delimiter: str | None = None, maxsplit: int | None = None,
                 sheet: str | None = None) -> Iterator[Record]:
    """Yield (where, row) for every row of a table file.

    Delimited text (csv, tsv) only: `quoting` (None: the format's default, QUOTING), `delimiter`
    (None: the format's), `maxsplit` (split each line at most this many times, without quoting:
    `LABEL text` lines) and `columns`, the names of a file without a header row (None: the first
    line is the header; also an Excel sheet's). `encoding` (None: UTF-8) is that of text formats,
    `sheet` the Excel sheet (None: the first).
    """
    if fmt not in TABLE_FORMATS:
        raise DataError(path, f"format '{fmt}' is not a table format ({', '.join(TABLE_FORMATS)}); set data.format")
    if columns:
        duplicated_name(columns, "data.columns")
    if fmt in QUOTING:
        separator = CHARACTER_NAMES.get(delimiter or "", delimiter) or ("\t" if fmt == "tsv" else ",")
        if maxsplit is not None:
            rows = _read_split_lines(path, separator, maxsplit, columns, encoding)
        else:
            quoted = QUOTING[fmt] if quoting is None else quoting
            rows = _read_delimited(path, separator, quoted, columns, encoding)
    elif fmt == "parquet":
        rows = _read_parquet(path)
    elif fmt == "xlsx":
        rows = _read_xlsx(path, columns, sheet)
    else:
        rows = (_read_json if fmt == "json" else _read_jsonl)(path, encoding)
    for where, row in rows:
        for name, value in row.items():
            if isinstance(value, str) and "\x00" in value:
                raise DataError(path, NUL_BYTE, where=where, field=name)
        yield where, row


def duplicated_name(names: list[Any], source: str, path: str | Path | None = None, where: str | None = None) -> None:
    """A DataError (a FinetuneError for a config key) when a column name appears twice."""
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            problem = f"column '{name}' appears twice (columns {seen[name]} and {position}): rename one"
            if path is None:
                raise FinetuneError(f"{source}: {problem}")
            raise DataError(path, f"{source}: {problem}", where=where)
        seen[name] = position


def _read_delimited(path: str | Path, delimiter: str, quoted: bool = True,
                    columns: list[str] | None = None, encoding: str | None = None) -> Iterator[Record]:
    with open_text(path, encoding) as handle:
        reader = dict_reader(handle, fieldnames=columns, delimiter=delimiter,
                             quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
        if not reader.fieldnames:
            raise DataError(path, "empty file: no header row", where="line 1")
        if not columns:
            duplicated_name(reader.fieldnames, "the header", path, "line 1")
        width = len(reader.fieldnames)
        line = 0 if columns else 1
        for row in reader:
            start, line = line + 1, reader.line_num
            if None in row or (len(row) == width and any(v is None for v in row.values())):
                found = width + len(row.get(None, [])) if None in row else sum(v is not None for v in row.values())
                raise DataError(path, f"expected {width} columns {reader.fieldnames}, found {found}"
                                + (MAXSPLIT_HINT if found > width else ""), where=f"line {start}")
            yield f"line {start}", row


def dict_reader(lines: Any, **options: Any) -> csv.DictReader:
    """csv.DictReader without the csv module's 128 KiB cap on a field: a field may be a whole document."""
    csv.field_size_limit(2**31 - 1)
    return csv.DictReader(lines, **options)


MAXSPLIT_HINT = " (the delimiter inside the last field? data.maxsplit splits each line at most that many times)"


def _read_split_lines(path: str | Path, delimiter: str, maxsplit: int, columns: list[str] | None = None,
                      encoding: str | None = None) -> Iterator[Record]:
    """Lines split at the first `maxsplit` delimiters (no quoting); blank lines are skipped."""
    header = list(columns) if columns else None
    with open_text(path, encoding) as handle:
        for number, text in enumerate(handle, start=1):
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            fields = text.split(delimiter, maxsplit)
            if header is None:
                duplicated_name(fields, "the header", path, f"line {number}")
                header = fields
                continue
            if len(fields) != len(header):
                raise DataError(path, f"expected {len(header)} fields {header} split at {delimiter!r}, "
                                f"found {len(fields)}", where=f"line {number}")
            yield f"line {number}", dict(zip(header, fields, strict=True))
    if header is None:
        raise DataError(path, "empty file: no header row", where="line 1")


def _read_jsonl(path: str | Path, encoding: str | None = None) -> Iterator[Record]:
    with open_text(path, encoding) as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            yield f"line {number}", json_object(path, text.rstrip("\r\n"), number)


def json_object(path: str | Path, text: str, number: int) -> dict[str, Any]:
    """Line `number` of a JSON Lines file as an object, or one line naming what is wrong with it."""
    try:
        row = json.loads(text, object_pairs_hook=_unique_keys)
    except DuplicateKey as error:
        raise DataError(path, f"key '{error}' appears twice in one object", where=f"line {number}") from None
    except RecursionError:
        raise DataError(path, TOO_DEEP, where=f"line {number}") from None
    except json.JSONDecodeError as error:
        raise DataError(path, f"malformed JSON ({error.msg} at column {error.colno})", where=f"line {number}") from None
    if not isinstance(row, dict):
        raise DataError(path, f"expected a JSON object, found {type(row).__name__}", where=f"line {number}")
    return row


class DuplicateKey(ValueError):
    """A JSON object holding one key twice (json keeps the last silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    row = dict(pairs)
    if len(row) < len(pairs):
        raise DuplicateKey(next(key for i, (key, _) in enumerate(pairs) if key in dict(pairs[:i])))
    return row


def load_json(path: str | Path, encoding: str | None = None) -> Any:
    """A whole JSON document, else a DataError naming the line and column where it breaks."""
    with open_text(path, encoding) as handle:
        try:
            return json.load(handle)
        except RecursionError:
            raise DataError(path, TOO_DEEP) from None
        except json.JSONDecodeError as error:
            raise DataError(path, f"malformed JSON ({error.msg})",
                            where=f"line {error.lineno} column {error.colno}") from None


def _read_json(path: str | Path, encoding: str | None = None) -> Iterator[Record]:
    with open_text(path, encoding) as handle:
        head = handle.read(1 << 16).lstrip()
    if not head.startswith("["):  # JSON Lines saved as .json (e.g. the sarcasm headlines file)
        yield from _read_jsonl(path, encoding)
        return
    rows = load_json(path, encoding)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError(path, f"expected a JSON object, found {type(row).__name__}", row=number)
        yield f"row {number}", row


def _read_parquet(path: str | Path) -> Iterator[Record]:
    import pyarrow
    import pyarrow.parquet as pq

    open_raw(path).close()  # a missing file or a folder: the same errors as the text formats
    try:
        table = pq.read_table(path)
    except (pyarrow.ArrowException, OSError) as error:
        raise DataError(path, f"not a valid Parquet file ({str(error).splitlines()[0][:160]})") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield f"row {number}", row


def _read_xlsx(path: str | Path, columns: list[str] | None = None, sheet: str | None = None) -> Iterator[Record]:
    """An Excel sheet's rows (`row N` as Excel numbers them); fully empty rows are skipped."""
    import zipfile

    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    open_raw(path).close()
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as error:
        raise DataError(path, f"not a valid .xlsx workbook ({str(error).splitlines()[0][:160]})") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise DataError(path, f"data.sheet: no sheet '{sheet}' (sheets: {', '.join(book.sheetnames)})")
        rows = (book[sheet] if sheet is not None else book.worksheets[0]).iter_rows(values_only=True)
        header, first = (list(columns), 1) if columns else (None, 2)
        if header is None:
            cells = list(next(rows, ()))
            while cells and cells[-1] is None:
                cells.pop()
            if not cells:
                raise DataError(path, "empty sheet: no header row", where="row 1")
            if None in cells:
                raise DataError(path, f"empty header cell in column {cells.index(None) + 1}", where="row 1")
            header = [str(cell) for cell in cells]
            duplicated_name(header, "the header", path, "row 1")
        width = len(header)
        for number, values in enumerate(rows, start=first):
            values = list(values)
            if all(value is None or value == "" for value in values):
                continue
            if any(value is not None for value in values[width:]):
                raise DataError(path, f"expected {width} columns {header}, found a value in column "
                                f"{max(i for i, v in enumerate(values) if v is not None) + 1}", where=f"row {number}")
            values += [None] * (width - len(values))
            yield f"row {number}", dict(zip(header, values[:width], strict=True))
    finally:
        book.close()


def require_field(path: str | Path, where: str, row: dict[str, Any], field: str) -> Any:
    """row[field], or a DataError naming the file, row and the columns that do exist."""
    if field not in row:
        raise DataError(path, f"missing column (found: {', '.join(map(str, row)) or 'none'}); "
                        "set the column names in config", where=where, field=field)
    return row[field]
