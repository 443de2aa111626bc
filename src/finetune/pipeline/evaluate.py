"""Stage evaluate: score the trained model on `data.eval_split`: metrics, predictions, plots."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune import tracking
from finetune.errors import FinetuneError
from finetune.io import atomic_dir, write_json
from finetune.pipeline.common import load_tokenized, require
from finetune.tasks import get_family

log = logging.getLogger("finetune")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    import transformers

    from finetune.metrics import scalar_metrics
    from finetune.models import load_tokenizer
    from finetune.training import make_trainer, pad_multiple, training_arguments

    model_dir = require(cfg.paths.model, "train", cfg)
    examples, features, labels, _ = load_tokenized(cfg)
    split = cfg.data.eval_split
    if split not in features:
        raise FinetuneError(f"data.eval_split='{split}' is not a split of {cfg.paths.tokenized} "
                            f"(splits: {', '.join(features)})")
    family = get_family(cfg)
    tokenizer = load_tokenizer(cfg.model)
    model = getattr(transformers, family.auto_model).from_pretrained(str(model_dir))
    scratch = Path(cfg.paths.checkpoints) / "evaluate"
    args = training_arguments(cfg.train, scratch, family.primary_metric, has_eval=False,
                              max_length=cfg.data.max_length)
    trainer = make_trainer(args=args, model=model, tokenizer=tokenizer,
                           collator=family.collator(tokenizer, pad_multiple(cfg.train.pad_to_multiple_of)),
                           train_dataset=None, eval_dataset=None, compute_metrics=None, callbacks=[])
    output = trainer.predict(features[split], metric_key_prefix=split)
    predictions = family.postprocess(examples[split], features[split], output.predictions, labels)
    metrics = family.metrics(examples[split], predictions, labels)
    metrics.update(split=split, task=cfg.task.name, model=cfg.model.name,
                   eval_runtime=output.metrics.get(f"{split}_runtime"))
    with atomic_dir(cfg.paths.predictions) as out:
        written = family.write_predictions(predictions, out)
    with atomic_dir(Path(cfg.paths.plots) / "eval") as out:
        drawn = family.plots(examples[split], predictions, metrics, labels, out)
    write_json(cfg.paths.metrics, metrics)
    with tracking.resume_run(cfg, model_dir) as run:
        if run is not None:
            tracking.log_metrics(scalar_metrics(metrics, prefix=f"{split}_"))
            tracking.log_artifacts([Path(cfg.paths.metrics)], "metrics")
            tracking.log_artifacts([Path(cfg.paths.predictions) / p.name for p in written], "predictions")
            tracking.log_artifacts([Path(cfg.paths.plots) / "eval" / p.name for p in drawn], "eval")
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("evaluated %s on %s: %s=%.4f", cfg.paths.pair, split, family.primary_metric,
             metrics[family.primary_metric])
    return metrics
