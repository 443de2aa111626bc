"""The stage entry point: `@stage` turns `func(cfg)` into a Hydra command of the repository, with
errors as one line, SIGTERM ending a run as Ctrl-C does, and a multirun job's sweep settings."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException, HydraException
from omegaconf import DictConfig, open_dict
from omegaconf.errors import OmegaConfBaseException

from finetune import distributed
from finetune.config import (
    PARAMS_FILE,
    ROOT_ENV,
    check_group_choices,
    open_section_overrides,
    validate,
    value_overrides,
    with_workspace_params,
)
from finetune.errors import FinetuneError
from finetune.pipeline.stage_table import BY_SCRIPT, stage_config, unheard
from finetune.schema import known_keys, suggestion


def stage(func: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """Turn `func(cfg)` into a Hydra entrypoint of the repository holding the calling script.

    The config is conf/config.yaml's composition with params.yaml and the command line over it,
    checked whole (finetune.schema); a stage of the stage table is given only the sections the
    table says it reads.
    """
    script = Path(inspect.getfile(func)).resolve()
    root = script.parent.parent
    table_row = BY_SCRIPT.get(script.name)  # None for stages/pipeline.py, which runs them all

    def prepare(cfg: DictConfig, hydra_cfg: Any) -> DictConfig:
        from hydra.types import RunMode

        overrides = list(hydra_cfg.overrides.task)
        cfg = with_workspace_params(cfg, root / PARAMS_FILE, overrides)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            cfg = with_sweep_settings(cfg, hydra_cfg)
        validate(cfg, root / "conf")
        running = [table_row.name] if table_row else list(cfg.pipeline.stages)
        for line in unheard([key for key, _ in value_overrides(overrides)], running, chained=table_row is None):
            print(line, file=sys.stderr)
        return stage_config(cfg, table_row) if table_row else cfg

    def arguments(overrides: list[str]) -> list[str]:
        check_group_choices(root / "conf", overrides)
        return open_section_overrides(root / "conf", overrides)

    return functools.wraps(func)(hydra_command(func, root, "config", prepare, arguments))


def command(func: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """A command with a config file of its own, conf/<script name>.yaml (stages/report.py):
    Hydra's `key=value` overrides, the same one-line errors and signals as a stage."""
    script = Path(inspect.getfile(func)).resolve()
    return functools.wraps(func)(hydra_command(func, script.parent.parent, script.stem, lambda cfg, _: cfg))


def hydra_command(func: Callable[[DictConfig], Any], root: Path, config_name: str,
                  prepare: Callable[[DictConfig, Any], DictConfig],
                  arguments: Callable[[list[str]], list[str]] | None = None) -> Callable[[], Any]:
    """`func` run by Hydra on conf/<config_name>.yaml, its config passed through `prepare` first;
    `arguments` checks and rewrites the command line's arguments before Hydra parses them.

    Errors the user can act on (FinetuneError) are printed as one line and exit with status 1;
    Hydra's own (a bad override) exit with 2. SIGTERM ends the run as Ctrl-C does (KILLED in MLflow).
    """

    def main() -> Any:
        import hydra
        from hydra.types import RunMode

        os.environ[ROOT_ENV] = str(root)
        if arguments is not None:
            sys.argv[1:] = arguments(sys.argv[1:])
        signal.signal(signal.SIGTERM, _terminate)
        full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors to us rather than printing them itself

        @hydra.main(version_base="1.3", config_path=str(root / "conf"), config_name=config_name)
        def run(cfg: DictConfig) -> Any:
            from hydra.core.hydra_config import HydraConfig

            hydra_cfg = HydraConfig.get()
            if not distributed.is_main():  # one copy of each log line in a distributed run
                logging.getLogger("finetune").setLevel(logging.WARNING)
            try:
                return func(prepare(cfg, hydra_cfg))
            except (FinetuneError, OmegaConfBaseException) as error:  # a bad value, key or interpolation
                line = f"error: {error}" if isinstance(error, FinetuneError) else hydra_error_line(error, root / "conf")
                if hydra_cfg.mode == RunMode.MULTIRUN:  # the sweeper records the failed job and goes on
                    raise JobFailed(line) from None
                print(line, file=sys.stderr)
                sys.exit(1)

        try:
            return run()
        except Terminated:
            print("error: terminated (SIGTERM)", file=sys.stderr)
            sys.exit(143)
        except KeyboardInterrupt:  # Ctrl-C, SIGINT: the run already ended KILLED in MLflow
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
        except (HydraException, OmegaConfBaseException) as error:
            if full_error:
                raise
            print(hydra_error_line(error, root / "conf"), file=sys.stderr)
            sys.exit(1 if isinstance(error, JobFailed) else 2)

    return main


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler, `dvc` stopping): unwinds like Ctrl-C, so runs end KILLED."""


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise Terminated()


def hydra_error_line(error: BaseException, conf_dir: Path) -> str:
    """Hydra's or OmegaConf's error as one line; an override of an unknown key gets a suggestion."""
    text = str(error)
    if text.startswith("error: "):  # a multirun job's error, already one line
        return text
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        if key in known_keys(str(conf_dir.resolve())):  # a key of conf/family/<another family>.yaml
            return f"error: '{key}' is not a key of this task's family (conf/family/ lists each family's keys)"
        return f"error: '{key}' is not a config key{suggestion(key, conf_dir)}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("See https")]
    override = getattr(error, "override", None)  # a parse error of one command-line override
    prefix = f"cannot parse the override '{override}': " if override else ""
    return "error: " + prefix + "; ".join(lines)[:400]


class JobFailed(CompactHydraException):
    """A multirun job's FinetuneError: Hydra prints the message alone (no traceback) when it
    reports the failed job, and the Optuna sweeper counts the trial failed."""


def with_sweep_settings(cfg: DictConfig, hydra_cfg: Any) -> DictConfig:
    """A multirun job's config: its run's name and sweep, and its share of the cores unless
    `train.torch_threads` is set."""
    from finetune.sweep import job_settings

    settings = job_settings(hydra_cfg)
    with open_dict(cfg):
        if not any(o.lstrip("+").startswith("paths.inputs=") for o in hydra_cfg.overrides.task):
            cfg.paths.inputs = cfg.paths.root  # a job reads the workspace's outputs, writes in its own folder
        cfg.tracking.run_name = f"{cfg.paths.pair}-{settings['job']}"
        if "parent_run_id" in settings:
            cfg.tracking.sweep_id = settings["sweep_id"]
            cfg.tracking.parent_run_id = settings["parent_run_id"]
        if "torch_threads" in settings and cfg.train.get("torch_threads") is None:
            cfg.train.torch_threads = settings["torch_threads"]
    return cfg


