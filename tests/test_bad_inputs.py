"""Every bad input a user can give ends in one line naming the file and line (or the config key),
a non-zero exit, no traceback, nothing written and the previous good output intact.

Each case runs a stage as a user would (a real process) against a workspace holding a good
output of every stage (sarcasm on a small user file, the tiny model).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import headline_rows, run_stage, tracking_to, user_corpus, write_jsonl, write_tiny_squad

PAIR = "sarcasm-tiny"
TABLE = os.environ.get("FINETUNE_BAD_INPUT_TABLE")
OUTPUTS = ("data", "models", "metrics", "predictions", "plots", "exports")


@dataclass
class Case:
    name: str
    script: str
    args: list[str]
    expected: str                                        # a fragment of the one error line
    setup: Callable[[Path], list[str]] | None = None     # writes bad files; returns more args
    damage: Callable[[Path], None] | None = None         # breaks a stage output in the workspace copy
    base: list[str] = field(default_factory=list)


def good_args(work: Path) -> list[str]:
    return ["task=sarcasm", "model=tiny", f"data.files.train={work / 'headlines.jsonl'}", "data.split.first_n=120",
            "data.max_length=32", "train.num_train_epochs=1", "train.per_device_train_batch_size=16",
            "train.disable_tqdm=true", f"paths.inputs={work}"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good output of every stage, built by the stage functions (~15 s)."""
    from finetune.config import compose
    from finetune.pipeline.download import download
    from finetune.pipeline.evaluate import evaluate
    from finetune.pipeline.tokenize import tokenize
    from finetune.pipeline.train import train
    from tests.conftest import REPO

    work = tmp_path_factory.mktemp("good")
    write_jsonl(work / "headlines.jsonl", headline_rows(160))
    with tracking_to(f"sqlite:///{work / 'mlflow.db'}"):
        cfg = compose(REPO, [a for a in good_args(work) if not a.startswith("paths.")], workdir=work)
        for stage in (download, tokenize, train, evaluate):
            stage(cfg)
    return work


def snapshot(work: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file of the stage outputs, hidden leftovers included."""
    return {str(p.relative_to(work)): (p.stat().st_size, p.stat().st_mtime_ns)
            for top in OUTPUTS if (work / top).exists() for p in sorted((work / top).rglob("*")) if p.is_file()}


# -- bad files --------------------------------------------------------------------------------
def rows_file(name: str, text: str | bytes) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        path = work / "bad" / name
        path.parent.mkdir(exist_ok=True)
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
        return [f"data.files.train={path}", "data.split.first_n=2"]
    return setup


def folder(work: Path, name: str) -> Path:
    (work / "bad" / name).mkdir(parents=True)
    return work / "bad" / name


def gz_file(name: str, text: bytes, cut: int | None = None) -> Callable[[Path], list[str]]:
    data = gzip.compress(text)
    return rows_file(name, data[:cut] if cut else data)


def headlines(n: int = 40) -> str:
    return "".join(json.dumps(row) + "\n" for row in headline_rows(n))


def headline_csv(n: int = 40) -> str:
    return "headline,is_sarcastic\n" + "".join(f"{r['headline']},{r['is_sarcastic']}\n" for r in headline_rows(n))


LATIN1 = headline_csv(10).encode().replace(b"report", b"r\xe9port", 1)


def ner_file(text: bytes) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        path = work / "bad" / "ner.conll"
        path.parent.mkdir(exist_ok=True)
        user_corpus(path, 8, 0)
        path.write_bytes(path.read_bytes().replace(b"patient", text, 1))
        return [f"data.files.train={path}"]
    return setup


def squad_file(edit: Callable[[dict], None] | None = None, raw: bytes | None = None) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        path = work / "bad" / "squad.json"
        path.parent.mkdir(exist_ok=True)
        write_tiny_squad(path, 3, "b")
        if edit:
            data = json.loads(path.read_text())
            edit(data)
            path.write_text(json.dumps(data))
        if raw is not None:
            path.write_bytes(path.read_bytes().replace(b"harbour", raw, 1))
        return [f"data.files.train={path}"]
    return setup


CSV = ["data.format=null"]
GZIP = "not a complete gzip file"
NER = ["task=ner", "data.files.validation=null", "data.files.test=null"]
QA = ["task=qa", "data.files.validation=null"]

READERS = [
    Case("csv non-utf8", "download.py", CSV, "line 2: not valid utf-8", rows_file("latin1.csv", LATIN1)),
    Case("jsonl non-utf8", "download.py", [], "line 1: not valid utf-8",
         rows_file("latin1.jsonl", headlines(3).encode().replace(b"officially", b"offici\xe0lly", 1))),
    Case("tsv non-utf8", "download.py", CSV, "not valid utf-8",
         rows_file("latin1.tsv", LATIN1.replace(b",", b"\t"))),
    Case("conll non-utf8", "download.py", NER, "line 1: not valid utf-8", ner_file(b"pati\xe9nt")),
    Case("squad non-utf8", "download.py", QA, "not valid utf-8", squad_file(raw=b"harb\xf6ur")),
    Case("bad data.encoding", "download.py", ["data.encoding=klingon"], "data.encoding"),
    Case("truncated csv.gz", "download.py", CSV, GZIP, gz_file("cut.csv.gz", headline_csv(200).encode(), 300)),
    Case("truncated jsonl.gz", "download.py", [], GZIP, gz_file("cut.jsonl.gz", headlines(200).encode(), 400)),
    Case("plain text named .gz", "download.py", [], GZIP, rows_file("plain.jsonl.gz", headlines(5))),
    Case("malformed jsonl line", "download.py", [], "line 3: malformed JSON",
         rows_file("broken.jsonl", headlines(2) + '{"headline": "x", \n' + headlines(2))),
    Case("jsonl line not an object", "download.py", [], "line 2: expected a JSON object",
         rows_file("list.jsonl", headlines(1) + "[1, 2]\n")),
    Case("json array malformed", "download.py", [], "malformed JSON", rows_file("broken.json", '[{"a": 1},')),
    Case("json array of numbers", "download.py", CSV, "row 1: expected a JSON object", rows_file("nums.json", "[1,2]")),
    Case("csv missing label column", "download.py", [*CSV, "data.label_column=label"], "field 'label': missing column",
         rows_file("nolabel.csv", headline_csv())),
    Case("csv missing text column", "download.py", [*CSV, "data.text_column=text"], "field 'text': missing column",
         rows_file("notext.csv", headline_csv())),
    Case("csv ragged row", "download.py", CSV, "line 3: expected 2 columns",
         rows_file("ragged.csv", "headline,is_sarcastic\na,1\nb,0,extra\n")),
    Case("empty csv", "download.py", CSV, "empty file", rows_file("empty.csv", "")),
    Case("header-only csv", "download.py", CSV, "no examples", rows_file("header.csv", "headline,is_sarcastic\n")),
    Case("empty jsonl", "download.py", [], "no examples", rows_file("empty.jsonl", "")),
    Case("empty text", "download.py", [], "field 'headline': empty text",
         rows_file("blank.jsonl", headlines(2) + '{"headline": " ", "is_sarcastic": 0}\n')),
    Case("null label", "download.py", [], "line 3, field 'is_sarcastic': empty label",
         rows_file("nolabel.jsonl", headlines(2) + '{"headline": "x y", "is_sarcastic": null}\n')),
    Case("label outside task.labels", "download.py", ["task.labels=[0,1]"], "label 7 is not in the label set",
         rows_file("seven.jsonl", headlines(4) + '{"headline": "x y", "is_sarcastic": 7}\n')),
    Case("text is a number", "download.py", [], "field 'headline': expected text, got int",
         rows_file("number.jsonl", headlines(2) + '{"headline": 5, "is_sarcastic": 0}\n')),
    Case("unknown extension", "download.py", CSV, "format 'ods'", rows_file("sheet.ods", "x")),
    Case("no extension", "download.py", CSV, "set data.format", rows_file("noext", headlines(3))),
    Case("bad data.format", "download.py", ["data.format=excel"], "data.format"),
    Case("file not found", "download.py", ["data.files.train=/nonexistent/headlines.jsonl"], "file not found"),
    Case("a folder as file", "download.py", [], "is a folder",
         lambda work: [f"data.files.train={folder(work, 'dir.jsonl')}"]),
    Case("corrupt parquet", "download.py", CSV, "not a valid Parquet file", rows_file("bad.parquet", b"PAR1garbage")),
    Case("binary bytes as csv", "download.py", CSV, "not valid utf-8",
         rows_file("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")),
    Case("split_column missing", "download.py", ["data.split_column=fold"], "field 'fold': missing column",
         rows_file("nosplit.jsonl", headlines(4))),
    Case("conll one column", "download.py", NER, "line 1", ner_file(b"patient\tO\textra\tcols")),
    Case("squad without data", "download.py", QA, "'data'", squad_file(lambda d: d.pop("data"))),
    Case("squad answer_start off", "download.py", [*QA, "data.on_bad_answer=fail"], "answer_start",
         squad_file(lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start=5))),
    Case("squad not json", "download.py", QA, "malformed JSON", squad_file(raw=b'"harbour')),
    Case("single class, labels from data", "download.py", ["task.labels=null"], "one label",
         rows_file("oneclass.jsonl", "".join(json.dumps({"headline": f"a b {i}", "is_sarcastic": 1}) + "\n"
                                             for i in range(30)))),
]

CONFIG = [
    Case("negative epochs", "train.py", ["train.num_train_epochs=-1"], "train.num_train_epochs"),
    Case("zero epochs", "train.py", ["train.num_train_epochs=0"], "train.num_train_epochs"),
    Case("epochs not a number", "train.py", ["train.num_train_epochs=abc"], "train.num_train_epochs"),
    Case("learning rate not a number", "train.py", ["train.learning_rate=fast"], "train.learning_rate"),
    Case("negative learning rate", "train.py", ["train.learning_rate=-1e-3"], "train.learning_rate"),
    Case("batch size 0", "train.py", ["train.per_device_train_batch_size=0"], "train.per_device_train_batch_size"),
    Case("eval batch size 0", "evaluate_model.py", ["train.per_device_eval_batch_size=0"],
         "train.per_device_eval_batch_size"),
    Case("seed not an integer", "train.py", ["train.seed=abc"], "train.seed"),
    Case("negative weight decay", "train.py", ["train.weight_decay=-0.1"], "train.weight_decay"),
    Case("negative warmup", "train.py", ["train.warmup_steps=-5"], "train.warmup_steps"),
    Case("unknown train key", "train.py", ["+train.learnin_rate=1"], "did you mean 'learning_rate'"),
    Case("max_length 0", "tokenize_data.py", ["data.max_length=0"], "data.max_length"),
    Case("max_length negative", "tokenize_data.py", ["data.max_length=-5"], "data.max_length"),
    Case("max_length above the model's limit", "tokenize_data.py", ["data.max_length=100000"], "position"),
    Case("max_length not a number", "tokenize_data.py", ["data.max_length=long"], "data.max_length"),
    Case("max_train_samples 0", "tokenize_data.py", ["data.max_train_samples=0"], "data.max_train_samples"),
    Case("max_train_samples negative", "tokenize_data.py", ["data.max_train_samples=-3"], "data.max_train_samples"),
    Case("max_train_samples not a number", "tokenize_data.py", ["data.max_train_samples=many"],
         "data.max_train_samples"),
    Case("max_eval_samples 0", "tokenize_data.py", ["data.max_eval_samples=0"], "data.max_eval_samples"),
    Case("misspelled data key added", "download.py", ["+data.max_lenght=64"], "did you mean 'data.max_length'"),
    Case("misspelled data key", "download.py", ["data.max_lenght=64"], "data.max_lenght"),
    Case("unknown top-level key", "download.py", ["+trian.seed=1"], "trian"),
    Case("another family's key", "download.py", ["task.n_best_size=5"],
         "'task.n_best_size' is not a key of this task's family (conf/family/ lists each family's keys)"),
    Case("unknown task", "download.py", ["task=sentimental"], "unknown task 'sentimental'"),
    Case("unknown model", "train.py", ["model=gpt9"], "unknown model 'gpt9'"),
    Case("override syntax error", "train.py", ["train.learning_rate=[1,"], "train.learning_rate=[1,"),
    Case("bad split strategy", "download.py", ["data.split.strategy=halves"], "data.split.strategy"),
    Case("validation fraction above 1", "download.py",
         ["data.split.strategy=random_fraction", "data.split.validation_fraction=1.5"],
         "data.split.validation_fraction"),
    Case("bad eval split", "evaluate_model.py", ["data.eval_split=dev"], "data.eval_split"),
    Case("bad problem type", "download.py", ["task.problem_type=ranking"], "task.problem_type"),
    Case("threshold above 1", "evaluate_model.py", ["task.threshold=2"], "task.threshold"),
    Case("bad num_proc", "tokenize_data.py", ["data.num_proc=0"], "data.num_proc"),
    Case("tracking.enabled not a bool", "train.py", ["tracking.enabled=maybe"], "tracking.enabled"),
    Case("bad bf16", "train.py", ["train.bf16=sometimes"], "train.bf16"),
    Case("class weights of wrong length", "train.py", ["train.class_weights=[1,2,3]"], "train.class_weights"),
    Case("bad tune_threshold", "evaluate_model.py", ["task.tune_threshold=always"], "task.tune_threshold"),
]

OUTPUTS_CASES = [
    Case("corrupt tokenized manifest", "train.py", [], "manifest.json",
         damage=lambda w: (w / f"data/tokenized/{PAIR}/manifest.json").write_text('{"rows": ')),
    Case("corrupt codec.json", "train.py", [], "codec.json",
         damage=lambda w: (w / f"data/tokenized/{PAIR}/codec.json").write_text('{"family": ')),
    Case("deleted arrow file", "train.py", [], f"data/tokenized/{PAIR}",
         damage=lambda w: [p.unlink() for p in (w / f"data/tokenized/{PAIR}/features/train").glob("*.arrow")]),
    Case("corrupt raw manifest", "tokenize_data.py", [], "manifest.json",
         damage=lambda w: (w / "data/raw/sarcasm/manifest.json").write_text("{")),
    Case("corrupt model config.json", "evaluate_model.py", [], "config.json",
         damage=lambda w: (w / f"models/{PAIR}/config.json").write_text("{ not json")),
    Case("truncated model weights", "evaluate_model.py", [], f"models/{PAIR} is damaged",
         damage=lambda w: (w / f"models/{PAIR}/model.safetensors").write_bytes(
             (w / f"models/{PAIR}/model.safetensors").read_bytes()[:1000])),
    Case("missing model weights", "evaluate_model.py", [], "model.safetensors",
         damage=lambda w: (w / f"models/{PAIR}/model.safetensors").unlink()),
    Case("pickle weights only", "export.py", [], "safetensors",
         damage=lambda w: (w / f"models/{PAIR}/model.safetensors").rename(w / f"models/{PAIR}/pytorch_model.bin")),
    Case("model folder missing", "tokenize_data.py", ["model=local", "model.path=/nonexistent"],
         "model.path: folder not found: /nonexistent"),
    Case("model folder not given", "tokenize_data.py", ["model=local"], "model.path"),
    Case("model folder without weights", "tokenize_data.py", ["model=local"], "model 'local': cannot load",
         lambda work: [f"model.path={folder(work, 'empty-model')}"]),
]

def sheet_file(name: str, rows: list[list]) -> Callable[[Path], list[str]]:
    def setup(work: Path) -> list[str]:
        import openpyxl

        book = openpyxl.Workbook()
        for row in rows:
            book.active.append(row)
        (work / "bad").mkdir(exist_ok=True)
        book.save(work / "bad" / name)
        return [f"data.files.train={work / 'bad' / name}", "data.split.first_n=2"]
    return setup


def split_csv(values: list[str]) -> str:
    rows = headline_rows(len(values))
    return "headline,is_sarcastic,set\n" + "".join(f"{r['headline']},{r['is_sarcastic']},{value}\n"
                                                    for r, value in zip(rows, values, strict=True))


SPLIT_FILE = split_csv(["TRAIN"] * 6 + ["TRIAL"] * 2 + ["TEST"] * 2)
SPLIT_ARGS = [*CSV, "data.split_column=set", "data.split.strategy=given"]
MIXED_LABELS = ["sarcastic", "not_sarcastic", "sarcastic", "0", "1", "0", "1", "0"]
MIXED = "headline,is_sarcastic\n" + "".join(f"{r['headline']},{label}\n"
                                             for r, label in zip(headline_rows(8), MIXED_LABELS, strict=True))
# Input that a reader used to pass through silently corrupted, and the shapes of own data
OWN_DATA = [
    Case("NUL byte in a csv field", "download.py", CSV, "line 3, field 'headline': a NUL byte",
         rows_file("nul.csv", headline_csv(1) + "totally\x00 new study,1\n")),
    Case("NUL byte in a conll line", "download.py", NER, "line 1: a NUL byte", ner_file(b"pat\x00ient")),
    Case("duplicated csv header", "download.py", CSV, "line 1: the header: column 'headline' appears twice",
         rows_file("dup.csv", "headline,headline,is_sarcastic\na,b,1\n")),
    Case("duplicated data.columns", "download.py", [*CSV, "data.columns=[headline,headline]"],
         "data.columns: column 'headline' appears twice", rows_file("cols.tsv", "a\tb\n")),
    Case("duplicated json key", "download.py", [], "line 3: key 'headline' appears twice",
         rows_file("dup.jsonl", headlines(2) + '{"headline": "a", "headline": "b", "is_sarcastic": 1}\n')),
    Case("labels mix names and ids", "download.py", [*CSV, "data.split.first_n=6"],
         "field 'is_sarcastic': the labels mix names and integer ids", rows_file("mixed.csv", MIXED)),
    Case("labels from data mix names and ids", "download.py", [*CSV, "data.split.first_n=6", "task.labels=null"],
         "the labels mix names and integer ids", rows_file("mixed.csv", MIXED)),
    Case("split value names no split", "download.py", SPLIT_ARGS,
         "column 'set' holds 'TRIAL', which names no split (values found: 'TRAIN' (6 rows), 'TRIAL' (2 rows), "
         "'TEST' (2 rows)); map the values", rows_file("splits.csv", SPLIT_FILE)),
    Case("split_values value absent", "download.py", [*SPLIT_ARGS, "data.split_values={train: TRAIN, validation: DEV, "
                                                      "test: TEST}"],
         "data.split_values: no row of", rows_file("splits.csv", split_csv(["TRAIN"] * 8 + ["TEST"] * 2))),
    Case("split_values unknown role", "download.py", [*SPLIT_ARGS, "data.split_values={training: TRAIN}"],
         "data.split_values: 'training' is not a split", rows_file("splits.csv", SPLIT_FILE)),
    Case("maxsplit line without delimiter", "download.py",
         ["data.format=csv", "data.delimiter=space", "data.maxsplit=1", "data.columns=[is_sarcastic,headline]"],
         "line 2: expected 2 fields", rows_file("lines.label", "1 totally new study\nofficially\n")),
    Case("delimiter of two characters", "download.py", ["data.delimiter=ab"], "data.delimiter: expected one character"),
    Case("ragged row hints at maxsplit", "download.py", [*CSV, "data.delimiter=space"], "data.maxsplit",
         rows_file("spaces.csv", "is_sarcastic headline\n1 totally new study\n")),
    Case("not an xlsx workbook", "download.py", CSV, "not a valid .xlsx workbook", rows_file("sheet.xlsx", "x")),
    Case("old excel format", "download.py", CSV, "the old Excel format (.xls)", rows_file("sheet.xls", "x")),
    Case("xlsx sheet not found", "download.py", [*CSV, "data.sheet=Reviews"], "data.sheet: no sheet 'Reviews'",
         sheet_file("book.xlsx", [["headline", "is_sarcastic"], ["a b", 1], ["c d", 0], ["e f", 1]])),
    Case("xlsx duplicated header", "download.py", CSV, "row 1: the header: column 'headline' appears twice",
         sheet_file("dup.xlsx", [["headline", "headline", "is_sarcastic"], ["a", "b", 1]])),
    Case("no split to report", "download.py", ["data.split.strategy=random_fraction"],
         "data.eval_split: the evaluate stage reports 'test', which task 'sarcasm' lacks (its splits: train, "
         "validation)"),
    Case("jsonl nested too deep", "download.py", [], "line 3: JSON nested deeper than Python's reader can follow",
         rows_file("deep.jsonl", headlines(2) + '{"headline": ' + "[" * 100_000 + "]" * 100_000 + "}\n")),
    Case("squad json nested too deep", "download.py", QA, "deep.json: JSON nested deeper",
         rows_file("deep.json", '{"data": ' + "[" * 100_000 + "]" * 100_000 + "}")),
    Case("empty list for data.columns", "download.py", ["data.columns=[]"],
         "data.columns: an empty list; give at least one value (or null for the default)"),
    Case("empty list for pipeline.stages", "pipeline.py", ["pipeline.stages=[]"], "pipeline.stages: an empty list"),
    Case("empty list for task.labels", "train.py", ["task.labels=[]"], "task.labels: an empty list"),
    Case("misspelled TrainingArguments field", "train.py", ["train.max_stepz=3"], "did you mean 'max_steps'"),
]

CASES = READERS + CONFIG + OUTPUTS_CASES + OWN_DATA


@dataclass
class Outcome:
    exit: int
    stderr: str
    unchanged: bool  # the workspace's outputs, byte for byte (size and mtime of every file)


def attempt(case: Case, workspace: Path, folder: Path) -> Outcome:
    """Run `case`'s stage on a copy of the good workspace, as a user would."""
    work = folder / "work"
    shutil.copytree(workspace, work, symlinks=True)
    args = [a.replace(str(workspace), str(work)) for a in good_args(workspace)]
    if case.setup:
        args += case.setup(work)
    if case.damage:
        case.damage(work)
    before = snapshot(work)
    done = run_stage(case.script, *args, *case.args, cwd=work, uri=f"sqlite:///{work / 'mlflow.db'}")
    return Outcome(done.returncode, done.stderr, snapshot(work) == before)


@pytest.fixture(scope="module")
def outcomes(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case, run as many at a time as there are cores (each is a process of its own)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {case.name: pool.submit(attempt, case, workspace, tmp_path_factory.mktemp("case"))
                   for case in CASES}
    results = {name: future.result() for name, future in futures.items()}
    if TABLE:  # the table of outcomes for the docs: FINETUNE_BAD_INPUT_TABLE=cases.jsonl pytest ...
        with open(TABLE, "w", encoding="utf-8") as handle:
            for case in CASES:
                result, lines = results[case.name], results[case.name].stderr.strip().splitlines()
                handle.write(json.dumps({"case": case.name, "stage": case.script, "exit": result.exit,
                                         "traceback": "Traceback" in result.stderr, "lines": len(lines),
                                         "message": lines[-1] if lines else "", "unchanged": result.unchanged})
                             + "\n")
    return results


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line(case: Case, outcomes: dict[str, Outcome]):
    result = outcomes[case.name]
    # the same overrides go to every stage, as a user's would: the ones a stage does not read warn
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert result.exit != 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert case.expected in lines[0], lines[0]
    assert result.unchanged  # nothing written, nothing half-written, the good output intact
