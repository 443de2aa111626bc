"""MLflow helpers: params within MLflow's limits, store location, run lifecycle."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from finetune import tracking
from finetune.config import compose
from tests.conftest import REPO


def test_params_are_flat_and_cut_to_mlflow_limits(tmp_path, mlflow_store):
    cfg = compose(REPO, ["task=sentiment", "model=tiny"], workdir=tmp_path)
    OmegaConf.update(cfg, "task.labels", [f"label-{i}-" + "x" * 50 for i in range(200)])
    params = tracking.flat_params(cfg)
    assert params["train.learning_rate"] == str(cfg.train.learning_rate)
    assert params["data.max_train_samples"] == str(cfg.data.max_train_samples) and params["data.files.test"] == "null"
    assert len(params["task.labels"]) <= tracking.MAX_PARAM_VALUE and params["task.labels"].endswith("chars]")
    assert not any(key.startswith(("paths.", "matrix")) for key in params)
    with tracking.start_run(cfg) as run:
        tracking.log_params(cfg)  # MLflow itself accepts them all
    logged = MlflowClient(mlflow_store).get_run(run.info.run_id).data.params
    assert logged == params


def test_default_store_is_sqlite_at_the_repository_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = compose(REPO, ["model=tiny"], workdir=tmp_path)
    assert tracking.tracking_uri(cfg) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri(cfg) == "http://127.0.0.1:5999"


def test_a_failing_stage_marks_its_run_failed_and_ends_it(tmp_path, mlflow_store):
    cfg = compose(REPO, ["task=sarcasm", "model=tiny"], workdir=tmp_path)
    with pytest.raises(RuntimeError), tracking.start_run(cfg, tags={"task": "sarcasm"}):
        raise RuntimeError("boom")
    assert mlflow.active_run() is None
    runs = MlflowClient(mlflow_store).search_runs([mlflow.get_experiment_by_name("sarcasm").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_resume_reopens_the_recorded_run(tmp_path, mlflow_store):
    from finetune.io import write_json

    cfg = compose(REPO, ["task=sarcasm", "model=tiny"], workdir=tmp_path)
    with tracking.start_run(cfg) as run:
        first = run.info.run_id
    write_json(tmp_path / "run.json", {"run_id": first})
    with tracking.resume_run(cfg, tmp_path) as again:
        assert again.info.run_id == first
        tracking.log_metrics({"test_f1/per type": 0.5})
    client = MlflowClient(mlflow_store)
    assert client.get_run(first).data.metrics == {"test_f1/per type": 0.5}
    assert client.get_run(first).info.status == "FINISHED"


def test_git_commit_outside_git_is_unknown(tmp_path):
    assert tracking.git_commit(tmp_path) == "unknown"
