"""Config composition for the stage scripts.

Precedence, lowest first: `conf/` (with the task preset), `params.yaml` (the DVC-tracked
workspace overrides), the command line. So a stage run by `dvc repro` or
`dvc exp run -S train.learning_rate=3e-5` sees exactly the values DVC tracks, and a direct
`python stages/train.py train.learning_rate=3e-5` still wins over both.

In params.yaml a null leaf means "not set here: keep the default from conf/". The keys users
tune most are listed there as nulls so that `dvc exp run -S key=value` can set them (DVC only
modifies keys that exist).
"""

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
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from finetune import distributed
from finetune.errors import FinetuneError

ROOT_ENV = "FINETUNE_ROOT"
PARAMS_FILE = "params.yaml"
CONFIG_GROUPS_CHECKED = ("task", "model", "train", "data", "tracking", "export", "hparams_search")
NOT_CONFIG = ("matrix",)  # params.yaml keys that steer DVC rather than the stages
OPEN_SECTIONS = ("train",)  # any TrainingArguments field may be added (checked in finetune.training)


def stage(func: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """Turn `func(cfg)` into a Hydra entrypoint of the repository holding the calling script.

    Errors the user can act on (FinetuneError) are printed as one line and exit with status 1;
    Hydra's own (a bad override) exit with 2. SIGTERM ends the run as Ctrl-C does (KILLED in MLflow).
    """
    root = Path(inspect.getfile(func)).resolve().parent.parent

    @functools.wraps(func)
    def main() -> Any:
        import hydra
        from hydra.types import RunMode

        os.environ[ROOT_ENV] = str(root)
        check_group_choices(root / "conf", sys.argv[1:])
        signal.signal(signal.SIGTERM, _terminate)
        full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors to us rather than printing them itself

        @hydra.main(version_base="1.3", config_path=str(root / "conf"), config_name="config")
        def run(cfg: DictConfig) -> Any:
            from hydra.core.hydra_config import HydraConfig

            hydra_cfg = HydraConfig.get()
            if not distributed.is_main():  # one copy of each log line in a distributed run
                logging.getLogger("finetune").setLevel(logging.WARNING)
            try:
                cfg = with_workspace_params(cfg, root / PARAMS_FILE, list(hydra_cfg.overrides.task))
                if hydra_cfg.mode == RunMode.MULTIRUN:
                    cfg = with_sweep_settings(cfg, hydra_cfg)
                validate(cfg, root / "conf")
                return func(cfg)
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
    from finetune.schema import suggestion

    text = str(error)
    if text.startswith("error: "):  # a multirun job's error, already one line
        return text
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        return f"error: '{key}' is not a config key{suggestion(key, conf_dir)}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("See https")]
    override = getattr(error, "override", None)  # a parse error of one command-line override
    prefix = f"cannot parse the override '{override}': " if override else ""
    return "error: " + prefix + "; ".join(lines)[:400]


class JobFailed(CompactHydraException):
    """A multirun job's FinetuneError: Hydra prints the message alone (no traceback) when it
    reports the failed job, and the Optuna sweeper counts the trial failed."""


def validate(cfg: DictConfig, conf_dir: Path) -> None:
    from finetune.schema import validate as check

    check(cfg, conf_dir)


def with_sweep_settings(cfg: DictConfig, hydra_cfg: Any) -> DictConfig:
    """A multirun job's config: its run's name and sweep, and its share of the cores unless
    `train.torch_threads` is set."""
    from finetune.sweep import job_settings

    settings = job_settings(hydra_cfg)
    with open_dict(cfg):
        cfg.tracking.run_name = f"{cfg.paths.pair}-{settings['job']}"
        if "parent_run_id" in settings:
            cfg.tracking.sweep_id = settings["sweep_id"]
            cfg.tracking.parent_run_id = settings["parent_run_id"]
        if "torch_threads" in settings and cfg.train.get("torch_threads") is None:
            cfg.train.torch_threads = settings["torch_threads"]
    return cfg


def check_group_choices(conf_dir: Path, overrides: list[str]) -> None:
    """Reject `task=foo` / `model=foo` naming no config file, in one line (Hydra's is long)."""
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in CONFIG_GROUPS_CHECKED or "," in value or "(" in value:
            continue
        known = sorted(p.stem for p in (conf_dir / key).glob("*.yaml"))
        if value not in known:
            print(f"error: unknown {key} '{value}' (known: {', '.join(known)}); "
                  f"add conf/{key}/{value}.yaml to define it", file=sys.stderr)
            sys.exit(2)


def compose(root: str | Path, overrides: list[str] | None = None,
            workdir: str | Path | None = None) -> DictConfig:
    """Compose the config as a stage would, without running Hydra's app (tests, notebooks).

    `root` holds conf/ and params.yaml; inputs and outputs live below `workdir` (default: root).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    root = Path(root).resolve()
    os.environ[ROOT_ENV] = str(root)
    with initialize_config_dir(version_base="1.3", config_dir=str(root / "conf")):
        cfg = hydra_compose("config", overrides=list(overrides or []), return_hydra_config=True)
    work = str(Path(workdir).resolve()) if workdir else str(root)
    with open_dict(cfg):
        del cfg["hydra"]  # outside a Hydra app ${hydra:...} cannot resolve
        cfg.paths.root = work
        cfg.paths.out = work
    cfg = with_workspace_params(cfg, root / PARAMS_FILE, list(overrides or []))
    validate(cfg, root / "conf")
    return cfg


def workspace_params(path: str | Path) -> dict[str, Any]:
    """params.yaml without the DVC-only keys and without null leaves (null = not set)."""
    path = Path(path)
    if not path.exists():
        return {}
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            kept = {k: strip(v) for k, v in node.items() if v is not None}
            return {k: v for k, v in kept.items() if v != {} or not isinstance(node[k], dict)}
        return node

    return strip({k: v for k, v in data.items() if k not in NOT_CONFIG})


def with_workspace_params(cfg: DictConfig, params_path: str | Path, overrides: list[str]) -> DictConfig:
    """Merge params.yaml over the composed config, then re-apply the command-line values."""
    params = workspace_params(params_path)
    for key in flatten(params):
        if key.split(".")[0] not in OPEN_SECTIONS and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            raise FinetuneError(f"{params_path}: '{key}' is not a config key (see conf/ for the known keys)")
    with open_dict(cfg):
        merged = OmegaConf.merge(cfg, params)
        for key, value in _value_overrides(overrides):
            OmegaConf.update(merged, key, value, merge=True, force_add=True)
    OmegaConf.set_struct(merged, True)
    return merged


_MISSING = object()


def _value_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """(key, value) of the command line's value overrides; config group choices are skipped."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if override.is_delete() or key.startswith("hydra") or ("." not in key and key in CONFIG_GROUPS_CHECKED):
            continue
        values.append((key, override.value()))
    return values


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The fully resolved config as plain Python data."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


SECRET_KEY = re.compile(r"(^|_)(TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]*(:[^/@\s]*)?@", re.IGNORECASE)
REDACTED = "***"


def redacted(data: Any, key: str = "") -> Any:
    """`data` as it may be written or logged: values of keys like `*_TOKEN`, `*_KEY`, `*_SECRET`,
    `*_PASSWORD` and the credentials in URLs (`http://user:pass@host`) replaced by ***."""
    if isinstance(data, dict):
        return {k: redacted(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [redacted(v, key) for v in data]
    if data is not None and SECRET_KEY.search(key):
        return REDACTED
    if isinstance(data, str):
        return URL_CREDENTIALS.sub(rf"\g<scheme>{REDACTED}@", data)
    return data


def redacted_override(override: str) -> str:
    """A command-line override `key=value` as it may be logged (see `redacted`)."""
    key, sep, value = override.partition("=")
    return f"{key}{sep}{redacted(value, key.rsplit('.', 1)[-1])}" if sep else override


def config_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML, secrets redacted: what is written beside a model and logged."""
    return OmegaConf.to_yaml(OmegaConf.create(redacted(to_container(cfg))))


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys: {"train": {"seed": 1}} -> {"train.seed": 1}."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat
