"""Config composition for the stage scripts.

Every stage composes `conf/config.yaml` with Hydra, then `params.yaml` (the DVC-tracked
workspace overrides, loaded as the last config source), then the command line. So a stage run
by `dvc repro` or `dvc exp run -S key=value` sees exactly the values DVC tracks, and a direct
`python stages/train.py train.learning_rate=3e-5` still wins over both.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from finetune.errors import FinetuneError

ROOT_ENV = "FINETUNE_ROOT"
CONFIG_GROUPS_CHECKED = ("task", "model", "train", "data", "tracking", "export")


def stage(func: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """Turn `func(cfg)` into a Hydra entrypoint of the repository holding the calling script.

    Errors the user can act on (FinetuneError) are printed as one line and exit with status 1.
    """
    root = Path(inspect.getfile(func)).resolve().parent.parent

    @functools.wraps(func)
    def main() -> Any:
        import hydra

        os.environ[ROOT_ENV] = str(root)
        check_group_choices(root / "conf", sys.argv[1:])

        @hydra.main(version_base="1.3", config_path=str(root / "conf"), config_name="config")
        def run(cfg: DictConfig) -> Any:
            try:
                return func(cfg)
            except FinetuneError as error:
                print(f"error: {error}", file=sys.stderr)
                sys.exit(1)

        return run()

    return main


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
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The fully resolved config as plain Python data."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


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
