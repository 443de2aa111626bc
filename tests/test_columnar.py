"""The download stage's Arrow path: the same saved dataset as the row path, whichever shape the
table has; whatever it cannot read the same way goes row by row."""

from __future__ import annotations

import csv
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_from_disk

from finetune.config import compose
from finetune.data import columnar
from finetune.pipeline.download import download, download_rows
from finetune.tasks import recipe
from tests.conftest import REPO

TEXTS = ["a fine film", "dull", "we loved it", "too long", "great cast", "awful plot", "warm, funny", "cold",
         "the best", "the worst", "moving", "flat"]


def rows(n: int = 60) -> list[dict]:
    return [{"id": f"r{i}", "text": f"{TEXTS[i % len(TEXTS)]} {i}", "label": "pos" if i % 3 else "neg",
             "split": ["train", "train", "train", "dev", "test"][i % 5]} for i in range(n)]


def write_csv(path, table, delimiter=",", header=True):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
        writer = csv.writer(handle, delimiter=delimiter, quoting=quoting, lineterminator="\n")
        if header:
            writer.writerow(list(table[0]))
        writer.writerows([list(row.values()) for row in table])
    return path


def shape(tmp_path, name):
    """(overrides) for one table shape a user brings."""
    data = rows()
    if name == "csv-split-column":
        return [f"data.files.train={write_csv(tmp_path / 'all.csv', data)}", "data.split_column=split",
                "data.split.strategy=given"]
    if name == "tsv-gz-files":
        train = write_csv(tmp_path / "train.tsv.gz", data[:40], "\t")
        test = write_csv(tmp_path / "test.tsv.gz", data[40:], "\t")
        return [f"data.files.train={train}", f"data.files.test={test}", "data.split.strategy=random_fraction"]
    if name == "headerless-kfold":
        path = write_csv(tmp_path / "plain.csv", [{"t": r["text"], "l": r["label"]} for r in data], header=False)
        return [f"data.files.train={path}", "data.columns=[text,label]", "data.id_column=null",
                "data.split.strategy=kfold", "data.split.fold=1", "data.split.folds=3",
                "data.split.test_fraction=null", "data.eval_split=validation"]
    if name == "jsonl-int-labels":
        path = tmp_path / "rows.jsonl"
        path.write_text("".join(json.dumps({"text": r["text"], "label": int(r["label"] == "pos"), "id": i,
                                            "split": r["split"]}) + "\n" for i, r in enumerate(data)))
        return [f"data.files.train={path}", "data.split_column=split", "task.labels=null", "data.split.strategy=given"]
    if name == "parquet-fractions":
        path = tmp_path / "rows.parquet"
        pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "split"} for r in data]), path)
        return [f"data.files.train={path}", "data.split.strategy=random_fraction", "data.split.test_fraction=0.2",
                "data.max_train_samples=30"]
    raise AssertionError(name)


SHAPES = ["csv-split-column", "tsv-gz-files", "headerless-kfold", "jsonl-int-labels", "parquet-fractions"]


@pytest.mark.parametrize("name", SHAPES)
def test_both_paths_save_the_same_dataset(tmp_path, monkeypatch, name):
    overrides = ["task=sentiment", "model=tiny", "data.split_column=null", "data.id_column=id", *shape(tmp_path, name)]
    fast = compose(REPO, overrides, workdir=tmp_path / "fast")
    assert recipe(fast).layout() is not None
    with monkeypatch.context() as patch:  # the Arrow path reads it all: no fallback to the rows
        patch.setattr("finetune.pipeline.download.download_rows", lambda *_: pytest.fail("fell back"))
        fast_manifest = download(fast)
    rows_cfg = compose(REPO, overrides, workdir=tmp_path / "rows")
    row_manifest = download_rows(rows_cfg, recipe(rows_cfg))
    assert fast_manifest == row_manifest
    by_columns, by_rows = load_from_disk(f"{fast.paths.raw}/dataset"), load_from_disk(f"{rows_cfg.paths.raw}/dataset")
    assert list(by_columns) == list(by_rows)
    for split in by_rows:
        assert by_columns[split].features == by_rows[split].features
        assert by_columns[split].to_list() == by_rows[split].to_list(), split
        assert by_columns[split]._fingerprint == by_rows[split]._fingerprint


def test_a_bad_row_is_named_by_the_row_path(tmp_path, capsys):
    data = rows()
    data[17]["text"] = " "
    path = write_csv(tmp_path / "all.csv", data)
    cfg = compose(REPO, ["task=sentiment", "model=tiny", f"data.files.train={path}", "data.split_column=split"],
                  workdir=tmp_path)
    with pytest.raises(Exception, match=r"all.csv, line 19, field 'text': empty text"):
        download(cfg)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data" / "raw").iterdir())


def test_what_arrow_cannot_read_the_same_way_falls_back(tmp_path):
    layout = columnar.Layout({"text": "text"}, "label", encoding="latin-1")
    path = write_csv(tmp_path / "x.csv", rows(5))
    with pytest.raises(columnar.Fallback):
        columnar.scan([("train", path)], lambda _: "csv", layout)
    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"text": "a", "label": "pos"}]))
    with pytest.raises(columnar.Fallback):
        columnar.scan([("train", array)], lambda _: "json", columnar.Layout({"text": "text"}, "label"))
