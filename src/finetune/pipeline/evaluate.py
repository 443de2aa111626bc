"""Stage evaluate: score the trained model on `data.eval_split`: metrics, predictions, plots.

A family that tunes its decoding (multi-label thresholds) fits it on the validation split first;
the fitted values are written into the metrics file, and the export stage applies them.

The model runs through finetune.inference and its outputs are decoded by the family's `decode`,
exactly as `finetune-predict` and the served model do; only the scoring against gold is extra.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune import tracking
from finetune.errors import FinetuneError
from finetune.intervals import Resampled, bootstrap, clearly_better, paired_difference
from finetune.io import atomic_dir, write_json
from finetune.pipeline.common import input_path, load_tokenized, reading
from finetune.tasks.interface import Recipe

log = logging.getLogger("finetune")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    import transformers

    from finetune.inference import TorchBackend, run_model
    from finetune.metrics import scalar_metrics
    from finetune.models import load_tokenizer
    from finetune.precision import precision_setting
    from finetune.training import eval_batch_size

    examples, features, family, _ = load_tokenized(cfg)
    split = cfg.data.eval_split
    if split not in features:
        raise FinetuneError(f"data.eval_split='{split}' is not a split of {input_path(cfg, 'tokenized')} "
                            f"(splits: {', '.join(features)})")
    codec = family.codec
    tokenizer = load_tokenizer(cfg.model)
    with reading(cfg, "model") as model_dir:
        model = getattr(transformers, codec.auto_model).from_pretrained(str(model_dir), use_safetensors=True)
    if cfg.train.torch_threads:
        import torch

        torch.set_num_threads(int(cfg.train.torch_threads))
    backend = TorchBackend(model, codec.outputs, precision_setting(cfg.train.bf16), codec.bf16_tolerance)

    def outputs_on(name: str) -> Any:
        return run_model(backend, features[name], pad_id=tokenizer.pad_token_id or 0,
                         batch_size=eval_batch_size(cfg.train, codec.settings.max_length),
                         token_outputs=codec.token_outputs, progress=True)

    tuned: dict[str, Any] = {}
    if family.tunes:  # decoding values fitted on validation, then applied to the reported split
        if "validation" not in features:
            raise FinetuneError(f"tuning decoding values needs a validation split ({input_path(cfg, 'tokenized')} has "
                                f"{', '.join(features)})")
        tuned = family.tune(examples["validation"], features["validation"], outputs_on("validation"))
        codec = codec.with_settings(tuned)
        family = family.with_codec(codec)
    started = time.perf_counter()
    outputs = outputs_on(split)
    predictions = codec.decode(examples[split], features[split], outputs)
    runtime = time.perf_counter() - started
    metrics = family.score(examples[split], predictions)
    resampled = family.resampled(examples[split], predictions)
    if resampled is not None and cfg.evaluate.bootstrap_resamples:
        metrics |= bootstrap(resampled, **bootstrap_settings(cfg))
        if "train" in examples:
            metrics |= against_baseline(family, examples["train"], examples[split], resampled, cfg)
    if tuned:
        metrics["tuned"] = tuned  # the export's decoder applies these too
    metrics.update(split=split, task=cfg.task.name, model=cfg.model.name, eval_runtime=round(runtime, 3),
                   bf16=backend.bf16)
    with atomic_dir(cfg.paths.predictions) as out:
        written = family.write_predictions(examples[split], predictions, out)
    with atomic_dir(Path(cfg.paths.plots) / "eval") as out:
        drawn = family.plots(examples[split], predictions, metrics, out)
    write_json(cfg.paths.metrics, metrics)
    with tracking.resume_run(cfg, model_dir) as run:
        if run is not None:
            tracking.set_tags({"eval_split": split} | (
                {"beats_baseline": str(metrics["beats_baseline"]).lower()} if "beats_baseline" in metrics else {}))
            if backend.choice:
                tracking.log_choice("eval_bf16", backend.choice)
            tracking.log_metrics(scalar_metrics(metrics, prefix=f"{split}_"))
            tracking.log_artifacts([Path(cfg.paths.metrics)], "metrics")
            tracking.log_artifacts([Path(cfg.paths.predictions) / p.name for p in written], "predictions")
            tracking.log_artifacts([Path(cfg.paths.plots) / "eval" / p.name for p in drawn], "eval")
    log.info("evaluated %s on %s: %s=%.4f", cfg.paths.pair, split, family.primary_metric,
             metrics[family.primary_metric])
    return metrics


def bootstrap_settings(cfg: DictConfig) -> dict[str, Any]:
    return {"resamples": int(cfg.evaluate.bootstrap_resamples), "level": float(cfg.evaluate.confidence_level),
            "seed": int(cfg.evaluate.bootstrap_seed)}


def against_baseline(family: Recipe, train: Any, examples: Any, resampled: Resampled,
                     cfg: DictConfig) -> dict[str, Any]:
    """The family's trivial baseline scored on the same examples, the model's paired difference to
    it, and whether the model beats it significantly (else one `warning:` line)."""
    found = family.baseline(train, examples)
    if found is None:
        return {}
    name, predictions = found
    primary = family.primary_metric
    value = family.score(examples, predictions)[primary]
    difference = paired_difference(resampled, family.resampled(examples, predictions), primary,
                                   **bootstrap_settings(cfg))
    beats = clearly_better(difference, family.greater_is_better)
    if not beats:
        print(f"warning: {cfg.paths.pair} does not beat the trivial baseline, {name}, significantly: {primary} "
              f"difference {difference['difference']:+.4f}, {float(cfg.evaluate.confidence_level):.0%} interval "
              f"[{difference['difference_ci_low']:+.4f}, {difference['difference_ci_high']:+.4f}]; "
              "the registry will not promote it", file=sys.stderr, flush=True)
    return {"baseline": {"name": name, primary: value, **difference}, "beats_baseline": beats}
