"""Stage export: the self-contained model folder; logged to MLflow as a model, registered, gated."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune import tracking
from finetune.errors import FinetuneError
from finetune.intervals import paired_difference
from finetune.io import read_json, sha256_text
from finetune.metrics import reported
from finetune.pipeline.common import input_path, load_tokenized, reading, remake, require_input
from finetune.tasks.interface import Recipe

log = logging.getLogger("finetune")


def export(cfg: DictConfig) -> dict[str, Any]:
    from finetune.export import write_export

    model_dir = require_input(cfg, "model")
    with reading(cfg, "metrics") as metrics_file:
        metrics = read_json(metrics_file)
    examples, features, family, manifest = load_tokenized(cfg)
    split = metrics.get("split")
    if split not in features or split not in metrics:
        raise FinetuneError(f"{metrics_file} was scored on split '{split}', which "
                            f"{input_path(cfg, 'tokenized')} does not have (splits: {', '.join(features)}): "
                            f"{remake('evaluate', cfg)}")
    family = family.with_codec(family.codec.with_settings(metrics.get("tuned") or {}))  # fitted by evaluate
    spec = write_export(cfg, family, model_dir, reported(metrics), manifest, (examples[split], features[split]))
    # The gate chooses, so it reads validation (the reported split only where there is no other).
    gate = "validation" if "validation" in metrics else split
    identity = sha256_text(json.dumps([manifest.get("data_sha256"), list(examples[gate]["id"])]))
    gate_data = f"{gate} (data {identity[:12]})"  # a champion scored on other examples is not comparable
    out = Path(cfg.paths.export)
    with tracking.resume_run(cfg, model_dir) as run:
        if run is not None:
            tracking.set_tags({"exported_to": str(out)})
            if spec["onnx"]:
                tracking.log_metrics({"onnx_max_abs_delta": spec["onnx"]["max_abs_delta"]} | (
                    {f"onnx_int8_{split}_{family.primary_metric}": spec["onnx"]["int8"][family.primary_metric]}
                    if "int8" in spec["onnx"] else {}))
            if cfg.tracking.log_model:
                comparison = (against_champion(cfg, family, examples[gate], out, gate_data)
                              if cfg.export.promotion == "significant" else None)
                spec["registry"] = register(cfg, {
                    "export": str(out.resolve()), "fields": list(family.codec.input_fields), "name": cfg.paths.pair,
                    "metric": family.primary_metric, "value": float(metrics[gate][family.primary_metric]),
                    "split": gate_data, "greater_is_better": family.greater_is_better,
                    "policy": str(cfg.export.promotion), "beats_baseline": metrics[gate].get("beats_baseline"),
                    "comparison": comparison})
    return spec


def register(cfg: DictConfig, request: dict[str, Any]) -> dict[str, Any]:
    """Register the export as a new version and run the promotion gate; while the tracking server
    is unreachable (down when the stage began, or lost in the middle), the request is kept on the
    offline run and `python -m finetune.offline sync` registers it on the server."""
    from finetune import offline
    from finetune.export import registry

    if not tracking.in_offline_store(cfg):
        try:
            decision = registry.register(request)
        except Exception as error:  # noqa: BLE001 - only a lost server is taken over: the rest is raised
            if not tracking.went_offline(error):
                raise
        else:
            print(registry.summary(request["name"], decision))
            return decision
    tracking.set_tags({offline.REGISTER: json.dumps(request)})
    print(f"registry: {request['name']} is registered on the tracking server by `python -m finetune.offline sync` "
          "once it is reachable", file=sys.stderr)
    return {"pending": True}


def against_champion(cfg: DictConfig, family: Recipe, examples: Any, out: Path, split: str) -> dict[str, float] | None:
    """The new export minus the registry's champion on the same evaluation examples (a paired
    bootstrap of the primary metric); None when there is no comparable champion."""
    from finetune.export import registry
    from finetune.inference import Predictor, resolve_source

    current = registry.champion(cfg.paths.pair)
    if current is None or current.tags.get("eval_split") != split:
        return None
    try:
        folder, scratch = resolve_source(f"models:/{cfg.paths.pair}@{registry.ALIAS}")
        try:
            champion = Predictor(folder)
            if champion.codec.labels != family.codec.labels:
                return None  # another label set: its predictions are not comparable
            theirs = champion.predict_examples(examples)
        finally:
            if scratch is not None:
                scratch.cleanup()
    except FinetuneError as error:
        log.warning("%s: the champion could not be scored for the comparison: %s", cfg.paths.pair, error)
        return None
    ours = Predictor(out).predict_examples(examples)
    return paired_difference(family.resampled(examples, ours), family.resampled(examples, theirs),
                             family.primary_metric, resamples=int(cfg.export.comparison_resamples),
                             level=float(cfg.export.significance_level), seed=0)
