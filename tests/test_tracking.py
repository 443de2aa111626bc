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


CONCURRENT_WRITER = """
import sys, time
import mlflow
from finetune import tracking
uri, name, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
while time.time() < start_at:
    time.sleep(0.001)
tracking.connect(uri)
tracking.use_experiment(mlflow, "race")
tracking.retrying(mlflow.start_run, run_name=name)
with tracking._ending():
    tracking.retrying(mlflow.log_params, {f"p{i}": i for i in range(100)})
    tracking.retrying(mlflow.log_params, {f"p{i}": i for i in range(100, 200)})
    for step in range(30):
        tracking.log_metrics({"loss": 1.0 / (step + 1), "accuracy": step / 30}, step=step)
"""


def test_processes_sharing_a_new_sqlite_store_lose_no_run_param_or_metric(tmp_path):
    """Six processes start at the same instant on a store that does not exist yet: they race to create
    its tables, the experiment, and then write at once ("database is locked")."""
    import subprocess
    import sys
    import time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start_at = str(time.time() + 8)  # after every interpreter has imported mlflow
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, uri, f"w{i}", start_at],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]
    for writer in writers:
        _, err = writer.communicate(timeout=180)
        assert writer.returncode == 0, err[-2000:]
    client = mlflow.MlflowClient(uri)
    assert sorted(e.name for e in client.search_experiments()) == ["Default", "race"]
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"w{i}" for i in range(6)]
    for run in runs:
        assert run.info.status == "FINISHED" and len(run.data.params) == 200
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == list(range(30))
        assert len(client.get_metric_history(run.info.run_id, "accuracy")) == 30


@pytest.mark.slow
def test_a_team_server_takes_a_pair_and_a_sweep(tmp_path):
    """docs/tracking-and-serving.md's `mlflow server` command, a real server: a tiny pair and a
    2-job sweep log to it over HTTP, their runs are read back over the REST API, and the server
    stops by its PID."""
    import urllib.request

    from tests.conftest import free_port, run_stage, server_runs, start_mlflow_server, sweep_data

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path, port)
    try:
        pair = run_stage("pipeline.py", *sweep_data(tmp_path), "model=tiny", cwd=tmp_path, uri=base)
        assert pair.returncode == 0, pair.stderr[-3000:]
        sweep = run_stage("pipeline.py", "-m", *sweep_data(tmp_path), "model=tiny", "train.learning_rate=1e-3,5e-3",
                          cwd=tmp_path, uri=base)
        assert sweep.returncode == 0, sweep.stderr[-3000:]

        runs = server_runs(base, "sarcasm")
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        assert len(runs) == 4 and {r["info"]["status"] for r in runs} == {"FINISHED"}
        parent = next(r for r, t in zip(runs, tags, strict=True) if t.get("sweep_role") == "parent")
        children = [t for t in tags if t.get("mlflow.parentRunId") == parent["info"]["run_id"]]
        assert len(children) == 2
        alone = [r for r, t in zip(runs, tags, strict=True) if "sweep_id" not in t]
        assert len(alone) == 1
        metrics = {m["key"] for m in alone[0]["data"]["metrics"]}
        assert {"best_metric", "validation_accuracy", "loss"} <= metrics
        assert list((tmp_path / "artifacts").rglob("learning_curves.png")), "artifacts went to the server's root"
        assert not (tmp_path / "mlflow.db").exists()  # nothing fell back to a local store
    finally:
        server.terminate()
        server.wait(timeout=60)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/health", timeout=2)


def test_a_busy_store_is_asked_again_not_taken_for_a_lost_run(tmp_path):
    """A resumed train run and `finetune.offline sync` ask whether a run exists; a store locked for
    longer than MLflow's own 20 s busy wait must not read as "no" (a second run of one training)."""
    import sqlite3
    import threading
    import time
    from types import SimpleNamespace

    from finetune import offline

    database = tmp_path / "server.db"
    remote = MlflowClient(f"sqlite:///{database}")
    run_id = remote.create_run(remote.create_experiment("pairs")).info.run_id
    local = MlflowClient(f"sqlite:///{tmp_path / 'offline.db'}")
    local_run = local.get_run(local.create_run(local.create_experiment("pairs")).info.run_id)
    local_run = SimpleNamespace(info=local_run.info, data=SimpleNamespace(tags={offline.SERVER_RUN: run_id}))
    locked = threading.Event()

    def hold_the_lock() -> None:
        connection = sqlite3.connect(database, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(22)
        connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    locked.wait()
    answers: dict[str, object] = {}
    asking = [threading.Thread(target=lambda: answers.update(exists=tracking.run_exists(remote, run_id))),
              threading.Thread(target=lambda: answers.update(target=offline._target_run(local, remote, local_run)))]
    for thread in asking:
        thread.start()
    for thread in [*asking, holder]:
        thread.join()
    assert answers == {"exists": True, "target": run_id}
    assert len(remote.search_runs([remote.get_experiment_by_name("pairs").experiment_id])) == 1  # no second run
    assert tracking.run_exists(remote, "0" * 32) is False  # the store's own "not found" is a no
