"""`finetune-predict`: texts, files, backends and every bad input as one line with a non-zero exit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.predict import main


def run_cli(capsys, *args: str) -> tuple[int, list[str], str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, [line for line in out.splitlines() if line.strip()], err


def test_texts_on_the_command_line_print_probabilities(tiny_exports, capsys):
    export = tiny_exports["sarcasm"].paths.export
    code, lines, _ = run_cli(capsys, export, "totally local man finds plan", "officially city plan")
    assert code == 0 and len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first["probabilities"]) == {"not_sarcastic", "sarcastic"}
    assert first["label"] == "sarcastic" and second["label"] == "not_sarcastic"
    assert first["score"] == max(first["probabilities"].values())


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_input_files_to_an_output_file(tiny_exports, capsys, tmp_path, suffix):
    texts = ["totally new study", "officially area report", "totally nation man"]
    path = tmp_path / f"in{suffix}"
    if suffix == ".txt":
        path.write_text("\n".join(texts) + "\n\n")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    else:
        path.write_text("\ufeffid,text\n" + "".join(f"r{i},{t}\n" for i, t in enumerate(texts)))  # Excel's BOM
    out = tmp_path / "preds.jsonl"
    code, lines, err = run_cli(capsys, tiny_exports["sarcasm"].paths.export, "--input", path, "--output", out)
    assert code == 0 and lines == [] and "wrote 3 predictions" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows] == ["sarcastic", "not_sarcastic", "sarcastic"]
    if suffix != ".txt":
        assert [r["id"] for r in rows] == ["r0", "r1", "r2"]


def test_ner_prints_spans_and_qa_takes_question_and_context(tiny_exports, capsys):
    text = "patient takes aspirin 100 mg daily"
    code, [line], _ = run_cli(capsys, tiny_exports["ner"].paths.export, text)
    prediction = json.loads(line)
    assert code == 0 and prediction["tokens"] == text.split()
    for entity in prediction["entities"]:
        assert text[entity["start"]:entity["end"]] == entity["text"] and entity["type"] in {"DRUG", "DOSE"}
    context = "In the year 1901 a small boat named Bela sailed from the harbour to the island."
    code, [line], _ = run_cli(capsys, tiny_exports["qa"].paths.export, "--question", "What was the boat named?",
                              "--context", context)
    answer = json.loads(line)
    assert code == 0 and context[answer["start"]:answer["end"]] == answer["answer"]


def test_onnx_backend_gives_the_same_labels(tiny_exports, capsys):
    export = tiny_exports["sarcasm"].paths.export
    texts = ["totally local man", "officially new plan", "report finds nation"]
    _, torch_lines, _ = run_cli(capsys, export, *texts, "--precision", "fp32")
    _, onnx_lines, _ = run_cli(capsys, export, *texts, "--backend", "onnx")
    for a, b in zip(map(json.loads, torch_lines), map(json.loads, onnx_lines), strict=True):
        assert a["label"] == b["label"] and a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)


def bad_cases(tmp_path: Path, export: str) -> list[tuple[list[str], str]]:
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"text": "fine"}\n{"text": "fine"}\n{"text": ""}\n')
    broken_json = tmp_path / "broken.jsonl"
    broken_json.write_text('{"text": "fine"}\n{"text": \n')
    wrong_field = tmp_path / "wrong.csv"
    wrong_field.write_text("review\ngood\n")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    return [
        ([export, ""], "the command line, row 1, field 'text': empty text"),
        ([export, "--input", bad_jsonl], f"{bad_jsonl}, line 3: an empty input has no prediction"),
        ([export, "--input", broken_json], f"{broken_json}, line 2: malformed JSON"),
        ([export, "--input", wrong_field], f"{wrong_field}, row 1, field 'text': missing field (found: review)"),
        ([export, "--input", latin], f"{latin}: not UTF-8 text (byte 3)"),
        ([export, "--input", empty], f"{empty}: no inputs in the file"),
        ([export, "--input", tmp_path / "none.txt"], f"{tmp_path / 'none.txt'}: no such file"),
        ([export, "--input", tmp_path / "x.xml"], f"{tmp_path / 'x.xml'}: unknown input format '.xml'"),
        ([tmp_path / "nowhere", "hi"], f"{tmp_path / 'nowhere'}: no such export folder"),
        ([tmp_path, "hi"], f"{tmp_path}: not an export folder of this pipeline"),
    ]


def test_bad_inputs_are_one_line_each(tiny_exports, capsys, tmp_path):
    export = str(tiny_exports["sarcasm"].paths.export)
    for args, message in bad_cases(tmp_path, export):
        code, lines, err = run_cli(capsys, *args)
        assert code == 1 and lines == [], args
        assert err.strip() == f"error: {message}" or err.startswith(f"error: {message}"), (args, err)
        assert err.count("\n") == 1, err
    qa = str(tiny_exports["qa"].paths.export)
    code, _, err = run_cli(capsys, qa, "who?")
    assert code == 1 and "answers questions: give --question and --context" in err


def test_bad_arguments_exit_2(tiny_exports, capsys):
    export = str(tiny_exports["sarcasm"].paths.export)
    for args in ([export], [export, "hi", "--input", "x.txt"], [export, "--question", "q"],
                 [export, "hi", "--batch-size", "0"], [export, "hi", "--backend", "tf"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
    capsys.readouterr()


def test_console_script_in_a_fresh_process(tiny_exports, tmp_path):
    """The installed command: a prediction, and an error with no traceback and nothing written."""
    script = shutil.which("finetune-predict") or pytest.skip("finetune-predict is not on PATH")
    export = str(tiny_exports["sarcasm"].paths.export)
    done = subprocess.run([script, export, "totally new study"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == "sarcastic"
    out = tmp_path / "out.jsonl"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"txt": "b"}\n')
    done = subprocess.run([sys.executable, "-m", "finetune.predict", export, "--input", str(bad), "--output",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr and not out.exists()
    assert done.stderr.strip().splitlines()[-1] == f"error: {bad}, row 2, field 'text': missing field (found: txt)"


def test_sentence_pairs_from_a_file(tiny_exports, capsys, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"text": "shares rose", "text_pair": "indeed shares rose"}) + "\n"
                    + json.dumps({"text": "shares rose", "text_pair": "however shares rose"}) + "\n")
    code, lines, _ = run_cli(capsys, tiny_exports["mrpc"].paths.export, "--input", path)
    assert code == 0 and [json.loads(line)["label"] for line in lines] == ["equivalent", "not_equivalent"]
    export = tiny_exports["mrpc"].paths.export
    code, _, err = run_cli(capsys, export, "only one sentence")
    assert code == 1 and err.strip() == f"error: {export} reads sentence pairs: give --text-pair for each text"
    code, lines, _ = run_cli(capsys, export, "shares rose", "shares rose", "--text-pair", "indeed shares rose",
                             "--text-pair", "however shares rose")
    assert code == 0 and [json.loads(line)["label"] for line in lines] == ["equivalent", "not_equivalent"]
    code, _, err = run_cli(capsys, tiny_exports["sarcasm"].paths.export, "a", "--text-pair", "b")
    assert code == 1 and "reads one text: leave out --text-pair" in err
    with pytest.raises(SystemExit) as exit_info:  # a pair for each text, no fewer
        main([str(export), "a", "b", "--text-pair", "c"])
    assert exit_info.value.code == 2


def test_empty_inputs_are_an_error_or_skipped_keeping_ids(tiny_exports, capsys, tmp_path):
    export = tiny_exports["sarcasm"].paths.export
    path = tmp_path / "in.txt"
    path.write_text("totally new study\n\nofficially area report\n   \ntotally nation man\n\n\n")
    code, lines, err = run_cli(capsys, export, "--input", path)
    assert code == 1 and lines == []
    assert err == f"error: {path}, line 2: an empty input has no prediction: fill it in, or give --skip-empty " \
                  "to leave empty inputs out (the others keep their ids)\n"
    code, lines, _ = run_cli(capsys, export, "--input", path, "--skip-empty")
    rows = [json.loads(line) for line in lines]
    assert code == 0 and [r["id"] for r in rows] == ["1", "3", "5"]  # line numbers: blank lines 2 and 4 left out
    assert [r["label"] for r in rows] == ["sarcastic", "not_sarcastic", "sarcastic"]
    records = tmp_path / "in.jsonl"
    records.write_text('{"text": "totally new study"}\n{"text": " "}\n{"id": "x", "text": "totally nation man"}\n')
    code, lines, _ = run_cli(capsys, export, "--input", records, "--skip-empty")
    assert code == 0 and [json.loads(line)["id"] for line in lines] == ["1", "x"]


def test_inputs_as_long_as_documents_and_nested_too_deep(tmp_path):
    from finetune.errors import DataError
    from finetune.predict import read_inputs

    document = "word " * 60_000
    table = tmp_path / "long.csv"
    table.write_text(f'id,text\nr1,"{document}"\n')
    assert list(read_inputs(table)) == [("row 1", {"id": "r1", "text": document})]
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"text": "fine"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match=r"deep.jsonl, line 2: JSON nested deeper than Python's reader can follow"):
        list(read_inputs(deep))


def test_an_input_file_streams_in_chunks_checked_whole_first(tiny_exports, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("finetune.predict.CHUNK", 4)  # 11 inputs: three chunks
    export = tiny_exports["sarcasm"].paths.export
    texts = [f"{'totally' if i % 2 else 'officially'} local report {i}" for i in range(11)]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:10]) + '{"txt": "late"}\n')
    out = tmp_path / "out.jsonl"
    out.write_text("the previous good output\n")
    code, _, err = run_cli(capsys, export, "--input", path, "--output", out)
    assert code == 1 and err == f"error: {path}, row 11, field 'text': missing field (found: txt)\n"
    assert out.read_text() == "the previous good output\n"  # checked before anything is written
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    code, _, err = run_cli(capsys, export, "--input", path, "--output", out)
    assert code == 0 and "input/s" in err and err.rstrip().endswith("wrote 11 predictions to " + str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [str(i) for i in range(1, 12)]
    code, lines, _ = run_cli(capsys, export, *texts)
    assert [json.loads(line)["label"] for line in lines] == [r["label"] for r in rows]
