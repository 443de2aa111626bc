"""A tracking server that is down, or killed mid-run, never stops training: the run goes on in the
offline store with one warning line, and `python -m finetune.offline sync` brings it to the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finetune.io import read_json
from tests.conftest import REPO, free_port, headline_rows, mlflow_get, server_runs, start_mlflow_server, write_jsonl

pytestmark = pytest.mark.slow
PAIR = "sarcasm-tiny"
EXPERIMENT = "sarcasm"


def args(work: Path) -> list[str]:
    return ["task=sarcasm", "model=tiny", f"data.files.train={work / 'headlines.jsonl'}", "data.split.first_n=500",
            "data.max_length=32", "train.num_train_epochs=3", "train.per_device_train_batch_size=8",
            "train.disable_tqdm=true", "train.logging_steps=5", "train.torch_threads=1", f"paths.inputs={work}"]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    from finetune.config import compose
    from finetune.pipeline.download import download
    from finetune.pipeline.tokenize import tokenize

    write_jsonl(tmp_path / "headlines.jsonl", headline_rows(600))
    cfg = compose(REPO, [a for a in args(tmp_path) if not a.startswith("paths.")], workdir=tmp_path)
    download(cfg)
    tokenize(cfg)
    return tmp_path


def stage(script: str, work: Path, uri: str) -> subprocess.Popen:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    return subprocess.Popen([sys.executable, str(REPO / "stages" / script), *args(work)], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sync(work: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finetune.offline", "sync", str(work / "mlflow-offline.db")],
                          cwd=work, capture_output=True, text=True, timeout=300)


def loss_steps(base: str, run_id: str) -> list[int]:
    """The steps of the run's training-loss curve on the server."""
    history = mlflow_get(base, "metrics/get-history", run_id=run_id, metric_key="loss", max_results="10000")
    return sorted(m["step"] for m in history.get("metrics", []))


def logged_loss_steps(work: Path) -> list[int]:
    """The steps of the training-loss curve the train stage wrote beside its plots."""
    import csv

    with open(work / "plots" / PAIR / "train" / "history.csv", newline="") as handle:
        return sorted(int(float(row["step"])) for row in csv.DictReader(handle) if row.get("loss"))


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: tracking server")]


def test_a_server_down_at_the_start_costs_one_line_and_syncs_later(work):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    out, err = stage("train.py", work, base).communicate(timeout=600)
    assert "Traceback" not in err and len(warnings_in(err)) == 1, err[-3000:]
    assert (work / "models" / PAIR / "model.safetensors").exists()
    assert read_json(work / "models" / PAIR / "run.json")["store"] == "offline"
    evaluated = stage("evaluate_model.py", work, base)
    out, err = evaluated.communicate(timeout=600)
    assert evaluated.returncode == 0 and warnings_in(err) == [], err[-3000:]  # straight to the run's offline store
    assert time.perf_counter() - started < 300

    server = start_mlflow_server(work, port)
    try:
        done = sync(work)
        assert done.returncode == 0, done.stderr
        [run] = server_runs(base, EXPERIMENT)
        assert [line for line in done.stdout.splitlines() if line.startswith("synced")] == \
            [f"synced {PAIR} -> {base} run {run['info']['run_id']}"]
        assert run["info"]["status"] == "FINISHED"
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert {"loss", "best_metric", "validation_accuracy"} <= metrics
        assert loss_steps(base, run["info"]["run_id"]) == logged_loss_steps(work)
        assert list((work / "artifacts").rglob("learning_curves.png"))
        assert "nothing to sync" in sync(work).stdout
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_a_server_killed_mid_run_loses_nothing(work):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(work, port)
    try:
        training = stage("train.py", work, base)
        deadline = time.time() + 300
        while time.time() < deadline:  # wait until the server holds part of the run's curve
            runs = server_runs(base, EXPERIMENT)
            if runs and len(loss_steps(base, runs[0]["info"]["run_id"])) >= 3:
                break
            assert training.poll() is None, training.communicate()
            time.sleep(0.2)
        [partial] = server_runs(base, EXPERIMENT)
        os.killpg(server.pid, signal.SIGKILL)  # the server and its workers, at once
        server.wait(timeout=60)
        killed_at = time.perf_counter()
        out, err = training.communicate(timeout=600)
        assert training.returncode == 0 and "Traceback" not in err, err[-3000:]
        assert len(warnings_in(err)) == 1, err[-3000:]
        assert (work / "models" / PAIR / "model.safetensors").exists()
        finished_in = time.perf_counter() - killed_at

        server = start_mlflow_server(work, port)
        done = sync(work)
        assert done.returncode == 0, done.stderr
        [run] = server_runs(base, EXPERIMENT)
        assert run["info"]["run_id"] == partial["info"]["run_id"]  # the cut-off run is completed, not doubled
        assert run["info"]["status"] == "FINISHED"
        assert loss_steps(base, run["info"]["run_id"]) == logged_loss_steps(work)  # every point once
        assert finished_in < 300
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_an_export_that_loses_the_server_registers_on_sync(work, monkeypatch):
    from mlflow import MlflowClient

    from finetune.config import compose
    from finetune.export import registry
    from finetune.offline import FAST_FAILURE
    from finetune.pipeline.export import export

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(work, port)
    try:
        for script in ("train.py", "evaluate_model.py"):
            ran = stage(script, work, base)
            _, err = ran.communicate(timeout=600)
            assert ran.returncode == 0, err[-3000:]
        log_model = registry.log_model

        def server_lost(*args, **kwargs):  # the server dies between the export's health check and its registry call
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=60)
            return log_model(*args, **kwargs)

        monkeypatch.setattr(registry, "log_model", server_lost)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", base)
        for key, value in FAST_FAILURE.items():
            monkeypatch.setenv(key, value)
        cfg = compose(REPO, [a for a in args(work) if not a.startswith("paths.")], workdir=work)
        assert export(cfg)["registry"] == {"pending": True}
        assert (work / "exports" / PAIR / "model.safetensors").exists()

        server = start_mlflow_server(work, port)
        done = sync(work)
        assert done.returncode == 0, done.stderr
        [run] = server_runs(base, EXPERIMENT)
        version = MlflowClient(base).get_model_version(PAIR, "1")  # the gate decided there, as at export
        assert version.run_id == run["info"]["run_id"] and version.tags["eval_split"].startswith("validation")
        assert f"registry: {PAIR} v1 " in done.stdout and version.tags["promotion_reason"] in done.stdout
        assert "nothing to sync" in sync(work).stdout
    finally:
        server.terminate()
        server.wait(timeout=60)
