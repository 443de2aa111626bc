"""Stage export: a self-contained model folder with tokenizer and model card; logged to MLflow."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from finetune import tracking
from finetune.io import read_json
from finetune.pipeline.common import MANIFEST, require


def export(cfg: DictConfig) -> Path:
    from finetune.export import write_export

    model_dir = require(cfg.paths.model, "train", cfg)
    metrics = read_json(require(cfg.paths.metrics, "evaluate", cfg))
    manifest = read_json(require(Path(cfg.paths.tokenized) / MANIFEST, "tokenize", cfg))
    out = write_export(cfg, model_dir, metrics, manifest)
    with tracking.resume_run(cfg, model_dir) as run:
        if run is not None:
            import mlflow

            mlflow.set_tag("exported_to", str(out))
            if cfg.tracking.log_model:
                tracking.log_artifacts([out], "model")
    return out
