"""DVC experiments of the real DAG: `dvc exp run -S` and a queued grid, each its own MLflow run."""

from __future__ import annotations

import time

import pytest

from finetune.io import read_json
from tests.conftest import copy_project, ran_stages, sh

pytestmark = pytest.mark.slow


def test_exp_run_set_param_reaches_the_stages(reproduced_project, tmp_path, mlflow_store):
    fresh = copy_project(reproduced_project["project"], tmp_path / "repo")
    ran = sh("dvc", "exp", "run", "-S", "train.learning_rate=3e-5", cwd=fresh).stdout
    assert ran_stages(ran) == ["train@sarcasm-tiny", "evaluate@sarcasm-tiny", "export@sarcasm-tiny"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_store)
    run_id = read_json(fresh / "models" / "sarcasm-tiny" / "run.json")["run_id"]
    assert client.get_run(run_id).data.params["train.learning_rate"] == "3e-05"
    # A queued grid: two experiments, each its own MLflow run with its own value.
    sh("dvc", "exp", "run", "--queue", "-S", "train.learning_rate=1e-4,2e-4", cwd=fresh)
    sh("dvc", "queue", "start", "-j", "1", cwd=fresh)
    deadline = time.time() + 300
    while time.time() < deadline:
        status = sh("dvc", "queue", "status", cwd=fresh).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(1)
    assert "Failed" not in status, status
    experiment = client.get_experiment_by_name("sarcasm")
    values = sorted(r.data.params["train.learning_rate"] for r in client.search_runs([experiment.experiment_id]))
    assert values == ["0.0001", "0.0002", "3e-05"]
    runs = client.search_runs([experiment.experiment_id])
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags.get("dvc_stage") for r in runs} == {"train@sarcasm-tiny"}
    assert len({r.data.tags.get("dvc_exp") for r in runs} - {None}) == 3  # each run names its DVC experiment
    shown = sh("dvc", "exp", "show", "--no-pager", "--csv", cwd=fresh).stdout
    assert "0.0001" in shown and "0.0002" in shown
