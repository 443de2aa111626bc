"""Hydra multiruns of stages/pipeline.py: one parent run, a child run per job, outputs per job."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from omegaconf import OmegaConf

from finetune.sweep import job_settings
from tests.conftest import REPO


def search(uri: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(search_all_experiments=True)


def test_a_parallel_sweep_is_one_parent_with_a_finished_child_per_job(tiny_sweep):
    runs = search(tiny_sweep["uri"])
    parents = runs[runs["tags.sweep_role"] == "parent"]
    children = runs[runs["tags.sweep_role"] != "parent"]
    assert len(parents) == 1 and len(children) == 4
    parent = parents.iloc[0]
    assert parent["status"] == "FINISHED"
    assert parent["tags.mlflow.runName"] == parent["tags.sweep_id"]
    assert parent["tags.sweep_id"].startswith("pipeline-")
    assert set(children["tags.mlflow.parentRunId"]) == {parent["run_id"]}
    assert set(children["tags.sweep_id"]) == {parent["tags.sweep_id"]}
    assert set(children["status"]) == {"FINISHED"}
    assert sorted(zip(children["params.model.name"], children["params.train.learning_rate"], strict=True)) == [
        ("minilm", "0.001"), ("minilm", "0.005"), ("tiny", "0.001"), ("tiny", "0.005")]
    names = list(children["tags.mlflow.runName"])
    assert len(set(names)) == 4 and all(name.startswith("sarcasm-") for name in names)


def test_no_parallel_job_lost_a_param_or_a_metric(tiny_sweep):
    client = mlflow.MlflowClient(tiny_sweep["uri"])
    children = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                if r.data.tags.get("sweep_role") != "parent"]
    for model in ("tiny", "minilm"):  # the two models' presets have different keys
        params = {len(r.data.params) for r in children if r.data.tags["model"] == model}
        assert len(params) == 1 and params.pop() > 50
    metrics = [set(r.data.metrics) for r in children]
    assert all(m == metrics[0] for m in metrics), "a job lost metrics"
    assert {"best_metric", "validation_accuracy", "train_runtime"} <= metrics[0]
    for run in children:  # every logged step of the training loss is there
        assert len(client.get_metric_history(run.info.run_id, "loss")) >= 3


def test_parallel_jobs_divide_the_cores(tiny_sweep):
    import os

    runs = search(tiny_sweep["uri"])
    children = runs[runs["tags.sweep_role"] != "parent"]
    assert set(children["params.train.torch_threads"]) == {str(max(1, (os.cpu_count() or 1) // 2))}


def test_each_job_writes_its_own_outputs_and_none_in_the_workspace(tiny_sweep):
    sweep_dirs = list((tiny_sweep["work"] / "multirun").iterdir())
    assert len(sweep_dirs) == 1
    sweep_dir = sweep_dirs[0]
    info = json.loads((sweep_dir / "sweep.json").read_text())
    assert info["sweep_id"] == f"pipeline-{sweep_dir.name}"
    for job in range(4):
        job_dir = sweep_dir / str(job)
        assert not (job_dir / ".hydra").exists()  # hydra.output_subdir is null
        pair = next((job_dir / "models").iterdir()).name
        for output in ("data/raw/sarcasm", f"data/tokenized/{pair}", f"models/{pair}/model.safetensors",
                       f"metrics/{pair}.json", f"plots/{pair}/train/learning_curves.png"):
            assert (job_dir / output).exists(), f"job {job}: {output} missing"
    for pair in ("sarcasm-tiny", "sarcasm-minilm"):  # the workspace's DVC outputs (if any) are untouched
        for output in ("data/raw/sarcasm", f"data/tokenized/{pair}", f"models/{pair}", f"metrics/{pair}.json"):
            path = REPO / output
            assert not path.exists() or path.stat().st_mtime < tiny_sweep["started"], f"a job wrote {path}"


def test_job_settings_read_the_sweep_file_and_share_the_cores(tmp_path, monkeypatch):
    (tmp_path / "sweep.json").write_text(json.dumps({"sweep_id": "s", "parent_run_id": "p", "experiment": "e"}))
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    hydra = OmegaConf.create({"sweep": {"dir": str(tmp_path)}, "job": {"num": 3}, "launcher": {"n_jobs": 3}})
    assert job_settings(hydra) == {"sweep_id": "s", "parent_run_id": "p", "experiment": "e", "job": 3,
                                   "torch_threads": 2}
    hydra.launcher.n_jobs = -1  # joblib: as many jobs as cores
    assert job_settings(hydra)["torch_threads"] == 1
    del hydra["launcher"]  # the basic launcher runs one job at a time: torch's own default
    assert "torch_threads" not in job_settings(hydra)


def test_a_failing_job_is_one_line_and_ends_the_parent_failed(tmp_path):
    from tests.conftest import run_stage, sweep_data

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    missing = tmp_path / "missing.jsonl"
    done = run_stage("pipeline.py", "-m", *sweep_data(tmp_path), "model=tiny", "pipeline.stages=[download]",
                     f"data.files.train={missing},{tmp_path / 'headlines.jsonl'}", cwd=tmp_path, uri=uri)
    assert done.returncode == 1
    assert f"error: {missing}" in done.stderr and "Traceback" not in done.stderr
    runs = search(uri)
    assert list(runs["status"]) == ["FAILED"] and list(runs["tags.sweep_role"]) == ["parent"]
    assert (next((tmp_path / "multirun").iterdir()) / "1" / "data" / "raw" / "sarcasm").exists()  # the other job ran


def test_an_unknown_pipeline_stage_is_one_line(tmp_path):
    from tests.conftest import run_stage, sweep_data

    done = run_stage("pipeline.py", *sweep_data(tmp_path), "model=tiny", "pipeline.stages=[download,tokenise]",
                     cwd=tmp_path, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: pipeline.stages: unknown stage 'tokenise' (did you mean 'tokenize'?)")
    assert "Traceback" not in done.stderr
    assert not Path(tmp_path / "data").exists()


def test_a_stage_swept_alone_reads_the_inputs_and_writes_per_job(tmp_path):
    """`stages/train.py -m` over what only training reads: each job reads the one tokenized folder
    (`paths.inputs`) and trains into its own folder, as a child run of the sweep."""
    from tests.conftest import run_stage, sweep_data

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepared = run_stage("pipeline.py", *sweep_data(tmp_path), "model=tiny", "pipeline.stages=[download,tokenize]",
                         cwd=tmp_path, uri=uri)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    tokenized = tmp_path / "data" / "tokenized" / "sarcasm-tiny"
    before = sorted((p.relative_to(tokenized), p.stat().st_mtime) for p in tokenized.rglob("*"))
    swept = run_stage("train.py", "-m", *sweep_data(tmp_path), "model=tiny", "train.learning_rate=1e-3,5e-3",
                      f"paths.inputs={tmp_path}", cwd=tmp_path, uri=uri)
    assert swept.returncode == 0, swept.stderr[-2000:]
    jobs = sorted((next((tmp_path / "multirun").iterdir())).iterdir())
    jobs = [job for job in jobs if job.is_dir()]
    assert len(jobs) == 2 and all((job / "models" / "sarcasm-tiny" / "model.safetensors").exists() for job in jobs)
    assert not (tmp_path / "models").exists()
    assert sorted((p.relative_to(tokenized), p.stat().st_mtime) for p in tokenized.rglob("*")) == before
    runs = search(uri)
    children = runs[runs["tags.sweep_id"].fillna("").str.startswith("train-") & (runs["tags.sweep_role"] != "parent")]
    assert sorted(children["params.train.learning_rate"]) == ["0.001", "0.005"]


def test_hydras_copy_of_the_sweep_config_keeps_no_credentials(tmp_path):
    from omegaconf import OmegaConf

    from finetune.sweep import redact_saved_config

    OmegaConf.save(OmegaConf.create({
        "tracking": {"uri": "http://alice:s3cret@mlflow.example:5000"},
        "hydra": {"overrides": {"task": ["tracking.uri=http://alice:s3cret@mlflow.example:5000",
                                         "+train.hub_token=hf_abc", "model=tiny"], "hydra": []}}}),
        tmp_path / "multirun.yaml")
    redact_saved_config(tmp_path)
    saved = (tmp_path / "multirun.yaml").read_text()
    assert "s3cret" not in saved and "hf_abc" not in saved and "alice" not in saved
    assert "model=tiny" in saved and "http://***@mlflow.example:5000" in saved
