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
    (what a sweeper optimises: the evaluation split may be the test split)."""
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
