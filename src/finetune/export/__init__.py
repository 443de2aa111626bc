"""The export stage's folder: everything predicting needs, and nothing else.

`exports/<task>-<model>/` holds the best model (safetensors only), its tokenizer, `config.json`
with the label maps, `finetune.json` (the family and the settings its decoder reads), the model
card, and optionally `model.onnx` (checked against PyTorch) and `model.int8.onnx` (with its
measured eval metric). `finetune-predict`, `transformers.pipeline` and the MLflow model load it.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune.errors import FinetuneError
from finetune.inference import SPEC, Predictor
from finetune.io import atomic_dir, read_json, write_json
from finetune.models import load_tokenizer
from finetune.tasks.base import TaskFamily

FORMAT = 1  # version of finetune.json's layout
MODEL_FILES = ("config.json", "model.safetensors")
SUMMARY = "train_summary.json"


def write_export(cfg: DictConfig, family: TaskFamily, model_dir: Path, metrics: dict[str, Any],
                 manifest: dict[str, Any], eval_data: tuple[Any, Any], labels: list[str] | None) -> dict[str, Any]:
    """Write the export folder (replacing the old one atomically); return its finetune.json."""
    import transformers

    from finetune.export.card import model_card
    from finetune.export.onnx import export_onnx, quantize_int8

    model_dir = Path(model_dir)
    if not (model_dir / "model.safetensors").exists():
        pickled = [p.name for p in model_dir.glob("*.bin")]
        raise FinetuneError(f"{model_dir}: no model.safetensors" + (
            f" (found {', '.join(pickled)}: pickle weights are never exported)" if pickled else ""))
    examples, features = eval_data
    with atomic_dir(cfg.paths.export) as out:
        for name in MODEL_FILES:
            shutil.copy2(model_dir / name, out / name)
        tokenizer = load_tokenizer(cfg.model)
        tokenizer.save_pretrained(str(out))
        spec = {"format": FORMAT, "family": family.name, "task": cfg.task.name, "model": cfg.model.name,
                "labels": labels, "settings": dataclasses.asdict(family.settings),
                "primary_metric": family.primary_metric, "greater_is_better": family.greater_is_better,
                "eval": {"split": metrics.get("split"), "n_eval": metrics.get("n_eval"),
                         family.primary_metric: metrics.get(family.primary_metric)}}
        onnx: dict[str, Any] = {}
        if cfg.export.onnx:
            model = getattr(transformers, family.auto_model).from_pretrained(str(out), use_safetensors=True)
            parity = features.select(range(min(int(cfg.export.onnx_parity_inputs), len(features))))
            onnx = export_onnx(model, family, parity, out, pad_id=tokenizer.pad_token_id or 0,
                               tolerance=float(cfg.export.onnx_tolerance))
            onnx["size_mb"] = _megabytes(out / onnx["file"])
            if cfg.export.quantize:
                path = quantize_int8(out)
                write_json(out / SPEC, spec)  # the predictor below reads it
                predictions = Predictor(out, backend="onnx-int8").predict_examples(examples)
                score = family.score(examples, predictions, labels)
                onnx["int8"] = {"file": path.name, family.primary_metric: score[family.primary_metric],
                                "size_mb": _megabytes(path)}
        spec["onnx"] = onnx
        write_json(out / SPEC, spec)
        if cfg.export.model_card:
            summary_file = model_dir / SUMMARY
            summary = read_json(summary_file) if summary_file.exists() else {}
            card = model_card(cfg, family.pipeline_tag, metrics, manifest, summary, onnx)
            (out / "README.md").write_text(card, encoding="utf-8")
    return spec


def _megabytes(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 2)
