"""The export stage's folder: everything predicting needs, and nothing else.

`exports/<task>-<model>/` holds the best model (safetensors only), its tokenizer, `config.json`
with the label maps, `finetune.json` (the family and the settings its decoder reads), the model
card, and optionally `model.onnx` (checked against PyTorch) and `model.int8.onnx` (with its
measured eval metric). `finetune-predict`, `transformers.pipeline` and the MLflow model load it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune.errors import FinetuneError
from finetune.inference import SPEC, Predictor
from finetune.io import atomic_dir, read_json, write_json
from finetune.models import load_tokenizer
from finetune.tasks.interface import Recipe

FORMAT = 1  # version of finetune.json's layout
MODEL_FILES = ("config.json", "model.safetensors")
SUMMARY = "train_summary.json"


def write_export(cfg: DictConfig, recipe: Recipe, model_dir: Path, metrics: dict[str, Any],
                 manifest: dict[str, Any], eval_data: tuple[Any, Any]) -> dict[str, Any]:
    """Write the export folder (replacing the old one atomically); return its finetune.json: the
    codec's spec (family, settings, labels) and what the registry and the card read."""
    import transformers

    from finetune.adapters import ADAPTER, adapter_size_mb
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
        if (model_dir / ADAPTER).is_dir():  # the LoRA adapter alone, beside the merged model
            shutil.copytree(model_dir / ADAPTER, out / ADAPTER)
        tokenizer = load_tokenizer(cfg.model)
        tokenizer.save_pretrained(str(out))
        codec, primary = recipe.codec, recipe.primary_metric
        spec = {"format": FORMAT, **codec.spec(), "task": cfg.task.name, "model": cfg.model.name,
                "primary_metric": primary, "greater_is_better": recipe.greater_is_better,
                "eval": {"split": metrics.get("split"), "n_eval": metrics.get("n_eval"),
                         primary: metrics.get(primary)}}
        onnx: dict[str, Any] = {}
        if cfg.export.onnx:
            model = getattr(transformers, codec.auto_model).from_pretrained(str(out), use_safetensors=True)
            parity = features.select(range(min(int(cfg.export.onnx_parity_inputs), len(features))))
            onnx = export_onnx(model, codec, parity, out, pad_id=tokenizer.pad_token_id or 0,
                               tolerance=float(cfg.export.onnx_tolerance))
            onnx["size_mb"] = _megabytes(out / onnx["file"])
            if cfg.export.quantize:
                path = quantize_int8(out)
                write_json(out / SPEC, spec)  # the predictor below reads it
                predictions = Predictor(out, backend="onnx-int8").predict_examples(examples)
                score = recipe.score(examples, predictions)
                onnx["int8"] = {"file": path.name, primary: score[primary],
                                "size_mb": _megabytes(path)}
        spec["onnx"] = onnx
        if (out / ADAPTER).is_dir():
            spec["adapter"] = {"folder": ADAPTER, "size_mb": adapter_size_mb(out)}
        write_json(out / SPEC, spec)
        if cfg.export.model_card:
            summary_file = model_dir / SUMMARY
            summary = read_json(summary_file) if summary_file.exists() else {}
            card = model_card(cfg, recipe, metrics, manifest, summary, onnx)
            (out / "README.md").write_text(card, encoding="utf-8")
    return spec


def _megabytes(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 2)
