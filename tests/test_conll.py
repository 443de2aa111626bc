"""The tagged-corpus readers: CoNLL columns as they occur, IOB1 -> IOB2, located errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from finetune.errors import DataError, FinetuneError
from finetune.tasks.token_classification.conll import iob1_to_iob2, read_conll, read_tagged_records
from tests.conftest import needs_shared


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


FOUR_COLUMNS = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def test_four_space_separated_columns_with_docstart(tmp_path: Path) -> None:
    sentences = read_conll(write(tmp_path / "a.txt", FOUR_COLUMNS))
    assert [s.tokens for s in sentences] == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"],
                                             ["BRUSSELS"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert sentences[1].lines == [8, 9]
    assert sentences[2].where == "line 13"


def test_tag_column_picks_another_column(tmp_path: Path) -> None:
    sentences = read_conll(write(tmp_path / "a.txt", FOUR_COLUMNS), tag_column=2)
    assert sentences[0].tags == ["B-NP", "B-VP", "B-NP", "I-NP"]


def test_two_tab_separated_columns_gzip_and_crlf(tmp_path: Path) -> None:
    text = "aspirin\tB-DRUG\r\n100\tB-DOSE\r\nmg\tI-DOSE\r\n\r\n\r\nNew York\tB-LOC\r\nthen\tO\r\n"
    path = tmp_path / "wnut.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write(text)
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [["aspirin", "100", "mg"], ["New York", "then"]]
    assert [s.tags for s in sentences] == [["B-DRUG", "B-DOSE", "I-DOSE"], ["B-LOC", "O"]]


def test_iob1_to_iob2_rules() -> None:
    # an entity starts with I- in IOB1; B- only separates two adjacent entities of one type
    assert iob1_to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]) == \
        ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    assert iob1_to_iob2(["B-PER", "I-PER", "O", "B-LOC"]) == ["B-PER", "I-PER", "O", "B-LOC"]  # IOB2 kept


def test_iob1_file_converts_and_auto_detects(tmp_path: Path) -> None:
    iob1 = write(tmp_path / "iob1.txt", "EU I-ORG\nrejects O\nPeter I-PER\nBlackburn I-PER\nJohn B-PER\n")
    iob2 = write(tmp_path / "iob2.txt", "EU B-ORG\nrejects O\nPeter B-PER\nBlackburn I-PER\nJohn B-PER\n")
    expected = ["B-ORG", "O", "B-PER", "I-PER", "B-PER"]
    assert read_conll(iob1, tag_scheme="iob1")[0].tags == expected
    assert read_conll(iob1, tag_scheme="auto")[0].tags == expected
    assert read_conll(iob2, tag_scheme="auto")[0].tags == expected
    assert read_conll(iob2, tag_scheme="iob2")[0].tags == expected


@pytest.mark.parametrize(("iob2_name", "iob1_name", "sentences"),
                         [("train.txt", "eng.train", 14041), ("valid.txt", "eng.testa", 3250),
                          ("test.txt", "eng.testb", 3453)])
def test_conll2003_iob1_originals_convert_to_the_iob2_files(iob2_name: str, iob1_name: str,
                                                            sentences: int) -> None:
    original = needs_shared("conll2003", "original_iob1", iob1_name)  # skips when the mirror is absent
    converted = read_conll(original, tag_scheme="iob1")
    reference = read_conll(needs_shared("conll2003", iob2_name), tag_scheme="iob2")
    assert len(reference) == sentences
    assert [s.tokens for s in converted] == [s.tokens for s in reference]
    changed = sum(a != b for c, r in zip(converted, reference, strict=True)
                  for a, b in zip(c.tags, r.tags, strict=True))
    assert changed == 0
    # the converter had work to do: the originals are not valid IOB2
    with pytest.raises(DataError, match="starts an entity with I-"):
        read_conll(original, tag_scheme="iob2")


def test_wrong_column_count_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nGerman JJ B-MISC\n")
    with pytest.raises(DataError) as error:
        read_conll(path)
    message = str(error.value)
    assert str(path) in message and "line 4" in message and "expected 4 columns" in message


def test_single_column_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 2: expected at least 2 columns"):
        read_conll(write(tmp_path / "one.txt", "\nEU\nrejects\n"))


@pytest.mark.parametrize("tag", ["B-", "X-PER", "PER", "b-PER", "I-"])
def test_tag_outside_the_scheme(tmp_path: Path, tag: str) -> None:
    path = write(tmp_path / "bad.txt", f"EU B-ORG\n\nPeter O\nBlackburn {tag}\n")
    with pytest.raises(DataError) as error:
        read_conll(path, on_bad_tag="repair", tag_scheme="auto")  # no scheme or repair accepts these
    assert f"{path}, line 4" in str(error.value) and repr(tag) in str(error.value)


def test_inside_after_outside_in_iob2_fails_or_is_repaired(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", "EU B-ORG\nrejects O\n\nthe O\nBritish I-MISC\nlamb O\nbeef I-ORG\n")
    with pytest.raises(DataError) as error:
        read_conll(path)
    assert f"{path}, line 5" in str(error.value) and "I-MISC" in str(error.value)
    sentences = read_conll(path, on_bad_tag="repair")
    assert sentences[1].tags == ["O", "B-MISC", "O", "B-ORG"]


def test_inside_after_another_type_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", "New B-LOC\nYork I-ORG\n")
    with pytest.raises(DataError, match=r"line 2: tag 'I-ORG' after 'B-LOC'"):
        read_conll(path)


def test_bad_options_and_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "EU B-ORG\n")
    with pytest.raises(FinetuneError, match="tag_scheme"):
        read_conll(path, tag_scheme="bioes")
    with pytest.raises(DataError, match="tag_column=3 but lines have 2 columns"):
        read_conll(path, tag_column=3)


def test_json_lines_rows(tmp_path: Path) -> None:
    rows = [{"tokens": ["aspirin", "100", "mg"], "tags": ["B-DRUG", "B-DOSE", "I-DOSE"]},
            {"tokens": ["take", "it"], "tags": [0, 0]}]
    path = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    sentences = read_tagged_records(path, "jsonl", tag_names=["O", "B-DRUG"])
    assert [s.tags for s in sentences] == [["B-DRUG", "B-DOSE", "I-DOSE"], ["O", "O"]]
    empty_tags = json.dumps({"tokens": ["a"], "tags": []})
    bad = write(tmp_path / "b.jsonl", json.dumps(rows[0]) + "\n" + empty_tags + "\n")
    with pytest.raises(DataError, match=r"line 2, field 'tags': expected a non-empty list"):
        read_tagged_records(bad, "jsonl")
    iob = write(tmp_path / "c.jsonl", json.dumps({"tokens": ["a", "b"], "tags": ["O", "I-X"]}) + "\n")
    with pytest.raises(DataError, match=r"c.jsonl, line 1, token 2: tag 'I-X' after 'O'"):
        read_tagged_records(iob, "jsonl")
