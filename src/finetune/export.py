"""The export stage's folder: a `save_pretrained` model + tokenizer and a README model card."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune.io import atomic_dir, read_json
from finetune.models import load_tokenizer

SKIPPED = {"run.json", "train_summary.json", "training_args.bin", "config.yaml"}


def write_export(cfg: DictConfig, model_dir: Path, metrics: dict[str, Any], manifest: dict[str, Any]) -> Path:
    """Copy the best model, save its tokenizer, write the card; replace the old export atomically."""
    with atomic_dir(cfg.paths.export) as out:
        for item in Path(model_dir).iterdir():
            if item.name not in SKIPPED and item.is_file():
                shutil.copy2(item, out / item.name)
        tokenizer = load_tokenizer(cfg.model)
        tokenizer.save_pretrained(str(out))
        if cfg.export.model_card:
            summary_file = Path(model_dir) / "train_summary.json"
            summary = read_json(summary_file) if summary_file.exists() else {}
            (out / "README.md").write_text(model_card(cfg, metrics, manifest, summary), encoding="utf-8")
    return Path(cfg.paths.export)


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(cfg: DictConfig, metrics: dict[str, Any], manifest: dict[str, Any],
               summary: dict[str, Any]) -> str:
    """A Markdown model card: what was trained on what, and the metrics of the exported model."""
    base = cfg.model.get("hub_id") or (f"all-MiniLM-L6-v2 (PyPI package {cfg.model.package})"
                                       if cfg.model.source == "package" else cfg.model.name)
    headline = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    lines = [
        "---",
        f"tags: [finetune-pipeline, {cfg.task.family}, {cfg.task.name}]",
        "library_name: transformers",
        "---",
        f"# {cfg.task.name}-{cfg.model.name}",
        "",
        f"A `{cfg.task.family}` model fine-tuned by finetune-pipeline from **{base}** on the task "
        f"**{cfg.task.name}**. The weights are the best checkpoint on the validation split "
        f"(`{summary.get('primary_metric', '?')}` = {_number(summary.get('best_metric'))}), not the last epoch.",
        "",
        f"## Evaluation on `{metrics.get('split')}` ({metrics.get('n_eval')} examples)",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {_number(v)} |" for k, v in headline.items()],
        "",
        "## Data",
        "",
        f"Source: {manifest.get('source')}; rows per split: {manifest.get('rows')}; "
        f"data_sha256 `{manifest.get('data_sha256')}`.",
        "",
        *[f"- {f['split']}: `{f['path']}` (sha256 `{f['sha256']}`)" for f in manifest.get("files", [])],
        "",
        "## Training",
        "",
        "| param | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in cfg.train.items()],
        f"| max_train_samples | {cfg.data.max_train_samples} |",
        f"| max_length | {cfg.data.max_length} |",
        "",
        f"Train examples: {summary.get('train_examples')}, steps: {summary.get('global_step')}, "
        f"bf16: {summary.get('bf16')}, runtime: {_number(summary.get('train_runtime'))} s.",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        f"model = pipeline('{_pipeline_name(cfg.task.family)}', model='exports/{cfg.paths.pair}')",
        "```",
        "",
    ]
    return "\n".join(lines)


def _pipeline_name(family: str) -> str:
    return {"classification": "text-classification", "token_classification": "token-classification",
            "question_answering": "question-answering"}.get(family, family)
