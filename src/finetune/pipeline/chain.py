"""All of a pair's stages in one process (stages/pipeline.py), each reading the one before.

Inside a Hydra multirun job every output, the downloaded and tokenized data included, lands in the
job's own folder, so a sweep over models or `data.max_length` tokenizes each variant and never
touches the workspace's DVC outputs.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from typing import Any

from omegaconf import DictConfig, open_dict

from finetune.errors import FinetuneError
from finetune.pipeline.stage_table import BY_NAME, stage_config
from finetune.pipeline.stage_table import STAGES as STAGE_TABLE

log = logging.getLogger("finetune")
STAGES = tuple(stage.name for stage in STAGE_TABLE)


def run_pipeline(cfg: DictConfig) -> float | None:
    """Run `pipeline.stages` in order; return the best validation value of the primary metric
    (what a sweeper optimises; never the test split's). With `pipeline.seeds` set, the stages run
    once per seed (`train.seed`, in `<out>/seed-<seed>/`) and the mean of their values is returned:
    a sweeper then optimises the configuration, not one lucky seed."""
    seeds = cfg.pipeline.get("seeds")
    if seeds:
        values = [run_stages(seeded(cfg, int(seed))) for seed in seeds]
        found = [value for value in values if value is not None]
        log.info("pipeline %s: seeds %s gave %s", cfg.paths.pair, list(seeds), values)
        return sum(found) / len(found) if found else None
    return run_stages(cfg)


def seeded(cfg: DictConfig, seed: int) -> DictConfig:
    """`cfg` with `train.seed` set, writing below its own `seed-<seed>/` folder."""
    import copy

    config = copy.deepcopy(cfg)
    with open_dict(config):
        config.train.seed = seed
        config.paths.out = f"{cfg.paths.out}/seed-{seed}"
        if config.tracking.get("run_name"):
            config.tracking.run_name = f"{cfg.tracking.run_name}-seed{seed}"
    return config


def run_stages(cfg: DictConfig) -> float | None:
    names = list(cfg.pipeline.stages)
    for name in names:
        if name not in STAGES:
            hint = difflib.get_close_matches(name, STAGES, n=1)
            raise FinetuneError(f"pipeline.stages: unknown stage '{name}'"
                                + (f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(STAGES)})"))
    with open_dict(cfg):
        cfg.paths.inputs = cfg.paths.out  # each stage reads what the one before just wrote
    results: dict[str, Any] = {}
    for name in sorted(names, key=STAGES.index):
        module = importlib.import_module(f"finetune.pipeline.{name}")
        log.info("pipeline %s: %s", cfg.paths.pair, name)
        results[name] = getattr(module, name)(stage_config(cfg, BY_NAME[name]))  # as its stage script
    return results["train"]["best_metric"] if "train" in results else None
