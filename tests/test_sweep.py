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


def hydra_config(*overrides: str):
    """Hydra's own config as a sweep with these overrides would compose it."""
    import os

    from hydra import compose, initialize_config_dir

    from finetune.config import ROOT_ENV

    os.environ[ROOT_ENV] = str(REPO)
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_the_slurm_launcher_composes_into_the_plugins_launcher_with_the_fields_a_cluster_needs():
    import pytest
    from hydra.errors import ConfigCompositionException
    from hydra.utils import instantiate

    cfg = hydra_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4",
                       "hydra.launcher.timeout_min=30", "+hydra.launcher.additional_parameters.mail-type=FAIL")
    launcher = instantiate(cfg.hydra.launcher)  # the plugin's own class takes every field
    assert type(launcher).__name__ == "SlurmLauncher"
    params = launcher.params
    assert (params["partition"], params["gpus_per_node"], params["timeout_min"]) == ("gpu", 4, 30)
    assert (params["cpus_per_task"], params["mem_gb"], params["tasks_per_node"]) == (8, 32, 1)
    assert params["additional_parameters"] == {"mail-type": "FAIL"}
    assert params["submitit_folder"].startswith("multirun/") and params["submitit_folder"].endswith("/.submitit/%j")
    assert hydra_config("hydra/launcher=slurm").hydra.launcher.partition is None, "the cluster's default"
    with pytest.raises(ConfigCompositionException, match="partiton"):
        hydra_config("hydra/launcher=slurm", "hydra.launcher.partiton=gpu")  # the plugin's schema refuses typos


def test_the_ray_launcher_composes_with_each_jobs_resources(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head.example:10001")
    launcher = hydra_config("hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_gpus=2").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher.ray.init.address == "ray://head.example:10001"
    assert dict(launcher.ray.remote) == {"num_gpus": 2, "num_cpus": 8, "memory": 32 * 2**30, "max_calls": 1}


def test_the_ray_launcher_config_fits_the_plugins_schema():
    import pytest

    try:
        from hydra_plugins.hydra_ray_launcher._config import RayLauncherConf
    except ImportError:
        pytest.skip("hydra-ray-launcher is not installed (pip install hydra-ray-launcher; see the README)")
    from hydra.utils import get_class

    launcher = hydra_config("hydra/launcher=ray_cluster").hydra.launcher
    merged = OmegaConf.merge(OmegaConf.structured(RayLauncherConf), launcher)  # raises on a field it lacks
    assert merged.ray.remote.num_cpus == 8 and get_class(launcher._target_).__name__ == "RayLauncher"


def test_a_sweep_through_submitit_runs_each_job_as_its_own_process_under_one_parent(tmp_path):
    """hydra/launcher=submitit_local: the jobs are pickled, run by submitit in processes of their
    own (as on SLURM, without the cluster), and still land under the sweep's parent run."""
    from tests.conftest import run_stage, sweep_data

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = run_stage("pipeline.py", "-m", *sweep_data(tmp_path), "model=tiny", "train.learning_rate=1e-3,5e-3",
                     "train.torch_threads=1", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                     cwd=tmp_path, uri=uri)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = search(uri)
    parents = runs[runs["tags.sweep_role"] == "parent"]
    children = runs[runs["tags.sweep_role"] != "parent"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    assert len(children) == 2 and set(children["status"]) == {"FINISHED"}
    assert set(children["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    assert sorted(children["params.train.learning_rate"]) == ["0.001", "0.005"]
    sweep_dir = next((tmp_path / "multirun").iterdir())
    job_logs = sorted((sweep_dir / ".submitit").glob("*/*_log.out"))
    assert len(job_logs) == 2, "submitit ran (and logged) each job"
    assert parents.iloc[0]["tags.best_run_id"] in set(children["run_id"])
