"""Runs that a tracking server outage sent to a local store, and the command that syncs them.

When the server (`tracking.uri` / MLFLOW_TRACKING_URI over HTTP) is down at a stage's start, or
goes away mid-run, finetune.tracking says so once and moves the run to a local SQLite store
(`tracking.offline_uri`, default `mlflow-offline.db` beside the outputs): training never waits
on tracking. Such a run carries the tags `sync_to` (the server) and `server_run_id` (the run it
continues there, if any). Once the server is back:

    python -m finetune.offline sync [STORE]     # STORE default: sqlite:///mlflow-offline.db

copies each such run to its server: params and metric points the server run lacks, tags,
artifacts and the final status, into the run it continues (a run cut off mid-training, or the
train run that an offline evaluate belongs to) or a new run, then tags the local run `synced_run_id`.
An export made offline registers its model there too, with its promotion gate (`significant`
keeps the champion: the paired comparison needs the server's champion at export time).
"""

from __future__ import annotations

import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError

SYNC_TO, SERVER_RUN, SYNCED = "sync_to", "server_run_id", "synced_run_id"
REGISTER = "register_on_sync"  # an export's registry request made while the server was unreachable (JSON)
DEFAULT_STORE = "sqlite:///mlflow-offline.db"
PROBE_SECONDS = 3.0
# A server call that fails gives up after a few seconds instead of MLflow's default of minutes of retries.
FAST_FAILURE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
BATCH = 1000  # MLflow's limit on metrics per log_batch


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def server_up(uri: str) -> bool:
    """Whether the tracking server answers its health check within a few seconds."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_SECONDS) as response:
            return response.status == 200
    except OSError:
        return False


def is_outage(error: BaseException) -> bool:
    """Whether an MLflow call failed because the server could not be reached (not a bad request)."""
    text = str(error)
    return ("API request to" in text and "failed with exception" in text) or "Max retries exceeded" in text \
        or type(error).__module__.startswith(("requests", "urllib3"))


def pending(store: str) -> list[Any]:
    """The runs of `store` that wait to be synced to a server."""
    from mlflow import MlflowClient

    client = MlflowClient(store)
    runs = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=50_000):
            if run.data.tags.get(SYNC_TO) and SYNCED not in run.data.tags:
                runs.append(run)
    return runs


def sync(store: str = DEFAULT_STORE) -> list[tuple[str, str, str]]:
    """Copy every pending run of `store` to its server; (run name, server, server run id) each."""
    from mlflow import MlflowClient

    if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).is_file():
        raise FinetuneError(f"{store}: no such offline store (runs go there only while a server is down)")
    local = MlflowClient(store)
    done = []
    for run in pending(store):
        server = run.data.tags[SYNC_TO]
        if not server_up(server):
            raise FinetuneError(f"{server} is still unreachable; run {run.info.run_name} stays in {store}")
        remote = MlflowClient(server)
        target = _target_run(local, remote, run)
        _copy(local, remote, run, target)
        if REGISTER in run.data.tags:
            _register(server, target, run)
        local.set_tag(run.info.run_id, SYNCED, target)
        done.append((run.info.run_name, server, target))
    return done


def _target_run(local: Any, remote: Any, run: Any) -> str:
    """The server run that `run` continues if the server has it, else a new one in its experiment."""
    from finetune.tracking import run_exists

    continued = run.data.tags.get(SERVER_RUN)
    if continued and run_exists(remote, continued):  # a new run only where the server says it lost it
        return continued
    name = local.get_experiment(run.info.experiment_id).name
    found = remote.get_experiment_by_name(name)
    experiment = found.experiment_id if found else remote.create_experiment(name)
    return remote.create_run(experiment, start_time=run.info.start_time, run_name=run.info.run_name).info.run_id


def _register(server: str, target: str, run: Any) -> None:
    """The export stage's registry request, on the server, in the run it belongs to there."""
    import json

    import mlflow

    from finetune.export import registry

    request = json.loads(run.data.tags[REGISTER])
    mlflow.set_tracking_uri(server)
    mlflow.start_run(run_id=target)
    try:
        decision = registry.register(request)
    finally:
        mlflow.end_run(run.info.status)
    print(registry.summary(request["name"], decision))


def _copy(local: Any, remote: Any, run: Any, target: str) -> None:
    from mlflow.entities import Metric, Param, RunTag

    there = remote.get_run(target).data
    params = [Param(k, v) for k, v in run.data.params.items() if k not in there.params]
    tags = [RunTag(k, v) for k, v in run.data.tags.items()
            if k not in (SYNC_TO, SERVER_RUN, "mlflow.runName") and there.tags.get(k) != v]
    metrics = []
    for key in run.data.metrics:
        have = {(m.step, m.value) for m in remote.get_metric_history(target, key)} if key in there.metrics else set()
        metrics += [Metric(key, m.value, m.timestamp, m.step) for m in local.get_metric_history(run.info.run_id, key)
                    if (m.step, m.value) not in have]
    for start in range(0, len(params), 100):  # MLflow's limit on params per batch
        remote.log_batch(target, params=params[start:start + 100])
    for start in range(0, len(metrics), BATCH):
        remote.log_batch(target, metrics=metrics[start:start + BATCH])
    if tags:
        remote.log_batch(target, tags=tags)
    with tempfile.TemporaryDirectory() as tmp:
        if local.list_artifacts(run.info.run_id):
            local.download_artifacts(run.info.run_id, "", tmp)
            remote.log_artifacts(target, tmp)
    remote.set_terminated(target, run.info.status, end_time=run.info.end_time)


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "sync" or len(argv) > 2:
        print("usage: python -m finetune.offline sync [STORE]   (STORE default: sqlite:///mlflow-offline.db)",
              file=sys.stderr)
        return 2
    store = argv[1] if len(argv) == 2 else DEFAULT_STORE
    if "://" not in store:
        store = f"sqlite:///{Path(store).resolve()}"
    try:
        done = sync(store)
    except FinetuneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, server, target in done:
        print(f"synced {name} -> {server} run {target}")
    if not done:
        print(f"nothing to sync in {store}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
