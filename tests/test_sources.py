"""Source resolution: user files, then the mirror, then the Hub; one line when none serves."""

from __future__ import annotations

import subprocess
import sys

import pytest

from finetune.config import compose
from finetune.data.sources import load_examples
from finetune.errors import FinetuneError
from finetune.tasks import recipe
from tests.conftest import REPO, needs_shared


def test_user_files_win_over_the_mirror(tmp_path):
    train = tmp_path / "t.csv"
    train.write_text("text,label\nfine,pos\n")
    cfg = compose(REPO, ["task=sentiment", "model=tiny", f"data.files.train={train}", "data.split_column=null",
                         "data.id_column=null"], workdir=tmp_path)
    splits, manifest = load_examples(cfg, recipe(cfg))
    assert manifest["source"] == "files" and list(splits) == ["train"]
    assert manifest["files"][0]["path"] == str(train.resolve())


def test_mirror_layout_is_read_in_its_original_format(tmp_path):
    needs_shared("sarcasm", "Sarcasm_Headlines_Dataset.json")
    cfg = compose(REPO, ["task=sarcasm", "model=tiny"], workdir=tmp_path)
    splits, manifest = load_examples(cfg, recipe(cfg))
    assert manifest["source"] == "mirror" and len(splits["train"]) == 26709
    assert manifest["files"][0]["sha256"] == "a0ef80faee87588f307aceb44eba562bc5c6b6f655c96c91677ae2fcc554ac51"


def test_hub_code_path_with_a_local_dataset_folder(tmp_path):
    # datasets.load_dataset on a local folder runs the same code as for a Hub id, offline.
    folder = tmp_path / "hubby"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\ngood,1\nbad,0\n")
    (folder / "test.csv").write_text("text,label\nok,1\n")
    cfg = compose(REPO, ["task=sentiment", "model=tiny", f"data.dir={tmp_path / 'none'}",
                         f"data.hub.path={folder}"], workdir=tmp_path)
    splits, manifest = load_examples(cfg, recipe(cfg))
    assert manifest["source"] == "hub" and sorted(splits) == ["test", "train"]
    assert [e["text"] for e in splits["train"]] == ["good", "bad"]


def test_no_source_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cfg = compose(REPO, ["task=sentiment", "model=tiny", f"data.dir={tmp_path / 'nowhere'}"], workdir=tmp_path)
    with pytest.raises(FinetuneError) as error:
        load_examples(cfg, recipe(cfg))
    message = str(error.value)
    assert "no data source for task 'sentiment'" in message
    assert "imdb/imdb.csv.gz not found (set FINETUNE_DATA_DIR or data.dir)" in message
    assert "could not load 'stanfordnlp/imdb' from the Hugging Face Hub: offline (HF_HUB_OFFLINE=1)" in message
    assert "\n" not in message


def test_stage_script_prints_bad_input_as_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"headline": "fine", "is_sarcastic": 0}\n{"headline": "oops", "is_sarcastic": 0\n')
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "download.py"), "task=sarcasm", f"data.files.train={bad}",
         "data.split.first_n=1", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path, env={**__import__("os").environ, "FINETUNE_ROOT": str(REPO)})
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {bad}, line 2: malformed JSON (Expecting ',' delimiter at column 39)"
    raw = REPO / "data" / "raw"
    assert not raw.exists() or not [p for p in raw.iterdir() if p.name.startswith(".")], "no half-written output"


def test_one_file_given_once_holds_every_split(tmp_path):
    table = tmp_path / "all.csv"
    table.write_text("text,label,set\na,pos,TRAIN\nb,neg,TRIAL\nc,neg,TRAIN\nd,pos,TEST\n")
    cfg = compose(REPO, ["task=sentiment", "model=tiny", f"data.files.train={table}", "data.split_column=set",
                         "data.id_column=null", "data.split_values={train: TRAIN, validation: TRIAL, test: TEST}"],
                  workdir=tmp_path)
    splits, _ = load_examples(cfg, recipe(cfg))
    assert {role: [e["text"] for e in rows] for role, rows in splits.items()} == {
        "train": ["a", "c"], "validation": ["b"], "test": ["d"]}
    assert [e["id"] for e in splits["train"]] == ["0", "2"]  # row positions in the one file


def test_an_excel_workbook_with_a_split_column_of_its_own_values(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    for row in (["Sentence", "Quality", "Set"], ["a b", 1, "Train"], ["c d", 0, "Train"], ["e f", 1, "Dev"],
                ["g h", 0, "Test"]):
        book.active.append(row)
    book.save(tmp_path / "pairs.xlsx")
    cfg = compose(REPO, ["task=sentiment", "model=tiny", f"data.files.train={tmp_path / 'pairs.xlsx'}",
                         "data.split_column=Set", "data.id_column=null", "data.text_column=Sentence",
                         "data.label_column=Quality", "data.mirror={}"], workdir=tmp_path)
    splits, manifest = load_examples(cfg, recipe(cfg))
    assert {role: [(e["text"], e["label"]) for e in rows] for role, rows in splits.items()} == {
        "train": [("a b", 1), ("c d", 0)], "validation": [("e f", 1)], "test": [("g h", 0)]}
    assert [entry["split"] for entry in manifest["files"]] == ["train"]
