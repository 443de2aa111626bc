"""The real DAG: `dvc repro` in a temporary git repository, caching, staleness, experiments."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

from finetune.io import read_json
from finetune.metrics import reported
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
    metrics = reported(read_json(project / "metrics" / "sarcasm-tiny.json"))
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


ALL = ["download", "tokenize", "train", "evaluate", "export"]
# What each stage reads, written out here by hand (the stage table in finetune.pipeline.stage_table
# generates dvc.yaml; this is the check that its dependencies say the same): train reads no
# `data` key (the tokenized data carries what it needs), evaluate reads data.eval_split, export
# data.* for its card and train.* for the card's params.
READERS = {
    "conf/config.yaml": ALL,
    "conf/data/default.yaml": ["download", "tokenize", "evaluate", "export"],
    "conf/family/classification.yaml": ALL,
    "conf/task/sarcasm.yaml": ALL,
    "conf/model/tiny.yaml": ["tokenize", "train", "evaluate", "export"],
    "conf/train/default.yaml": ["train", "evaluate", "export"],
    "conf/evaluate/default.yaml": ["evaluate"],
    "conf/tracking/mlflow.yaml": ["train", "evaluate", "export"],
    "conf/export/default.yaml": ["export"],
    "params.yaml:task": ALL,
    "params.yaml:data": ["download", "tokenize", "evaluate", "export"],
    "params.yaml:train": ["train", "evaluate", "export"],
    "params.yaml:export": ["export"],
}
PARAM_EDITS = {"task": ("threshold", 0.3), "data": ("max_eval_samples", 20), "train": ("weight_decay", 0.05),
               "export": ("onnx", False)}


@pytest.mark.parametrize("edited", sorted(READERS))
def test_an_edit_of_each_conf_file_and_params_section_stales_exactly_the_stages_that_read_it(project, edited):
    """A stage whose output comes out unchanged stops the re-run there (the tests above), so each
    stage depending on exactly what it reads leaves no output from an older value."""
    path, _, section = edited.partition(":")
    file = project / path
    original = file.read_text()
    if section:
        params = yaml.safe_load(original)
        key, value = PARAM_EDITS[section]
        params[section][key] = value
        file.write_text(yaml.safe_dump(params, sort_keys=False))
    else:
        file.write_text(original + "\n# an edit\n")
    try:
        assert [stage.split("@")[0] for stage in stale_stages(project)] == READERS[edited]
    finally:
        file.write_text(original)


def test_every_stage_runs_its_kinds_script_and_depends_on_the_library():
    from finetune.pipeline.stage_table import SCRIPTS

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
