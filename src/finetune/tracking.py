"""MLflow tracking: one run per trained (task, model) pair.

The train stage creates the run and records its id in the model folder (`run.json`); evaluate
and export reopen the same run. Runs always end FINISHED or FAILED, never stuck in RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune.config import flatten, to_container
from finetune.io import read_json

MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value's length
MAX_PARAM_KEY = 250
RUN_FILE = "run.json"


def tracking_uri(cfg: DictConfig) -> str:
    """MLFLOW_TRACKING_URI, else tracking.uri, else the SQLite store at the repository root."""
    return (os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking.get("uri")
            or f"sqlite:///{Path(cfg.paths.root).resolve() / 'mlflow.db'}")


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """All effective params as dotted keys, values cut to MLflow's length limits."""
    data = to_container(cfg)
    for key in ("matrix", "paths"):
        data.pop(key, None)
    params = {}
    for key, value in flatten(data).items():
        text = "null" if value is None else str(value)
        if len(text) > MAX_PARAM_VALUE:
            text = text[: MAX_PARAM_VALUE - 20] + f"...[{len(text)} chars]"
        params[key[:MAX_PARAM_KEY]] = text
    return params


def git_commit(root: str | Path) -> str:
    """HEAD's commit, suffixed `-dirty` when tracked files differ from it; `unknown` outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"
    with contextlib.suppress(subprocess.CalledProcessError):
        if git("status", "--porcelain", "--untracked-files=no"):
            commit += "-dirty"
    return commit


def run_tags(cfg: DictConfig, manifest: dict[str, Any]) -> dict[str, str]:
    return {"task": cfg.task.name, "model": cfg.model.name, "task_family": cfg.task.family,
            "git_commit": git_commit(cfg.paths.root), "data_sha256": manifest.get("data_sha256", "unknown"),
            "data_source": manifest.get("source", "unknown")}


@contextlib.contextmanager
def start_run(cfg: DictConfig, *, tags: dict[str, str] | None = None) -> Iterator[Any]:
    """Create the pair's run (train stage). Yields the active mlflow.ActiveRun or None if disabled."""
    if not cfg.tracking.enabled:
        yield None
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(cfg))
    use_experiment(mlflow, cfg.tracking.experiment)
    _end_stray_run(mlflow)
    name = f"{cfg.paths.pair}"
    with mlflow.start_run(run_name=name, tags=tags) as run:
        yield run


@contextlib.contextmanager
def resume_run(cfg: DictConfig, model_dir: str | Path) -> Iterator[Any]:
    """Reopen the run that trained the model in `model_dir` (evaluate, export stages)."""
    if not cfg.tracking.enabled:
        yield None
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(cfg))
    _end_stray_run(mlflow)
    run_file = Path(model_dir) / RUN_FILE
    run_id = read_json(run_file)["run_id"] if run_file.exists() else None
    if run_id is not None:
        try:
            mlflow.get_run(run_id)
        except Exception:  # noqa: BLE001 - a model trained against another store: start afresh
            run_id = None
    if run_id is None:
        use_experiment(mlflow, cfg.tracking.experiment)
        with mlflow.start_run(run_name=cfg.paths.pair, tags={"resumed_from": "missing"}) as run:
            yield run
        return
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def use_experiment(mlflow: Any, name: str) -> None:
    """Make `name` the active experiment, creating it if needed. With a SQLite store its artifacts
    go to `mlruns/` beside the database file (MLflow's default is `./mlruns` of whatever folder
    the process runs in), so a store and its artifacts always travel together."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(name) is None:
        store = Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns"
        mlflow.create_experiment(name, artifact_location=store.as_uri())
    mlflow.set_experiment(name)


def _end_stray_run(mlflow: Any) -> None:
    # An already active run (a notebook, a caller's run) would swallow ours (transformers #15663).
    if mlflow.active_run() is not None:
        mlflow.end_run()


def log_params(cfg: DictConfig) -> None:
    import mlflow

    params = flat_params(cfg)
    items = list(params.items())
    for start in range(0, len(items), 100):  # MLflow's batch limit
        mlflow.log_params(dict(items[start:start + 100]))


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics({_metric_key(k): v for k, v in metrics.items()}, step=step)


def _metric_key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . / and spaces; entity or class names may hold others.
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in key)


def log_artifacts(paths: list[Path], artifact_path: str | None = None) -> None:
    import mlflow

    for path in paths:
        if Path(path).is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        elif Path(path).exists():
            mlflow.log_artifact(str(path), artifact_path=artifact_path)
