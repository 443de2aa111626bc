"""Stage train: fine-tune with the Trainer, keep the best checkpoint, log to one MLflow run."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune import adapters, distributed, tracking
from finetune.checkpoints import Scratch, scratch
from finetune.config_values import config_yaml, to_container
from finetune.errors import FinetuneError
from finetune.io import atomic_dir, atomic_file, sha256_text, write_json
from finetune.pipeline.common import input_path, load_tokenized
from finetune.tasks.interface import Recipe, column_total

log = logging.getLogger("finetune")
SUMMARY = "train_summary.json"
CONFIG = "config.yaml"


def train(cfg: DictConfig) -> dict[str, Any]:
    # Inputs first: a missing or broken input fails before the seconds of torch/transformers imports.
    examples, features, family, manifest = load_tokenized(cfg)
    if "train" not in features:
        raise FinetuneError(f"{input_path(cfg, 'tokenized')} has no train split (splits: {', '.join(features)})")
    with scratch(cfg.paths.checkpoints, fingerprint(cfg, manifest)) as work:
        return _train(cfg, work, examples, features, family, manifest)


def fingerprint(cfg: DictConfig, manifest: dict[str, Any]) -> str:
    """What checkpoints depend on: the config of everything trained on, and the tokenized data."""
    resolved = to_container(cfg)
    sections = {key: resolved[key] for key in ("task", "model", "train")} | {"tokenized": manifest.get("tokenized")}
    return sha256_text(json.dumps(sections, sort_keys=True, default=str) + str(manifest.get("data_sha256")))


def _train(cfg: DictConfig, work: Scratch, examples: Any, features: Any, family: Recipe,
           manifest: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers
    from transformers import EarlyStoppingCallback

    from finetune.metrics import scalar_metrics
    from finetune.models import load_model, load_tokenizer
    from finetune.precision import keep_cpu_attention_fp32
    from finetune.training import history_callback, make_trainer, measured_fast_path, pad_multiple, training_arguments

    codec = family.codec
    if cfg.train.torch_threads:
        torch.set_num_threads(int(cfg.train.torch_threads))
    keep_cpu_attention_fp32()
    transformers.set_seed(int(cfg.train.seed))
    has_eval = "validation" in features

    def arguments(measured: dict[str, bool] | None = None) -> Any:
        return training_arguments(cfg.train, Path(cfg.paths.checkpoints), family.primary_metric, has_eval,
                                  max_length=codec.settings.max_length, greater_is_better=family.greater_is_better,
                                  measured=measured)

    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, codec.auto_model, int(cfg.train.seed),
                       attention_dropout=cfg.train.get("attention_dropout"), **family.model_kwargs())
    model = adapters.adapt(model, cfg.train, codec.peft_task_type)
    collator = family.collator(tokenizer, pad_multiple(cfg.train.pad_to_multiple_of))
    choices = measured_fast_path(cfg.train, arguments(), model, features["train"], collator, codec.bf16_tolerance)
    args = arguments({switch: choice.use for switch, choice in choices.items()})

    def compute_metrics(prediction: Any) -> dict[str, float]:
        val_examples, val_features = examples["validation"], features["validation"]
        predicted = codec.decode(val_examples, val_features, prediction.predictions)
        return scalar_metrics(family.score(val_examples, predicted))

    history = history_callback(log_to_mlflow=bool(cfg.tracking.enabled), earlier=work.log_history)
    callbacks = [history]
    if cfg.train.early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=int(cfg.train.early_stopping_patience)))
    trainer = make_trainer(args=args, model=model, tokenizer=tokenizer,
                           collator=collator,
                           train_dataset=features["train"], eval_dataset=features.get("validation"),
                           compute_metrics=compute_metrics if has_eval else None, callbacks=callbacks,
                           length_bucket_batches=cfg.train.get("length_bucket_batches"),
                           loss=family.loss(features["train"], cfg.train))
    tags = tracking.run_tags(cfg, manifest) | {"primary_metric": family.primary_metric,
                                                "greater_is_better": str(family.greater_is_better).lower()}
    if work.resume_from:
        log.info("resuming %s from %s (an interrupted run of this config)", cfg.paths.pair, work.resume_from)
    with tracking.start_run(cfg, tags=tags, run_id=work.run_id) as run:
        work.remember(run.info.run_id if run else None)
        if run is not None:
            tracking.log_params(cfg, {"data": manifest["tokenized"] | {"split": manifest["split"]}})
            for switch, choice in choices.items():
                tracking.log_choice(switch, choice, rates=False)  # the rates: with the summary's metrics
        result = trainer.train(resume_from_checkpoint=str(work.resume_from) if work.resume_from else None)
        summary = {"primary_metric": family.primary_metric, "best_metric": trainer.state.best_metric,
                   "best_step": _best_step(trainer.state), "global_step": result.global_step,
                   "train_loss": result.training_loss, "train_runtime": result.metrics.get("train_runtime"),
                   "train_samples_per_second": result.metrics.get("train_samples_per_second"),
                   "train_examples": len(features["train"]),
                   "train_tokens": column_total(features["train"], "length"), "bf16": bool(args.bf16),
                   "compile": bool(args.torch_compile), "processes": distributed.world_size(),
                   "peft": cfg.train.get("peft"),
                   "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
        for switch, choice in choices.items():
            summary |= choice.summary(switch) | {f"{switch}_choice": choice.reason}
        if distributed.is_main():  # a distributed run's other processes only trained
            _write_outputs(cfg, trainer, history, summary, family.primary_metric, logged=run is not None)
    log.info("trained %s: %s", cfg.paths.pair, summary)
    return summary


def _write_outputs(cfg: DictConfig, trainer: Any, history: Any, summary: dict[str, Any], primary_metric: str,
                   logged: bool) -> None:
    from finetune import plots

    written_config = config_yaml(cfg)
    with atomic_dir(cfg.paths.model) as out:
        if adapters.is_adapted(trainer.model):
            adapters.save(trainer.model, trainer.processing_class, out)
        else:
            trainer.save_model(str(out))
        write_json(out / tracking.RUN_FILE, tracking.run_record(cfg))
        write_json(out / SUMMARY, summary)
        (out / CONFIG).write_text(written_config)
    plot_dir = Path(cfg.paths.plots) / "train"
    with atomic_dir(plot_dir) as out:
        write_history(history.rows, out / "history.csv")
        plots.learning_curves(history.rows, out / "learning_curves.png", primary_metric, title=cfg.paths.pair)
    if logged:
        tracking.log_metrics({k: float(v) for k, v in summary.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)})
        tracking.log_artifacts([plot_dir / "learning_curves.png", plot_dir / "history.csv"], "train")
        tracking.log_artifacts([Path(cfg.paths.model) / CONFIG], "config")


def _best_step(state: Any) -> int | None:
    checkpoint = state.best_model_checkpoint
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else None


def write_history(rows: list[dict[str, Any]], path: Path) -> None:
    """The Trainer's log history as CSV: one row per logging step or evaluation."""
    columns = sorted({key for row in rows for key in row}, key=lambda k: (k not in ("step", "epoch"), k))
    with atomic_file(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
