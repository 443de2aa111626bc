"""The export's README.md: a Hugging Face model card (front matter with model-index), then data
provenance, params, and how to load, predict and serve the model."""

from __future__ import annotations

from typing import Any

import yaml
from omegaconf import DictConfig

from finetune.tasks.interface import Recipe


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def point_values(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics' numbers, without their interval bounds."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and not k.endswith(("_ci_low", "_ci_high"))}


def _baseline_note(metrics: dict[str, Any], primary: str) -> list[str]:
    base = metrics.get("baseline")
    if not base:
        return []
    verdict = "beats it significantly" if metrics.get("beats_baseline") else "does not beat it significantly"
    return [f"The trivial baseline, {base['name']}, scores `{primary}` = {_number(base.get(primary))} on the same "
            f"examples; the model {verdict} (difference {_number(base['difference'])}, interval "
            f"[{_number(base['difference_ci_low'])}, {_number(base['difference_ci_high'])}], "
            f"p = {_number(base['p_value'])}).", ""]


def _calibration_note(metrics: dict[str, Any]) -> list[str]:
    calibration = metrics.get("calibration")
    if not calibration:
        return []
    raw, fitted, temperature = calibration["raw"], calibration["calibrated"], calibration["temperature"]
    return ["## Probabilities", "",
            f"The probabilities are temperature-scaled: the logits are divided by T = {temperature:g}, fitted on the "
            f"validation split (`finetune-predict` and the served model apply it; a plain `transformers` pipeline "
            f"prints the raw ones). On `{metrics.get('split')}` ({calibration['units']} predictions, "
            f"{calibration['bins']} bins):", "",
            "| | ECE | Brier | NLL |", "|---|---|---|---|",
            *[f"| {name} | {scores['ece']:.4f} | {scores['brier']:.4f} | {scores['nll']:.4f} |"
              for name, scores in (("raw (T = 1)", raw), (f"calibrated (T = {temperature:g})", fitted))], ""]


def _interval(metrics: dict[str, Any], key: str) -> str:
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f"[{_number(low)}, {_number(high)}]" if low is not None and high is not None else ""


def front_matter(cfg: DictConfig, pipeline_tag: str, metrics: dict[str, Any], primary: str) -> dict[str, Any]:
    hub = cfg.data.get("hub") or {}
    dataset = hub.get("path") if hub else None
    numbers = {k: v for k, v in point_values(metrics).items() if k not in ("n_eval", "eval_runtime")}
    ordered = {primary: numbers.pop(primary)} | numbers if primary in numbers else numbers
    meta: dict[str, Any] = {}
    if cfg.model.get("base_model") or cfg.model.get("hub_id"):
        meta["base_model"] = cfg.model.get("base_model") or cfg.model.hub_id
    if dataset:
        meta["datasets"] = [dataset]
    meta |= {"pipeline_tag": pipeline_tag, "library_name": "transformers",
             "tags": ["finetune-pipeline", cfg.task.family, cfg.task.name],
             "model-index": [{"name": cfg.paths.pair, "results": [{
                 "task": {"type": pipeline_tag, "name": pipeline_tag.replace("-", " ").title()},
                 "dataset": {"name": cfg.task.name, "type": dataset or cfg.task.name,
                             "split": str(metrics.get("split"))},
                 "metrics": [{"type": k, "value": round(float(v), 6)} for k, v in ordered.items()]}]}]}
    return meta


def model_card(cfg: DictConfig, recipe: Recipe, metrics: dict[str, Any], manifest: dict[str, Any],
               summary: dict[str, Any], onnx: dict[str, Any]) -> str:
    """A Markdown model card: what was trained on what, the metrics, and how to use the folder
    (the family's `usage`)."""
    primary = summary.get("primary_metric", "?")
    base = cfg.model.get("base_model") or cfg.model.get("hub_id") or f"a random {cfg.model.name} config"
    headline = point_values(metrics)
    level = (metrics.get("ci") or {}).get("level")
    pair = cfg.paths.pair
    pipeline_tag = recipe.codec.pipeline_tag
    usage = recipe.usage(f"exports/{pair}", metrics)
    lines = [
        "---", yaml.safe_dump(front_matter(cfg, pipeline_tag, metrics, primary), sort_keys=False).strip(), "---",
        f"# {pair}",
        "",
        f"A `{cfg.task.family}` model fine-tuned by finetune-pipeline from **{base}** on the task "
        f"**{cfg.task.name}**. The weights are the best checkpoint on the validation split "
        f"(`{primary}` = {_number(summary.get('best_metric'))}), not the last epoch.",
        "",
        f"## Evaluation on `{metrics.get('split')}` ({metrics.get('n_eval')} examples)",
        "",
        *([f"The intervals are {level:.0%} bootstrap intervals over {metrics['ci']['resamples']} resamples of the "
           f"{metrics['ci']['unit']}.", ""] if level else []),
        "| metric | value | interval |",
        "|---|---|---|",
        *[f"| {k} | {_number(v)} | {_interval(metrics, k)} |" for k, v in headline.items()],
        "",
        *_baseline_note(metrics, primary),
        *_calibration_note(metrics),
        *_onnx_section(onnx, primary, metrics),
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
        "With transformers alone (no finetune-pipeline needed):",
        "",
        "```python",
        *usage["transformers"],
        "```",
        "",
        *[line for note in usage["notes"] for line in (note, "")],
        "With finetune-pipeline's decoder (the one the evaluation above scored), on free text or a file:",
        "",
        "```bash",
        *[f"finetune-predict exports/{pair} {example}" for example in usage["predict"]],
        f"finetune-predict exports/{pair} --input texts.jsonl --output predictions.jsonl --backend onnx",
        "```",
        "",
        "Served over HTTP from the MLflow registry (the alias `champion` is the best version so far):",
        "",
        "```bash",
        f"mlflow models serve -m models:/{pair}@champion --env-manager local --host 127.0.0.1 --port 5001",
        "curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\",
        "     -d '{\"dataframe_records\": [{\"text\": \"What a film\"}]}'",
        "```",
        "",
    ]
    return "\n".join(lines)


def _onnx_section(onnx: dict[str, Any], primary: str, metrics: dict[str, Any]) -> list[str]:
    if not onnx:
        return []
    lines = ["## ONNX", "",
             f"`{onnx['file']}` (opset {onnx['opset']}, dynamic batch and sequence axes): max |Δlogits| against "
             f"PyTorch on {onnx['parity_inputs']} eval inputs = {onnx['max_abs_delta']:.3g} "
             f"(the export fails above {onnx['tolerance']:g})."]
    if "int8" in onnx:
        int8 = onnx["int8"]
        evaluated = "bf16 autocast" if metrics.get("bf16") else "fp32"
        lines += ["", f"`{int8['file']}` (dynamic int8 quantisation): `{primary}` on `{metrics.get('split')}` "
                      f"= {_number(int8[primary])} against {_number(metrics.get(primary))} for the PyTorch model "
                      f"as evaluated ({evaluated}); {int8['size_mb']:.1f} MB against {onnx['size_mb']:.1f} MB."]
    return [*lines, ""]
