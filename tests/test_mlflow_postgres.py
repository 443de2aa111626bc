"""scripts/mlflow-postgres.sh: PostgreSQL on 127.0.0.1 with `mlflow server` on it. A pair trained
and a 2-job sweep logged there are read back over the REST API and from the database itself."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, mlflow_get, run_stage, server_runs, sweep_data

pytestmark = pytest.mark.slow
SCRIPT = REPO / "scripts" / "mlflow-postgres.sh"


def postgres_installed() -> bool:
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def server():
    if not postgres_installed():
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; scripts/mlflow-postgres.sh start "
                    "installs it when run as root)")
    # not below pytest's 0700 folders: the postgres user must reach it
    folder = Path(tempfile.mkdtemp(prefix="mlflow-postgres-"))
    started = subprocess.run([str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    uri = started.stdout.strip().removeprefix("export MLFLOW_TRACKING_URI=")
    pids = {name: int((folder / f"{name}.pid").read_text()) for name in ("mlflow", "postgres")}
    yield {"folder": folder, "uri": uri, "pids": pids, "backend": (folder / "backend-uri").read_text().strip()}
    stopped = subprocess.run([str(SCRIPT), "stop", str(folder)], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(pid) for pid in pids.values()), "both servers stopped by their PIDs"
    shutil.rmtree(folder, ignore_errors=True)


def tags(run: dict) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}


def test_the_servers_listen_on_127_0_0_1_and_keep_runs_in_postgresql(server):
    assert server["uri"].startswith("http://127.0.0.1:")
    assert server["backend"].startswith("postgresql://mlflow:") and "@127.0.0.1:" in server["backend"]
    assert oct((server["folder"] / "backend-uri").stat().st_mode)[-3:] == "600", "the password stays private"


def test_a_pair_trained_against_the_server_reads_back_over_rest_and_from_postgresql(server, tmp_path):
    import psycopg

    done = run_stage("pipeline.py", *sweep_data(tmp_path), "model=tiny", cwd=tmp_path, uri=server["uri"])
    assert done.returncode == 0, done.stderr[-3000:]
    runs = server_runs(server["uri"], "sarcasm")
    pair = [run for run in runs if tags(run).get("mlflow.runName") == "sarcasm-tiny"]
    assert len(pair) == 1 and pair[0]["info"]["status"] == "FINISHED"
    metrics = {m["key"] for m in pair[0]["data"]["metrics"]}
    assert {"loss", "best_metric", "validation_accuracy"} <= metrics
    params = {p["key"]: p["value"] for p in pair[0]["data"]["params"]}
    assert params["model.name"] == "tiny" and params["train.num_train_epochs"] == "3"
    listing = mlflow_get(server["uri"], "artifacts/list", run_id=pair[0]["info"]["run_id"], path="train")
    listed = {entry["path"] for entry in listing.get("files", [])}
    assert "train/learning_curves.png" in listed, "artifacts went to the server's artifact root"
    assert any((server["folder"] / "artifacts").rglob("learning_curves.png"))
    with psycopg.connect(server["backend"]) as connection, connection.cursor() as cursor:
        cursor.execute("select status from runs where run_uuid = %s", (pair[0]["info"]["run_id"],))
        assert cursor.fetchone() == ("FINISHED",), "the run lives in PostgreSQL"


def test_a_two_job_sweep_lands_under_one_parent_on_the_server(server, tmp_path):
    done = run_stage("pipeline.py", "-m", *sweep_data(tmp_path), "model=tiny", "train.learning_rate=1e-3,5e-3",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=tmp_path, uri=server["uri"])
    assert done.returncode == 0, done.stderr[-3000:]
    runs = server_runs(server["uri"], "sarcasm")
    sweep = {tags(run).get("sweep_id") for run in runs if tags(run).get("sweep_role") == "parent"}
    assert len(sweep) == 1
    members = [run for run in runs if tags(run).get("sweep_id") in sweep]
    parent = [run for run in members if tags(run).get("sweep_role") == "parent"][0]
    children = [run for run in members if run is not parent]
    assert parent["info"]["status"] == "FINISHED" and len(children) == 2
    assert {tags(run)["mlflow.parentRunId"] for run in children} == {parent["info"]["run_id"]}
    assert {run["info"]["status"] for run in children} == {"FINISHED"}
    assert tags(parent)["best_run_id"] in {run["info"]["run_id"] for run in children}
