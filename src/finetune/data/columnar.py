"""The download stage's fast path: table files read by Arrow in batches, checked column by column,
split and label-encoded on integer arrays, and streamed to the saved dataset on disk.

Two passes over the sources, a batch at a time: the first checks every batch and keeps a label
code (and a split code) per row, a few bytes; the second writes each row to its split. Memory
stays flat in the rows. Labels are checked and encoded by the recipe's own `label_set` /
`encode_labels` on each distinct value, and splits carved by `finetune.data.splits.carve`, as the
row path does, so both paths save the same dataset.

Whatever this path cannot read exactly as the row readers would (another encoding, a JSON array,
Excel, `data.maxsplit`, a value it would have to interpret) or any check that fails raises
`Fallback`: the download stage then reads the files row by row, which names the line at fault.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from finetune.data.readers import QUOTING, check_encoding, dict_reader, duplicated_name, open_text
from finetune.data.splits import ROLES, SPLIT, by_split_column, carve, ranked
from finetune.errors import FinetuneError
from finetune.io import read_json, write_json

BATCH_BYTES = 1 << 22  # Arrow reads text files in blocks of this size (a batch each); its reader
# runs ahead by many blocks, so larger ones cost memory (bench/results/data_scale.md)
SPLIT_COLUMN = "_split"
DATA_FILE = "data-00000-of-00001.arrow"  # a split's one data file, named as `save_to_disk` names it
# an empty text as Python's str.strip() sees one: every character whitespace (RE2 syntax)
BLANK = r"^[\t\n\x0b\x0c\r\x1c-\x1f\x85\p{Z}]*$"


class Fallback(Exception):
    """This input is read row by row instead (the reason is for debugging only)."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a recipe's canonical fields stand in a table, and how its text files are delimited."""

    texts: dict[str, str]  # canonical field -> source column, e.g. {"text": "review"}
    label: str
    id: str | None = None
    split: str | None = None  # data.split_column
    columns: list[str] | None = None  # the names of a file without a header row
    quoting: bool | None = None
    delimiter: str | None = None
    encoding: str | None = None


@dataclasses.dataclass
class Scanned:
    """What the first pass over the sources keeps: a few bytes per row, never the rows."""

    sources: list[tuple[str | None, Path]]  # (role, file): a None role is given by the split column
    rows: list[int] = dataclasses.field(default_factory=list)  # per source
    labels: dict[Any, int] = dataclasses.field(default_factory=dict)  # distinct raw label -> code
    codes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # per row
    splits: dict[str, int] = dataclasses.field(default_factory=dict)  # distinct split value -> code
    split_codes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int32))


def scan(sources: list[tuple[str | None, Path]], fmt_of: Any, layout: Layout) -> Scanned:
    """Read and check every source once, keeping each row's label (and split value) code."""
    import pyarrow as pa

    scanned = Scanned(sources)
    codes: list[np.ndarray] = []
    split_codes: list[np.ndarray] = []
    for batch in _read(sources, fmt_of, layout, scanned.rows, check=True):
        codes.append(_codes(batch.column("label"), scanned.labels))
        if layout.split:
            split_codes.append(_codes(batch.column(SPLIT_COLUMN), scanned.splits))
    pa.default_memory_pool().release_unused()  # the reader's freed blocks, kept by the allocator
    if not codes:
        raise Fallback("no rows")
    scanned.codes = np.concatenate(codes)
    if layout.split:
        scanned.split_codes = np.concatenate(split_codes)
    return scanned


def roles(scanned: Scanned, layout: Layout, split_values: Any) -> dict[str, np.ndarray]:
    """The rows (global indices, in source order) of each role the sources or the split column give."""
    if layout.split:
        source = ", ".join(sorted({str(path) for _, path in scanned.sources}))
        values = list(scanned.splits)
        try:
            given = by_split_column([{SPLIT: value} for value in values], layout.split, split_values, source)
        except FinetuneError as error:  # its message counts the rows of each value: the row path's to say
            raise Fallback(str(error)) from None
        role_of = np.full(len(values), -1, dtype=np.int8)
        for role, rows in given.items():
            for row in rows:
                role_of[values.index(row[SPLIT])] = ROLES.index(role)
        assigned = role_of[scanned.split_codes]
        return {role: np.flatnonzero(assigned == ROLES.index(role)) for role in given}
    starts = np.cumsum([0, *scanned.rows])
    found: dict[str, np.ndarray] = {}
    for (role, _), start, end in zip(scanned.sources, starts, starts[1:], strict=False):
        if role in found:
            raise Fallback(f"two files for {role}")
        found[str(role)] = np.arange(start, end)
    return found


def split_rows(scanned: Scanned, given: dict[str, np.ndarray], split_cfg: Any, stratum: Any,
               pool: Any) -> dict[str, np.ndarray]:
    """Each role's rows once `data.split.strategy` has carved the ones the sources lack."""
    train = given.get("train", np.zeros(0, dtype=np.int64))
    strata = None
    if split_cfg.strategy == "kfold":
        strata = ranked([stratum({"label": value}) for value in scanned.labels])[scanned.codes[train]]
    plan = carve(len(train), split_cfg, set(given), strata, None, pool)
    if plan is None:
        return given
    return {**given, **{role: train[rows] for role, rows in plan.items()}}


def representatives(scanned: Scanned, rows: np.ndarray, where: str) -> list[dict[str, Any]]:
    """One example per distinct raw label among `rows`, for the recipe's label checks."""
    values = list(scanned.labels)
    present = np.flatnonzero(np.bincount(scanned.codes[rows], minlength=len(values))) if len(rows) else []
    return [{"label": values[code], "_where": where, "_code": int(code)} for code in present]


def write(scanned: Scanned, fmt_of: Any, layout: Layout, splits: dict[str, np.ndarray],
          encoded: dict[str, dict[int, Any]], features: Any, out: Path, fingerprints: dict[str, str]) -> None:
    """Every split's rows, labels encoded, in one more pass over the sources, laid out as
    `datasets.DatasetDict.save_to_disk` lays a dataset out (`out/<split>/`)."""
    import pyarrow as pa

    role = np.full(len(scanned.codes), -1, dtype=np.int8)
    for index, rows in enumerate(splits.values()):
        role[rows] = index
    schema = features.arrow_schema
    lookups = [pa.array([encoded[split].get(code, 0) for code in range(len(scanned.labels))]).cast(
        schema.field("label").type) for split in splits]
    writers = [pa.ipc.new_stream(str(_metadata(out / split, features, fingerprints[split]) / DATA_FILE), schema)
               for split in splits]
    try:
        start = 0
        for batch in _read(scanned.sources, fmt_of, layout, [], check=False):
            here = role[start:start + batch.num_rows]
            codes = pa.array(scanned.codes[start:start + batch.num_rows])
            for index, writer in enumerate(writers):
                mask = pa.array(here == index)
                if _any(mask):
                    columns = [lookups[index].take(codes.filter(mask)) if name == "label"
                               else batch.column(name).filter(mask).cast(schema.field(name).type)
                               for name in schema.names]
                    writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
            start += batch.num_rows
    except (pa.ArrowException, OSError) as error:
        raise Fallback(str(error)) from None
    finally:
        for writer in writers:
            writer.close()
    write_json(out / "dataset_dict.json", {"splits": list(splits)})


def _any(mask: Any) -> bool:
    import pyarrow.compute as pc

    return bool(pc.any(mask).as_py())


def _metadata(folder: Path, features: Any, fingerprint: str) -> Path:
    """`folder` holding datasets' own metadata files of a split whose one data file is DATA_FILE:
    an empty dataset saved writes them, then the data file joins its state."""
    import datasets
    from datasets import Dataset

    empty = Dataset.from_dict({name: [] for name in features}, features=features)
    empty._fingerprint = fingerprint
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a bar over no rows says nothing
    empty.save_to_disk(str(folder))
    if not quiet:
        datasets.enable_progress_bars()
    state = read_json(folder / "state.json")
    write_json(folder / "state.json", {**state, "_data_files": [{"filename": DATA_FILE}]})
    return folder


def _read(sources: list[tuple[str | None, Path]], fmt_of: Any, layout: Layout, rows: list[int],
          check: bool) -> Iterator[Any]:
    """Every source's batches in canonical columns; each source's row count appended to `rows`."""
    import pyarrow as pa

    schema = None
    try:
        for _, path in sources:
            count = 0
            for batch in _canonical(_batches(path, fmt_of(path), layout), layout, check):
                if schema is None:
                    schema = batch.schema
                elif batch.schema != schema:
                    raise Fallback(f"{path}: column types change between batches")
                count += batch.num_rows
                yield batch
            rows.append(count)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
        raise Fallback(str(error)) from None


def _batches(path: Path, fmt: str, layout: Layout) -> Iterator[Any]:
    """The file's record batches with at least the layout's columns, read by Arrow."""
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(str(path))
        yield from parquet.iter_batches(batch_size=65_536, columns=_needed(layout, parquet.schema_arrow.names))
        return
    if check_encoding(layout.encoding) != "utf-8":
        raise Fallback("not UTF-8")
    stream = pa.input_stream(str(path), compression="detect")
    if fmt in QUOTING:
        yield from _delimited(path, stream, fmt, layout)
    elif fmt in ("jsonl", "json"):
        with open_text(path) as handle:
            if fmt == "json" and handle.read(1 << 16).lstrip().startswith("["):
                raise Fallback("a JSON array")
        import pyarrow.json as pajson

        options = pajson.ReadOptions(block_size=BATCH_BYTES)
        yield from pajson.open_json(stream, read_options=options)
    else:
        raise Fallback(f"format {fmt}")


def _delimited(path: Path, stream: Any, fmt: str, layout: Layout) -> Iterator[Any]:
    import pyarrow.csv as pacsv

    from finetune.checks import CHARACTER_NAMES

    separator = CHARACTER_NAMES.get(layout.delimiter or "", layout.delimiter) or ("\t" if fmt == "tsv" else ",")
    quoted = QUOTING[fmt] if layout.quoting is None else layout.quoting
    header = layout.columns
    if not header:
        with open_text(path) as handle:
            header = dict_reader(handle, delimiter=separator,
                                 quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE).fieldnames
        if not header:
            raise Fallback("no header")
        duplicated_name(header, "the header", path, "line 1")
    needed = _needed(layout, header)
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(column_names=layout.columns or None, block_size=BATCH_BYTES),
        parse_options=pacsv.ParseOptions(delimiter=separator, quote_char='"' if quoted else False,
                                          newlines_in_values=quoted),
        convert_options=pacsv.ConvertOptions(include_columns=needed, strings_can_be_null=False,
                                             column_types={name: "string" for name in needed}))
    yield from reader


def _needed(layout: Layout, present: list[str]) -> list[str]:
    wanted = [*layout.texts.values(), layout.label, *([layout.split] if layout.split else [])]
    missing = [name for name in wanted if name not in present]
    if missing:
        raise Fallback(f"missing columns {missing}")
    return wanted + ([layout.id] if layout.id and layout.id in present and layout.id not in wanted else [])


def _canonical(batches: Iterator[Any], layout: Layout, check: bool) -> Iterator[Any]:
    """Each batch as the columns text(, text_pair), label, id(, _split), checked (`check`) as the
    row readers check."""
    import pyarrow as pa

    start = 0
    for batch in batches:
        names = batch.schema.names
        if any(name not in names for name in [*layout.texts.values(), layout.label, layout.split] if name):
            raise Fallback("a column is missing")
        if check:
            _check(batch, layout)
        columns = {field: batch.column(source) for field, source in layout.texts.items()}
        columns["label"] = batch.column(layout.label)
        columns["id"] = _ids(batch.column(layout.id) if layout.id and layout.id in names else None,
                             start, batch.num_rows)
        if layout.split:
            columns[SPLIT_COLUMN] = batch.column(layout.split)
        start += batch.num_rows
        yield pa.RecordBatch.from_pydict(columns)


def _check(batch: Any, layout: Layout) -> None:
    """Fallback where a row reader would refuse a row: a text that is missing, empty or holds a
    NUL byte, a label that is missing or empty, invalid UTF-8 (Arrow's JSON reader keeps it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for column in batch.columns:
        if pa.types.is_string(column.type):
            column.validate(full=True)
    for source in layout.texts.values():
        column = batch.column(source)
        if not pa.types.is_string(column.type) or column.null_count:
            raise Fallback(f"{source}: not text in every row")
        data = column.buffers()[2]
        if data is not None and data.to_pybytes().find(b"\x00") >= 0:
            raise Fallback(f"{source}: a NUL byte")
        if pc.any(pc.match_substring_regex(column, BLANK)).as_py():
            raise Fallback(f"{source}: an empty text")
    label = batch.column(layout.label)
    if label.null_count or not (pa.types.is_string(label.type) or pa.types.is_integer(label.type)
                                or pa.types.is_floating(label.type)):
        raise Fallback("labels: empty or of another kind")
    if pa.types.is_string(label.type) and pc.any(pc.match_substring_regex(label, BLANK)).as_py():
        raise Fallback("labels: an empty one")
    if layout.split:
        split = batch.column(layout.split)
        if split.null_count or not pa.types.is_string(split.type):
            raise Fallback("split column: not text in every row")


def _ids(column: Any, start: int, count: int) -> Any:
    """The id column as text; a missing id is the row's position in its file (as the row path numbers)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = pa.array(np.arange(start, start + count)).cast(pa.string())
    if column is None:
        return numbers
    if not (pa.types.is_string(column.type) or pa.types.is_integer(column.type)):
        raise Fallback("ids: of another kind")
    return pc.if_else(pc.is_null(column), numbers, pc.cast(column, pa.string()))


def _codes(column: Any, known: dict[Any, int]) -> np.ndarray:
    """Each value's code in `known` (new distinct values are added), as an integer array."""
    encoded = column.dictionary_encode()
    lookup = np.asarray([known.setdefault(value, len(known)) for value in encoded.dictionary.to_pylist()],
                        dtype=np.int32)
    return lookup[encoded.indices.to_numpy(zero_copy_only=False)] if len(lookup) else np.zeros(0, dtype=np.int32)


def require_rows(found: dict[str, np.ndarray]) -> None:
    """A split without rows is the row path's error to name."""
    if any(len(rows) == 0 for rows in found.values()):
        raise Fallback("an empty split")

