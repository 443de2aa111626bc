"""Stage evaluate: score the trained model on `data.eval_split` (test): metrics, predictions, plots.

Everything that chooses reads the validation split first: the temperature of the probabilities
(`evaluate.calibrate`), decoding values a family tunes (multi-label thresholds), the validation
scores the registry's gate compares, and the examples whose label the model most confidently
contradicts. The fitted values go into the metrics file, and the export stage applies them. The
metrics file holds one section per split (`validation`, `test`), so every number names its role.

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

from finetune import plots, tracking
from finetune.errors import FinetuneError
from finetune.intervals import Resampled, bootstrap, clearly_better, paired_difference
from finetune.io import atomic_dir, write_json
from finetune.label_issues import LABEL_ISSUES, write_label_issues
from finetune.metrics import ROLES
from finetune.pipeline.common import CODEC, input_path, load_tokenized, reading
from finetune.tasks.interface import Recipe
from finetune.temperature import calibration_report, fit_temperature

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
    metrics: dict[str, Any] = {}
    chosen_on = None  # without a validation split apart from the reported one, nothing is fitted
    if split != "validation" and "validation" in features:  # everything that chooses reads validation
        family, tuned, predicted = fit_on_validation(family, examples["validation"], features["validation"],
                                                     outputs_on("validation"), bool(cfg.evaluate.calibrate))
        metrics["validation"] = role_metrics(family, examples, "validation", predicted, cfg)
        chosen_on = (examples["validation"], predicted)
    elif family.tunes:
        raise FinetuneError(f"fitting {family.codec.family} decoding values needs a validation split apart from "
                            f"the reported one ({input_path(cfg, 'tokenized')} has {', '.join(features)}; "
                            f"data.eval_split={split})")
    codec = family.codec
    started = time.perf_counter()
    outputs = outputs_on(split)
    predictions = codec.decode(examples[split], features[split], outputs)
    runtime = time.perf_counter() - started
    metrics[split] = role_metrics(family, examples, split, predictions, cfg)
    scored = family.scored(examples[split], features[split], outputs)
    if scored is not None:
        metrics[split]["calibration"] = calibration_report(scored, float(tuned.get("temperature", 1.0)))
    if tuned:
        metrics["tuned"] = tuned  # the export's decoder applies these too
    reported = metrics[split]
    if "beats_baseline" in reported and not reported["beats_baseline"]:
        warn_baseline(cfg, split, reported)
    metrics.update(split=split, task=cfg.task.name, model=cfg.model.name, eval_runtime=round(runtime, 3),
                   bf16=backend.bf16)
    with atomic_dir(cfg.paths.predictions) as out:
        family.write_predictions(examples[split], predictions, out)
        write_json(out / CODEC, codec.spec())  # what reads them back (stages/report.py compare=...)
        if chosen_on is not None:  # validation's predictions (k-fold's out-of-fold ones) and label issues
            (out / "validation").mkdir()
            family.write_predictions(*chosen_on, out / "validation")
            issues = family.label_issues(*chosen_on)
            if issues is not None:
                write_label_issues(issues, out / LABEL_ISSUES)
    with atomic_dir(Path(cfg.paths.plots) / "eval") as out:
        drawn = family.plots(examples[split], predictions, reported, out)
        if scored is not None:
            drawn.append(plots.reliability_diagram(reported["calibration"], scored, out / "reliability.png",
                                                   title=f"{cfg.paths.pair}: reliability on {split}"))
    write_json(cfg.paths.metrics, metrics)
    with tracking.resume_run(cfg, model_dir) as run:
        if run is not None:
            tracking.set_tags({"eval_split": split} | (
                {"beats_baseline": str(reported["beats_baseline"]).lower()} if "beats_baseline" in reported else {}))
            if backend.choice:
                tracking.log_choice("eval_bf16", backend.choice)
            for role in (role for role in ROLES if role in metrics):
                tracking.log_metrics(scalar_metrics(metrics[role], prefix=f"{role}_"))
            tracking.log_metrics(scalar_metrics(tuned))
            tracking.log_artifacts([Path(cfg.paths.metrics)], "metrics")
            tracking.log_artifacts([Path(cfg.paths.predictions)], "predictions")
            tracking.log_artifacts([Path(cfg.paths.plots) / "eval" / p.name for p in drawn], "eval")
    log.info("evaluated %s on %s: %s=%.4f", cfg.paths.pair, split, family.primary_metric,
             reported[family.primary_metric])
    return metrics


def fit_on_validation(family: Recipe, examples: Any, features: Any, outputs: Any,
                      calibrate: bool) -> tuple[Recipe, dict[str, Any], list[Any]]:
    """(the recipe applying them, the decoding values fitted on these validation examples, their
    predictions decoded with them): the temperature first, then the family's own (thresholds), which
    are fitted on the calibrated probabilities."""
    tuned: dict[str, Any] = {}
    scored = family.scored(examples, features, outputs)
    if scored is not None and calibrate:
        tuned["temperature"] = fit_temperature(scored)
        family = family.with_codec(family.codec.with_settings(tuned))
    tuned |= family.tune(examples, features, outputs)  # {} where the family fits nothing
    family = family.with_codec(family.codec.with_settings(tuned))
    return family, tuned, family.codec.decode(examples, features, outputs)


def role_metrics(family: Recipe, examples: Any, split: str, predictions: list[Any], cfg: DictConfig) -> dict[str, Any]:
    """The scores of `predictions` on `split`, with their intervals and the trivial baseline beside them."""
    metrics = family.score(examples[split], predictions)
    resampled = family.resampled(examples[split], predictions)
    if resampled is not None and cfg.evaluate.bootstrap_resamples:
        metrics |= bootstrap(resampled, **bootstrap_settings(cfg))
        if "train" in examples:
            metrics |= against_baseline(family, examples["train"], examples[split], resampled, cfg)
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
    return {"baseline": {"name": name, primary: value, **difference},
            "beats_baseline": clearly_better(difference, family.greater_is_better)}


def warn_baseline(cfg: DictConfig, split: str, metrics: dict[str, Any]) -> None:
    """One `warning:` line: the model does not beat its trivial baseline significantly on `split`."""
    base = metrics["baseline"]
    primary = next(key for key in base if key not in ("name", "difference", "difference_ci_low",
                                                      "difference_ci_high", "p_value"))
    print(f"warning: {cfg.paths.pair} does not beat the trivial baseline, {base['name']}, significantly on {split}: "
          f"{primary} difference {base['difference']:+.4f}, {float(cfg.evaluate.confidence_level):.0%} interval "
          f"[{base['difference_ci_low']:+.4f}, {base['difference_ci_high']:+.4f}]; the registry will not promote it",
          file=sys.stderr, flush=True)
