"""Table readers: formats, gzip, and errors that name the file, line and field."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from finetune.data.readers import detect_format, read_records, require_field
from finetune.errors import DataError


def rows_of(path: Path, fmt: str) -> list[dict]:
    return [row for _, row in read_records(path, fmt)]


def test_detect_format_from_extension_ignores_gz():
    assert detect_format("a/imdb.csv.gz") == "csv"
    assert detect_format("x.tsv") == "tsv"
    assert detect_format("x.jsonl") == "jsonl"
    assert detect_format("train.txt") == "conll"
    assert detect_format("x.json", "jsonl") == "jsonl"
    with pytest.raises(DataError, match="extension"):
        detect_format("noext")


def test_csv_with_quoted_commas_and_gzip(tmp_path):
    text = 'text,label\n"good, really good",pos\n"bad",neg\n'
    plain = tmp_path / "a.csv"
    plain.write_text(text)
    packed = tmp_path / "a.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    expected = [{"text": "good, really good", "label": "pos"}, {"text": "bad", "label": "neg"}]
    assert rows_of(plain, "csv") == expected
    assert rows_of(packed, "csv") == expected


def test_tsv_and_parquet(tmp_path):
    tsv = tmp_path / "a.tsv"
    tsv.write_text("text\tlabel\nhello\t1\n")
    assert rows_of(tsv, "tsv") == [{"text": "hello", "label": "1"}]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["x", "y"], "label": [0, 1]}), tmp_path / "a.parquet")
    assert rows_of(tmp_path / "a.parquet", "parquet") == [{"text": "x", "label": 0}, {"text": "y", "label": 1}]


def test_json_array_and_json_lines_saved_as_json(tmp_path):
    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"text": "a", "label": 0}]))
    lines = tmp_path / "lines.json"
    lines.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n')
    assert rows_of(array, "json") == [{"text": "a", "label": 0}]
    assert [r["text"] for r in rows_of(lines, "json")] == ["a", "b"]


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": 0}\n\n{"text": "b", "label": \n')
    with pytest.raises(DataError) as error:
        rows_of(path, "jsonl")
    assert str(path) in str(error.value) and "line 3" in str(error.value) and "malformed JSON" in str(error.value)


def test_csv_row_with_wrong_column_count(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nfine,pos\nshort\n")
    with pytest.raises(DataError, match=r"line 3: expected 2 columns"):
        rows_of(path, "csv")


def test_missing_column_lists_the_columns_found(tmp_path):
    with pytest.raises(DataError) as error:
        require_field("f.csv", "line 2", {"review": "x", "label": 1}, "text")
    message = str(error.value)
    assert "f.csv, line 2, field 'text'" in message and "review, label" in message


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        rows_of(tmp_path / "nope.csv", "csv")


def test_byte_order_mark_is_dropped_in_every_text_format(tmp_path):
    bom = "\ufeff"
    (tmp_path / "a.csv").write_text(f"{bom}text,label\nhi,pos\n", encoding="utf-8")
    (tmp_path / "a.tsv").write_text(f"{bom}text\tlabel\nhi\tpos\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(f'{bom}{{"text": "hi", "label": "pos"}}\n', encoding="utf-8")
    (tmp_path / "b.json").write_text(f'{bom}[{{"text": "hi", "label": "pos"}}]', encoding="utf-8")
    (tmp_path / "c.csv.gz").write_bytes(gzip.compress(f"{bom}text,label\nhi,pos\n".encode()))
    for name, fmt in (("a.csv", "csv"), ("a.tsv", "tsv"), ("a.jsonl", "jsonl"), ("b.json", "json"),
                      ("c.csv.gz", "csv")):
        assert rows_of(tmp_path / name, fmt) == [{"text": "hi", "label": "pos"}], name


def test_tsv_reads_unbalanced_quotes_as_text_and_quoting_is_an_option(tmp_path):
    """GLUE and GoEmotions strings hold lone `"`: a quoting TSV reader would merge rows silently."""
    tsv = tmp_path / "a.tsv"
    tsv.write_text('text\tlabel\n" The bank said\t1\nit rose "\t0\nplain\t1\n')
    assert [r["text"] for r in rows_of(tsv, "tsv")] == ['" The bank said', 'it rose "', "plain"]
    quoted = tmp_path / "q.tsv"
    quoted.write_text('text\tlabel\n"a\ttab"\t1\n')
    assert [r["text"] for _, r in read_records(quoted, "tsv", quoting=True)] == ["a\ttab"]
    csv_file = tmp_path / "a.csv"
    csv_file.write_text('text,label\nsay "hi",1\n')
    assert [r["text"] for _, r in read_records(csv_file, "csv", quoting=False)] == ['say "hi"']


def test_headerless_file_with_column_names(tmp_path):
    tsv = tmp_path / "a.tsv"
    tsv.write_text("so happy\t17,1\tid1\nwhat\t27\tid2\nbroken\n")
    records = read_records(tsv, "tsv", columns=["text", "labels", "id"])
    assert next(records) == ("line 1", {"text": "so happy", "labels": "17,1", "id": "id1"})
    assert next(records)[0] == "line 2"
    with pytest.raises(DataError, match=r"a.tsv, line 3: expected 3 columns \['text', 'labels', 'id'\], found 1"):
        next(records)


def test_any_delimiter_and_label_text_lines(tmp_path):
    semicolons = tmp_path / "a.csv"
    semicolons.write_text('text;label\n"a; b";pos\n')
    assert [row for _, row in read_records(semicolons, "csv", delimiter=";")] == [{"text": "a; b", "label": "pos"}]
    lines = tmp_path / "train.label"
    lines.write_text("DESC:manner How did serfdom develop in Russia ?\n\nNUM:date When was Ike born ?\n")
    rows = list(read_records(lines, "csv", delimiter="space", maxsplit=1, columns=["label", "text"]))
    assert rows == [("line 1", {"label": "DESC:manner", "text": "How did serfdom develop in Russia ?"}),
                    ("line 3", {"label": "NUM:date", "text": "When was Ike born ?"})]
    tabs = tmp_path / "b.tsv"
    tabs.write_text("label\ttext\n1\ta\tb\n")  # one split: the rest of the line is the text, tabs and all
    assert rows_of_split(tabs, maxsplit=1) == [{"label": "1", "text": "a\tb"}]


def rows_of_split(path: Path, **options) -> list[dict]:
    return [row for _, row in read_records(path, "tsv", **options)]


def test_excel_sheets_by_name_with_row_numbers(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "notes"
    book.active.append(["ignored"])
    sheet = book.create_sheet("reviews")
    for row in (["text", "label", None], ["good film", "pos"], [None, None], ["bad film", 0]):
        sheet.append(row)
    path = tmp_path / "book.xlsx"
    book.save(path)
    assert detect_format(path) == "xlsx"
    assert list(read_records(path, "xlsx", sheet="reviews")) == [("row 2", {"text": "good film", "label": "pos"}),
                                                                 ("row 4", {"text": "bad film", "label": 0})]
    with pytest.raises(DataError, match=r"data.sheet: no sheet 'other' \(sheets: notes, reviews\)"):
        list(read_records(path, "xlsx", sheet="other"))


@pytest.mark.parametrize(("name", "content", "message"), [
    ("nul.csv", b"text,label\nok,1\nb\x00ad,0\n", "nul.csv, line 3, field 'text': a NUL byte"),
    ("nul.jsonl", b'{"text": "b\\u0000ad"}\n', "nul.jsonl, line 1, field 'text': a NUL byte"),
    ("dup.csv", b"text,label,text\na,1,b\n", "line 1: the header: column 'text' appears twice (columns 1 and 3)"),
    ("dup.jsonl", b'{"text": "a"}\n{"text": "a", "label": 1, "label": 0}\n', "dup.jsonl, line 2: key 'label' appears"),
])
def test_silent_corruption_is_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        rows_of(path, detect_format(path))
    assert message in str(error.value)


def test_a_field_as_long_as_a_document_is_read_whole(tmp_path):
    """The csv module refuses fields over 128 KiB unless told: a long document is normal data."""
    document = "word " * 60_000
    for name, text in (("long.csv", f'text,label\n"{document}",pos\nshort,neg\n'),
                       ("long.tsv", f"text\tlabel\n{document}\tpos\nshort\tneg\n")):
        path = tmp_path / name
        path.write_text(text)
        assert [row["text"] for row in rows_of(path, detect_format(path))] == [document, "short"]
