"""The real DAG: `dvc repro` in a temporary git repository, caching, staleness, experiments."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from finetune.io import read_json
from tests.conftest import REPO, headline_rows, write_jsonl

pytestmark = pytest.mark.slow


def sh(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def make_project(dest: Path, data_file: Path, export: dict | None = None, **train: object) -> Path:
    """A git + DVC repository holding this project's pipeline with a tiny budget (`export` and
    `train` update those sections of its params.yaml)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("conf", "stages", "src"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    shutil.copy(REPO / "dvc.yaml", dest / "dvc.yaml")
    (dest / "data").mkdir()
    shutil.copy(REPO / "data" / ".gitignore", dest / "data" / ".gitignore")
    shutil.copy(REPO / ".gitignore", dest / ".gitignore")
    params = yaml.safe_load((REPO / "params.yaml").read_text())  # the real one, with tiny budgets
    params["matrix"] = {"task": ["sarcasm"], "model": ["tiny"]}
    params["data"].update(files={"train": str(data_file)}, split={"first_n": 100}, max_eval_samples=30)
    params["train"].update(num_train_epochs=1, per_device_train_batch_size=16, logging_steps=2, **train)
    params["export"].update(export or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=dest)
    sh("dvc", "init", "-q", cwd=dest)
    shutil.copy(REPO / ".dvcignore", dest / ".dvcignore")  # `dvc init` writes its template over it
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "project", cwd=dest)
    return dest


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dvcrepo")
    data = write_jsonl(root / "headlines.jsonl", headline_rows(140))
    return make_project(root / "repo", data)


def test_repro_builds_every_stage_then_does_nothing(project):
    first = ran_stages(sh("dvc", "repro", cwd=project).stdout)
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
    params["data"]["eval_split"] = None
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("dvc", "repro", cwd=project)
    assert read_json(project / "metrics" / "sarcasm-tiny.json")["split"] == "validation"


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
    status = sh("dvc", "status", cwd=project).stdout
    stale = [line.rstrip(":") for line in status.splitlines() if "@" in line and not line.startswith((" ", "\t"))]
    assert stale == ["download@sarcasm", "tokenize@sarcasm-tiny", "train@sarcasm-tiny", "evaluate@sarcasm-tiny",
                     "export@sarcasm-tiny"]  # every stage depends on the whole library (BENCHMARKS.md, comparison 11)
    exporter.write_text(original)
    (project / "src" / "finetune" / "tasks" / "__pycache__").mkdir(exist_ok=True)
    (project / "src" / "finetune" / "tasks" / "__pycache__" / "stray.pyc").write_bytes(b"bytecode")
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=project).stdout  # bytecode is not code


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


def test_direct_stage_run_takes_hydra_overrides(tmp_path, mlflow_store):
    data = write_jsonl(tmp_path / "headlines.jsonl", headline_rows(140))
    fresh = make_project(tmp_path / "repo", data)
    for script in ("download.py", "tokenize_data.py"):
        sh(sys.executable, f"stages/{script}", "task=sarcasm", "model=tiny", cwd=fresh)
    sh(sys.executable, "stages/train.py", "task=sarcasm", "model=tiny", "train.learning_rate=3e-5", cwd=fresh)
    from mlflow.tracking import MlflowClient

    run_id = read_json(fresh / "models" / "sarcasm-tiny" / "run.json")["run_id"]
    assert MlflowClient(mlflow_store).get_run(run_id).data.params["train.learning_rate"] == "3e-05"
