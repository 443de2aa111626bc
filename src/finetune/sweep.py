"""Sweeps: a Hydra multirun is one MLflow parent run, each of its jobs a child run.

`SweepTracking` is a Hydra callback (conf/config.yaml, `hydra.callbacks`). Before any job starts it
creates the sweep's parent run (or reopens it: an Optuna study resumed under the same name keeps
its parent) and writes its id to `<sweep dir>/sweep.json`; every job reads that file
(`job_settings`) and creates its run as a child with the sweep's `sweep_id` tag. When the sweep
ends, the parent gets the best child's params and value and the sweeper's results, and ends
FINISHED; a sweep that dies ends it FAILED. Creating the store and the experiment before the jobs
start also keeps parallel jobs from racing to create them.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from finetune.io import read_json, write_json
from hydra_plugins.finetune_optuna import RESULTS_FILE

log = logging.getLogger("finetune")
SWEEP_FILE = "sweep.json"
PARENT_ROLE = "parent"


def sweep_id(config: DictConfig) -> str:
    """The sweep's name: the Optuna study's, else the stage script's and the sweep folder's (its
    start time), e.g. `pipeline-2026-12-02_10-00-00`."""
    study = OmegaConf.select(config, "hydra.sweeper.study_name", default=None)
    return str(study) if study else f"{Path(sys.argv[0]).stem}-{Path(config.hydra.sweep.dir).name}"


def job_settings(hydra_cfg: Any) -> dict[str, Any]:
    """What a multirun job adds to its config: its sweep's ids and its share of the CPU threads.

    Jobs run in parallel (`hydra/launcher=joblib`, `n_jobs`) divide the cores among them:
    2 jobs x 1 thread on 2 cores, not 2 x 2 fighting for them.
    """
    sweep_file = Path(hydra_cfg.sweep.dir) / SWEEP_FILE
    settings: dict[str, Any] = read_json(sweep_file) if sweep_file.exists() else {}
    settings["job"] = int(hydra_cfg.job.num)
    n_jobs = OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=None)
    if n_jobs is not None:
        cores = os.cpu_count() or 1
        parallel = cores if int(n_jobs) < 0 else int(n_jobs)
        settings["torch_threads"] = max(1, cores // max(1, parallel))
    return settings


class SweepTracking(Callback):
    """The Hydra callback that owns a sweep's parent run."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **_: Any) -> None:
        if not _tracking_enabled(config):
            return
        from finetune import offline, tracking

        name = sweep_id(config)
        experiment = str(config.tracking.experiment)
        uri = tracking.tracking_uri(config)
        if offline.is_remote(uri) and not offline.server_up(uri):
            print(f"warning: tracking server {uri} unreachable: sweep {name} has no parent run; each job's run "
                  "goes to its offline store (python -m finetune.offline sync)", file=sys.stderr)
            return
        tracking.connect(uri)
        self.run_id = tracking.parent_run(experiment, name, _sweep_overrides(config))
        write_json(Path(config.hydra.sweep.dir) / SWEEP_FILE,
                   {"sweep_id": name, "parent_run_id": self.run_id, "experiment": experiment})
        atexit.register(self._end, "FAILED")  # a sweep that raises never reaches on_multirun_end
        log.info("sweep %s: parent run %s in experiment '%s'", name, self.run_id, experiment)

    def on_multirun_end(self, config: DictConfig, **_: Any) -> None:
        redact_saved_config(Path(config.hydra.sweep.dir))
        if self.run_id is None:
            return
        from finetune import offline, tracking

        results_file = Path(config.hydra.sweep.dir) / RESULTS_FILE
        results = OmegaConf.to_container(OmegaConf.load(results_file)) if results_file.exists() else None
        try:
            summary = tracking.summarize_sweep(self.run_id, results)
        except Exception as error:
            if not offline.is_outage(error):
                raise
            print(f"warning: tracking server unreachable: sweep {sweep_id(config)}'s parent run keeps no summary",
                  file=sys.stderr)
            self.run_id = None
            return
        if summary:
            log.info("sweep %s: best run %s, %s", sweep_id(config), summary.get("best_run_id"),
                     summary.get("best_value"))
        self._end("FINISHED")

    def _end(self, status: str) -> None:
        if self.run_id is None:
            return
        from finetune import tracking

        tracking.end_parent(self.run_id, status)
        self.run_id = None


def redact_saved_config(sweep_dir: Path) -> None:
    """Hydra's copy of the sweep's config (`multirun.yaml`), its credentials replaced by ***."""
    from finetune.config_values import redacted, redacted_override

    saved = sweep_dir / "multirun.yaml"
    if not saved.exists():
        return
    data = redacted(OmegaConf.to_container(OmegaConf.load(saved), resolve=False))
    overrides = (data.get("hydra") or {}).get("overrides") or {}
    for kind in ("task", "hydra"):
        if overrides.get(kind):
            overrides[kind] = [redacted_override(str(o)) for o in overrides[kind]]
    OmegaConf.save(OmegaConf.create(data), saved)


def _tracking_enabled(config: DictConfig) -> bool:
    return bool(OmegaConf.select(config, "tracking.enabled", default=False))


def _sweep_overrides(config: DictConfig) -> str:
    from finetune.config_values import redacted_override

    return " ".join(redacted_override(o) for o in config.hydra.overrides.task)
