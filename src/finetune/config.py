"""Config composition: conf/, then params.yaml, then the command line.

Precedence, lowest first: `conf/` (with the task preset), `params.yaml` (the DVC-tracked
workspace overrides), the command line. So a stage run by `dvc repro` or
`dvc exp run -S train.learning_rate=3e-5` sees exactly the values DVC tracks, and a direct
`python stages/train.py train.learning_rate=3e-5` still wins over both.

In params.yaml a null leaf means "not set here: keep the default from conf/". The keys users
tune most are listed there as nulls so that `dvc exp run -S key=value` can set them (DVC only
modifies keys that exist).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from finetune.config_values import flatten
from finetune.errors import FinetuneError
from finetune.schema import known_keys, validate

ROOT_ENV = "FINETUNE_ROOT"
PARAMS_FILE = "params.yaml"
CONFIG_GROUPS_CHECKED = ("task", "model", "train", "data", "evaluate", "tracking", "export", "hparams_search")
NOT_CONFIG = ("matrix",)  # params.yaml keys that steer DVC rather than the stages
OPEN_SECTIONS = ("train",)  # any TrainingArguments field may be added (checked in finetune.training)


def check_group_choices(conf_dir: Path, overrides: list[str]) -> None:
    """Reject `task=foo` / `model=foo` naming no config file, in one line (Hydra's is long). A
    folder given with `--config-dir` (a user's presets, as `<folder>/task/<name>.yaml`) counts too."""
    extra = extra_config_dirs(overrides)
    folders = [conf_dir, *extra]
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in CONFIG_GROUPS_CHECKED or "," in value or "(" in value:
            continue
        known = sorted({p.stem for folder in folders for p in (folder / key).glob("*.yaml")})
        if value not in known:
            where = " or ".join([f"conf/{key}/{value}.yaml", *(f"{folder}/{key}/{value}.yaml" for folder in extra)])
            print(f"error: unknown {key} '{value}' (known: {', '.join(known)}); add {where} to define it",
                  file=sys.stderr)
            sys.exit(2)


def extra_config_dirs(arguments: list[str]) -> list[Path]:
    """The folders of Hydra's `--config-dir DIR` / `-cd DIR` arguments; a missing one is an error."""
    folders = []
    for i, argument in enumerate(arguments):
        name, sep, value = argument.partition("=")
        if name in ("--config-dir", "-cd"):
            folder = Path(value if sep else (arguments[i + 1] if i + 1 < len(arguments) else "")).expanduser()
            if not folder.is_dir():
                print(f"error: --config-dir: folder not found: {folder}", file=sys.stderr)
                sys.exit(2)
            folders.append(folder)
    return folders


def open_section_overrides(conf_dir: Path, overrides: list[str]) -> list[str]:
    """The overrides with `++` before a key of an open section that conf/ does not set
    (`train.max_steps=3`): Hydra would refuse it as a new key, and finetune.training checks
    the name against the TrainingArguments dataclass."""
    known = known_keys(str(Path(conf_dir).resolve()))
    return [f"++{override}" if override.split("=", 1)[0] not in known and "=" in override
            and override.split(".", 1)[0] in OPEN_SECTIONS else override for override in overrides]


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
        overrides = open_section_overrides(root / "conf", list(overrides or []))
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
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
        for key, value in value_overrides(overrides):
            OmegaConf.update(merged, key, value, merge=True, force_add=True)
    OmegaConf.set_struct(merged, True)
    return merged


_MISSING = object()


def value_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """(key, value) of the command line's value overrides; config group choices are skipped."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if override.is_delete() or key.startswith("hydra") or ("." not in key and key in CONFIG_GROUPS_CHECKED):
            continue
        values.append((key, override.value()))
    return values


