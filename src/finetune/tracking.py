"""MLflow tracking: one run per trained (task, model) pair.

The train stage creates the run and records its id in the model folder (`run.json`); evaluate
and export reopen the same run. Runs always end FINISHED or FAILED, never stuck in RUNNING.
A job of a sweep creates its run as a child of the sweep's parent run (finetune.sweep).

A tracking server that is down, or goes away mid-run, never stops a stage: the run goes on in a
local store and `python -m finetune.offline sync` copies it to the server later.

Parallel jobs share one SQLite store: every write retries while SQLite says "database is locked"
(a deferred transaction cannot wait for a writer), and two jobs creating the same experiment both
use it.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune import distributed, offline
from finetune.config_values import flatten, redacted, to_container
from finetune.io import read_json

MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value's length
MAX_PARAM_KEY = 250
RUN_FILE = "run.json"
NOT_PARAMS = ("matrix", "paths")
NOT_PARAM_KEYS = ("tracking.parent_run_id", "tracking.run_name")  # tags (mlflow.parentRunId, runName)
RETRIES = 12
TRANSIENT = ("database is locked", "database table is locked", "unique constraint failed")


def tracking_uri(cfg: DictConfig) -> str:
    """MLFLOW_TRACKING_URI, else tracking.uri, else the SQLite store at the repository root."""
    return store_uri(cfg.paths.root, cfg.tracking.get("uri"))


def store_uri(root: str | Path, configured: str | None = None) -> str:
    """MLFLOW_TRACKING_URI, else `configured`, else the SQLite store `mlflow.db` in `root`."""
    return (os.environ.get("MLFLOW_TRACKING_URI") or configured
            or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}")


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` store, None for any other store."""
    return Path(uri.removeprefix("sqlite:///")).resolve() if uri.startswith("sqlite:///") else None


def flat_params(cfg: DictConfig | dict[str, Any]) -> dict[str, str]:
    """All effective params as dotted keys, values cut to MLflow's length limits."""
    data = redacted(to_container(cfg) if isinstance(cfg, DictConfig) else dict(cfg))
    for key in NOT_PARAMS:
        data.pop(key, None)
    params = {}
    for key, value in flatten(data).items():
        if key in NOT_PARAM_KEYS:
            continue
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
    """What MLflow's compare view filters and groups by. `dvc_stage` / `dvc_exp` are set when DVC
    runs the stage (`dvc repro`, `dvc exp run`); the sweep tags when Hydra's multirun does."""
    tags = {"task": cfg.task.name, "model": cfg.model.name, "task_family": cfg.task.family,
            "git_commit": git_commit(cfg.paths.root), "data_sha256": manifest.get("data_sha256", "unknown"),
            "data_source": manifest.get("source", "unknown"),
            "dvc_stage": os.environ.get("DVC_STAGE", ""), "dvc_exp": os.environ.get("DVC_EXP_NAME", "")}
    if cfg.tracking.get("parent_run_id"):
        tags |= {"mlflow.parentRunId": cfg.tracking.parent_run_id, "sweep_id": cfg.tracking.sweep_id}
    return {key: value for key, value in tags.items() if value}


def retrying(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)`, retried with jittered backoff while the store is busy."""
    for attempt in range(RETRIES):
        try:
            return call(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - MLflow wraps SQLAlchemy's errors in its own
            if attempt == RETRIES - 1 or not any(text in str(error).lower() for text in TRANSIENT):
                raise
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def connect(uri: str) -> None:
    """Point MLflow at `uri` and open its store. Processes opening one new SQLite store at once
    would all create and migrate its tables (duplicate columns, alembic version mismatches): a lock
    file beside the database lets one do it while the others wait."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    database = sqlite_file(uri)
    if database is None:
        retrying(mlflow.search_experiments, max_results=1)
        return
    import fcntl

    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            retrying(mlflow.search_experiments, max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def start_run(cfg: DictConfig, *, tags: dict[str, str] | None = None, run_id: str | None = None) -> Iterator[Any]:
    """Create the pair's run (train stage), or reopen `run_id` (a resumed train) if the store has it.
    Yields the active mlflow.ActiveRun, or None if disabled or in a distributed run's other processes."""
    if not cfg.tracking.enabled or not distributed.is_main():
        yield None
        return
    with _opened(cfg, tracking_uri(cfg), run_id, tags or {}) as run:
        yield run


@contextlib.contextmanager
def resume_run(cfg: DictConfig, model_dir: str | Path) -> Iterator[Any]:
    """Reopen the run that trained the model in `model_dir` (evaluate, export stages): in the offline
    store if training ran there, else where tracking points (a new run if that store lacks it)."""
    if not cfg.tracking.enabled:
        yield None
        return
    run_file = Path(model_dir) / RUN_FILE
    record = read_json(run_file) if run_file.exists() else {}
    uri = offline_uri(cfg) if record.get("store") == "offline" else tracking_uri(cfg)
    with _opened(cfg, uri, record.get("run_id"), {"resumed_from": "missing"}) as run:
        yield run


def offline_uri(cfg: DictConfig) -> str:
    """Where runs go while the tracking server is unreachable (finetune.offline syncs them later)."""
    return cfg.tracking.get("offline_uri") or f"sqlite:///{Path(cfg.paths.out).resolve() / 'mlflow-offline.db'}"


def run_record(cfg: DictConfig) -> dict[str, Any]:
    """What `run.json` beside a model says of its run: its id and whether it lives in the offline store."""
    import mlflow

    run = mlflow.active_run() if cfg.tracking.enabled else None
    offline = run is not None and _session is not None and mlflow.get_tracking_uri() == _session.offline
    return {"run_id": run.info.run_id if run else None, "experiment": cfg.tracking.experiment,
            "store": "offline" if offline else "configured"}


def in_offline_store(cfg: DictConfig) -> bool:
    """Whether the active run lives in the offline store (the server was unreachable)."""
    return run_record(cfg)["store"] == "offline"


def went_offline(error: BaseException) -> bool:
    """Whether `error` is the tracking server going away; if so the run has moved to the offline store."""
    if _session is None or _session.server is None or not offline.is_outage(error):
        return False
    _go_offline(error)
    return True


@dataclass
class _Session:
    """The active run, and what moving it to the offline store takes: every write since it opened."""

    experiment: str
    name: str
    tags: dict[str, str]
    offline: str                # the offline store's uri
    server: str | None          # the server the run logs to; None for a local store, or once offline
    server_run_id: str | None   # the server run an offline run continues (sync merges it there)
    journal: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)


_session: _Session | None = None


@contextlib.contextmanager
def _opened(cfg: DictConfig, uri: str, run_id: str | None, tags: dict[str, str]) -> Iterator[Any]:
    """Reopen `run_id` if the store at `uri` has it, else start a run tagged `tags`; end it on exit.

    A tracking server that is down, or goes away at any later write, costs one warning line: the
    run moves to the offline store and the stage goes on (finetune.offline).
    """
    global _session
    import mlflow

    server = uri if offline.is_remote(uri) else None
    if server:
        for key, value in offline.FAST_FAILURE.items():
            os.environ.setdefault(key, value)
    _session = _Session(cfg.tracking.experiment, cfg.tracking.run_name, tags, offline_uri(cfg), server, run_id)
    try:
        if server and not offline.server_up(server):
            _go_offline(f"no answer from {server}/health")
        else:
            try:
                connect(uri)
                use_experiment(mlflow, cfg.tracking.experiment)
                _end_stray_run(mlflow)
                if run_id is not None and run_exists(mlflow, run_id):
                    retrying(mlflow.start_run, run_id=run_id)
                else:
                    retrying(mlflow.start_run, run_name=cfg.tracking.run_name, tags=tags)
            except Exception as error:
                if server is None or not offline.is_outage(error):
                    raise
                _go_offline(error)
        with _ending():
            yield mlflow.active_run()
    finally:
        _session = None


def _go_offline(reason: BaseException | str) -> None:
    """Say once that the server is unreachable; go on with the run in the offline store, where
    everything written so far is written again."""
    import mlflow

    session = _session
    assert session is not None and session.server is not None
    why = str(reason).strip().splitlines()[0][:160] if str(reason).strip() else type(reason).__name__
    store = session.offline.removeprefix("sqlite:///")
    print(f"warning: tracking server {session.server} unreachable ({why}); this run goes on in {session.offline}; "
          f"sync it later with `python -m finetune.offline sync {store}`", file=sys.stderr)
    active = mlflow.active_run()
    if active is not None:
        session.server_run_id = active.info.run_id
        with contextlib.suppress(Exception):  # takes it off MLflow's stack; the server cannot be told
            mlflow.end_run("FAILED")
    connect(session.offline)
    use_experiment(mlflow, session.experiment)
    retrying(mlflow.start_run, run_name=session.name,
             tags=session.tags | {offline.SYNC_TO: session.server, offline.SERVER_RUN: session.server_run_id or ""})
    session.server = None
    for name, args, kwargs in session.journal:
        retrying(getattr(mlflow, name), *args, **kwargs)


def _write(name: str, *args: Any, **kwargs: Any) -> Any:
    """`mlflow.<name>(...)` on the active run, remembered so that an outage can replay it."""
    import mlflow

    session = _session
    if session is not None:
        session.journal.append((name, args, kwargs))
    try:
        return retrying(getattr(mlflow, name), *args, **kwargs)
    except Exception as error:
        if session is None or session.server is None or not offline.is_outage(error):
            raise
        _go_offline(error)
        return None


def run_exists(client: Any, run_id: str) -> bool:
    """Whether the store holds `run_id` (`client`: the mlflow module or an MlflowClient). Only the
    store's own "does not exist" is a no: a busy store is asked again (`retrying`) and any other
    failure is raised, never taken for a lost run (which would start a second run of one training)."""
    from mlflow.exceptions import MlflowException

    try:
        retrying(client.get_run, run_id)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


@contextlib.contextmanager
def _ending() -> Iterator[None]:
    """End the active run FINISHED, or FAILED if the block raises (KILLED on Ctrl-C)."""
    try:
        yield
    except KeyboardInterrupt:
        _write("end_run", "KILLED")
        raise
    except BaseException:
        _write("end_run", "FAILED")
        raise
    _write("end_run", "FINISHED")


def use_experiment(mlflow: Any, name: str) -> None:
    """Make `name` the active experiment, creating it if needed. With a SQLite store its artifacts
    go to `mlruns/` beside the database file (MLflow's default is `./mlruns` of whatever folder
    the process runs in), so a store and its artifacts always travel together."""
    experiment_id(name)
    retrying(mlflow.set_experiment, name)


def experiment_id(name: str) -> str:
    """The id of experiment `name`, created if missing; a job that loses the race to create it uses
    the winner's."""
    import mlflow

    found = retrying(mlflow.get_experiment_by_name, name)
    if found is not None:
        return found.experiment_id
    database = sqlite_file(mlflow.get_tracking_uri())
    location = (database.parent / "mlruns").as_uri() if database else None
    try:
        return retrying(mlflow.create_experiment, name, artifact_location=location)
    except Exception:  # noqa: BLE001 - RESOURCE_ALREADY_EXISTS: another job created it first
        found = retrying(mlflow.get_experiment_by_name, name)
        if found is None:
            raise
        return found.experiment_id


def _end_stray_run(mlflow: Any) -> None:
    # An already active run (a notebook, a caller's run) would swallow ours (transformers #15663).
    if mlflow.active_run() is not None:
        mlflow.end_run()


def log_params(cfg: DictConfig, recorded: dict[str, Any] | None = None) -> None:
    """The stage's config as params, plus `recorded` ones (what the data says it was made with)."""

    params = flat_params(cfg) | (flat_params(recorded) if recorded else {})
    items = list(params.items())
    for start in range(0, len(items), 100):  # MLflow's batch limit
        _write("log_params", dict(items[start:start + 100]))


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    _write("log_metrics", {_metric_key(k): v for k, v in metrics.items()}, step=step)


def set_tags(tags: dict[str, str]) -> None:
    _write("set_tags", tags)


def log_choice(name: str, choice: Any, rates: bool = True) -> None:
    """A measured fast-path choice (finetune.calibration.Choice): the decision and its reason as
    tags `<name>` and `<name>_choice`, and (`rates`) its rates as metrics."""
    set_tags({name: str(choice.use).lower(), f"{name}_choice": choice.reason})
    if rates:
        log_metrics({k: v for k, v in choice.summary(name).items() if not isinstance(v, bool)})


def _metric_key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . / and spaces; entity or class names may hold others.
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in key)


def log_artifacts(paths: list[Path], artifact_path: str | None = None) -> None:
    for path in paths:
        if Path(path).is_dir():
            _write("log_artifacts", str(path), artifact_path=artifact_path)
        elif Path(path).exists():
            _write("log_artifact", str(path), artifact_path=artifact_path)


def parent_run(experiment: str, sweep_id: str, overrides: str) -> str:
    """The id of sweep `sweep_id`'s parent run in `experiment`: reopened if a run of that sweep
    exists (a resumed Optuna study), else created."""
    from mlflow import MlflowClient

    client = MlflowClient()
    exp_id = experiment_id(experiment)
    found = retrying(client.search_runs, [exp_id], f"tags.sweep_id = '{sweep_id}' and tags.sweep_role = 'parent'",
                     max_results=1)
    if found:
        retrying(client.update_run, found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    run = retrying(client.create_run, exp_id, run_name=sweep_id,
                   tags={"sweep_id": sweep_id, "sweep_role": "parent", "sweep_overrides": overrides})
    return run.info.run_id


def sweep_children(parent_run_id: str) -> list[Any]:
    """Every run of the sweep whose parent is `parent_run_id`, in any experiment."""
    from mlflow import MlflowClient

    client = MlflowClient()
    experiments = [e.experiment_id for e in retrying(client.search_experiments)]
    return retrying(client.search_runs, experiments, f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                    max_results=5000)


def summarize_sweep(parent_run_id: str, results: dict[str, Any] | None) -> dict[str, Any]:
    """Tag the parent with its children's outcome and the best child's params (those the sweep
    varied) and value; `results` is an Optuna sweeper's best params and value, if any."""
    from mlflow import MlflowClient

    client = MlflowClient()
    children = sweep_children(parent_run_id)
    scored = [run for run in children if run.info.status == "FINISHED" and "best_metric" in run.data.metrics]
    summary: dict[str, Any] = {"runs": len(children), "runs_finished": len(scored)}
    tags: dict[str, str] = {}
    if scored:
        greater = scored[0].data.tags.get("greater_is_better", "true") == "true"
        best = (max if greater else min)(scored, key=lambda run: run.data.metrics["best_metric"])
        varied = differing_params([run.data.params for run in scored])
        summary |= {"best_run_id": best.info.run_id, "best_value": best.data.metrics["best_metric"]}
        tags |= {"best_run_id": best.info.run_id, "primary_metric": best.data.tags.get("primary_metric", "")}
        tags |= {f"best.{key}": best.data.params[key] for key in sorted(varied) if key in best.data.params}
    if results:
        tags |= {f"optuna.best.{key}": str(value) for key, value in (results.get("best_params") or {}).items()}
        if results.get("best_value") is not None:
            summary["optuna_best_value"] = float(results["best_value"])
    for key, value in tags.items():
        retrying(client.set_tag, parent_run_id, key[:MAX_PARAM_KEY], value[:MAX_PARAM_VALUE])
    for key in ("runs", "runs_finished", "best_value", "optuna_best_value"):
        if key in summary:
            retrying(client.log_metric, parent_run_id, key, float(summary[key]))
    return summary


NOT_RECIPE = ("train.torch_threads", "train.disable_tqdm", "data.num_proc")  # resources, not the recipe


def differing_params(params: list[dict[str, str]]) -> list[str]:
    """The keys whose values differ between runs' params: what a comparison shows. A model's own keys
    follow from its name (`model.name`), tracking keys and resources change no result."""
    keys = set().union(*params) if params else set()
    return sorted(key for key in keys if len({p.get(key) for p in params}) > 1 and key not in NOT_RECIPE
                  and not key.startswith("tracking.") and (key == "model.name" or not key.startswith("model.")))


def end_parent(run_id: str, status: str) -> None:
    from mlflow import MlflowClient

    retrying(MlflowClient().set_terminated, run_id, status)
