"""The real DAG: `dvc repro` in a temporary git repository, caching, staleness, experiments."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from finetune.io import read_json
from tests.conftest import REPO, copy_project, headline_rows, make_project, ran_stages, sh, write_jsonl

pytestmark = pytest.mark.slow


def stale_stages(project: Path) -> list[str]:
    """The stages `dvc status` lists as changed, in DAG order."""
    status = sh("dvc", "status", cwd=project).stdout
    return [line.rstrip(":") for line in status.splitlines() if "@" in line and not line.startswith((" ", "\t"))]


@pytest.fixture(scope="module")
def project(reproduced_project: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's reproduced project, for this module's edits."""
    return copy_project(reproduced_project["project"], tmp_path_factory.mktemp("dvcrepo") / "repo")


def test_repro_builds_every_stage_then_does_nothing(project, reproduced_project):
    first = reproduced_project["ran"]  # its first `dvc repro`
    assert first == ["download@sarcasm", "tokenize@sarcasm-tiny", "train@sarcasm-tiny", "evaluate@sarcasm-tiny",
                     "export@sarcasm-tiny"]
    metrics = read_json(project / "metrics" / "sarcasm-tiny.json")
    assert metrics["n_eval"] == 30 and 0 <= metrics["accuracy"] <= 1
    assert (project / "exports" / "sarcasm-tiny" / "README.md").exists()
    start = time.perf_counter()
    again = sh("dvc", "repro", cwd=project)
    elapsed = time.perf_counter() - start
    assert ran_stages(again.stdout) == []
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=project).stdout
    assert elapsed < 10, "a no-op repro only hashes (it is ~1 s on an idle machine; see BENCHMARKS.md)"
    shown = sh("dvc", "metrics", "show", "--json", cwd=project).stdout
    assert "accuracy" in shown


def test_changing_a_train_param_reruns_only_train_and_after(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["learning_rate"] = 2.0e-4
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = sh("dvc", "status", cwd=project).stdout
    assert "train@sarcasm-tiny" in status
    assert "download@sarcasm" not in status and "tokenize@sarcasm-tiny" not in status
    rerun = sh("dvc", "repro", cwd=project)
    assert ran_stages(rerun.stdout) == ["train@sarcasm-tiny", "evaluate@sarcasm-tiny", "export@sarcasm-tiny"]


def test_changing_an_export_param_reruns_only_export(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["export"]["quantize"] = False
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(sh("dvc", "repro", cwd=project).stdout) == ["export@sarcasm-tiny"]
    assert not (project / "exports" / "sarcasm-tiny" / "model.int8.onnx").exists()


def test_changing_the_eval_split_never_leaves_stale_metrics(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["eval_split"] = "train"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = ran_stages(sh("dvc", "repro", cwd=project).stdout)
    assert "evaluate@sarcasm-tiny" in rerun and "train@sarcasm-tiny" not in rerun  # the same tokens: no retraining
    assert read_json(project / "metrics" / "sarcasm-tiny.json")["split"] == "train"


@pytest.mark.parametrize(("section", "key", "value", "readers"), [
    ("task", "threshold", 0.3, ["download", "tokenize", "train", "evaluate", "export"]),
    ("data", "max_eval_samples", 20, ["download", "tokenize", "evaluate", "export"]),
    ("train", "weight_decay", 0.05, ["train", "evaluate"]),
    ("export", "onnx", False, ["export"]),
])
def test_a_workspace_param_is_a_dependency_of_every_stage_that_reads_its_section(project, section, key, value,
                                                                                 readers):
    """Each stage declares the sections it reads; a stage whose output comes out unchanged stops
    the re-run there (the tests above), so no output is ever left from another value."""
    original = (project / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = sh("dvc", "status", cwd=project).stdout
        blocks = re.split(r"^(?=\S)", status, flags=re.M)  # one per stage: its name, then its indented changes
        changed = sorted(block.split("@")[0] for block in blocks
                         if "@" in block.split("\n")[0] and re.search(rf"modified:\s+{section}\b", block))
        assert changed == sorted(readers), status
    finally:
        (project / "params.yaml").write_text(original)


def test_every_stage_runs_its_kinds_script_and_depends_on_the_library():
    from finetune.pipeline.common import SCRIPTS

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert sorted(stages) == sorted(SCRIPTS)
    for kind, spec in stages.items():
        assert spec["cmd"].startswith(f"python stages/{SCRIPTS[kind]} ")  # the one table of scripts
        assert {"src/finetune", f"stages/{SCRIPTS[kind]}", "conf/config.yaml"} <= set(spec["deps"])


def test_editing_library_code_reruns_the_stages_that_run_it(project):
    exporter = project / "src" / "finetune" / "export" / "onnx.py"
    original = exporter.read_text()
    exporter.write_text(original + "\n# an edit to the export\n")
    # every stage depends on the whole library (BENCHMARKS.md, comparison 11)
    assert stale_stages(project) == ["download@sarcasm", "tokenize@sarcasm-tiny", "train@sarcasm-tiny",
                                     "evaluate@sarcasm-tiny", "export@sarcasm-tiny"]
    exporter.write_text(original)
    (project / "src" / "finetune" / "tasks" / "__pycache__").mkdir(exist_ok=True)
    (project / "src" / "finetune" / "tasks" / "__pycache__" / "stray.pyc").write_bytes(b"bytecode")
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=project).stdout  # bytecode is not code


def test_editing_the_data_defaults_reruns_every_stage_that_reads_them(project):
    """evaluate reads data.eval_split and export data.* for its card: an edit of conf/data must
    re-run them even where the tokenized data comes out unchanged."""
    edited = project / "conf" / "data" / "default.yaml"
    original = edited.read_text()
    edited.write_text(original + "\n# an edit to the data defaults\n")
    try:
        assert stale_stages(project) == ["download@sarcasm", "tokenize@sarcasm-tiny", "evaluate@sarcasm-tiny",
                                         "export@sarcasm-tiny"]
    finally:
        edited.write_text(original)


def test_editing_a_task_config_file_reruns_that_task(project):
    edited = project / "conf" / "model" / "minilm.yaml"
    edited.write_text(edited.read_text() + "\n# not used by the tiny pairs\n")
    assert ran_stages(sh("dvc", "repro", cwd=project).stdout) == []
    task_file = project / "conf" / "task" / "sarcasm.yaml"
    task_file.write_text(task_file.read_text() + "\n# a comment is still an edit\n")
    status = sh("dvc", "status", cwd=project).stdout
    assert "download@sarcasm" in status and "tokenize@sarcasm-tiny" in status


def test_direct_stage_run_without_inputs_names_the_command(tmp_path):
    data = write_jsonl(tmp_path / "headlines.jsonl", headline_rows(60))
    fresh = make_project(tmp_path / "repo", data)
    result = sh(sys.executable, "stages/train.py", "task=sarcasm", "model=tiny", cwd=fresh, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "data/tokenized/sarcasm-tiny is missing: run `dvc repro tokenize@sarcasm-tiny`" in lines[0]


def test_direct_stage_run_takes_hydra_overrides(reproduced_project, tmp_path, mlflow_store):
    fresh = copy_project(reproduced_project["project"], tmp_path / "repo")
    sh(sys.executable, "stages/train.py", "task=sarcasm", "model=tiny", "train.learning_rate=3e-5", cwd=fresh)
    from mlflow.tracking import MlflowClient

    run_id = read_json(fresh / "models" / "sarcasm-tiny" / "run.json")["run_id"]
    assert MlflowClient(mlflow_store).get_run(run_id).data.params["train.learning_rate"] == "3e-05"
