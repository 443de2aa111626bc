"""What each config key may hold, checked on the whole config before a stage does any work.

Two checks, each a one-line FinetuneError naming the key:
- every key must be one that conf/ defines (a misspelled `+data.max_lenght=64` would otherwise be
  ignored), with a suggestion; sections listed in OPEN take any key (conf/train passes
  TrainingArguments fields through and finetune.training checks those names);
- values of the keys in RULES, and of the keys each task family's settings and options
  declare (finetune/tasks/), must have the right type and range (`train.num_train_epochs=-1`
  would otherwise "train" zero steps and publish random weights).

Checks that need the data or the model (a label count, the model's position limit) stay with the
stage that has them.
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from finetune.adapters import METHODS as ADAPTER_METHODS
from finetune.checks import Check, boolean, integer, number, one_of, text
from finetune.config_values import flatten
from finetune.data.splits import STRATEGIES
from finetune.errors import FinetuneError
from finetune.tasks import config_rules

# Keys below these prefixes are free: TrainingArguments fields (checked by finetune.training), a
# random model's architecture, the output layout, sweep presets.
OPEN = ("train.", "model.config.", "paths.", "hparams_search.")
# conf/<group>/*.yaml sit at <group>.
GROUPS_UNDER_OWN_KEY = ("data", "train", "evaluate", "tracking", "export", "model")


COUNT = integer(1, also=(None, "all"))
RULES: dict[str, Check] = {
    "train.num_train_epochs": number(0, low_open=True),
    "train.max_steps": integer(-1),
    "train.learning_rate": number(0, low_open=True),
    "train.per_device_train_batch_size": integer(1),
    "train.per_device_eval_batch_size": integer(1),
    "train.gradient_accumulation_steps": integer(1),
    "train.weight_decay": number(0),
    "train.warmup_steps": number(0),
    "train.label_smoothing_factor": number(0, 1, high_open=True),
    "train.seed": integer(0),
    "train.data_seed": integer(0, also=(None,)),
    "train.logging_steps": number(0, low_open=True),
    "train.save_total_limit": integer(1, also=(None,)),
    "train.bf16": boolean(also=("auto",)),
    "train.compile": boolean(also=("auto",)),
    "train.max_batch_tokens": integer(1, also=(None,)),
    "train.early_stopping_patience": integer(1, also=(None,)),
    "train.torch_threads": integer(1, also=(None,)),
    "train.length_bucket_batches": integer(1, also=(None,)),
    "train.attention_dropout": number(0, 1, high_open=True, also=(None,)),
    "train.pad_to_multiple_of": integer(1, also=(None, "auto")),
    "train.peft": one_of(None, *ADAPTER_METHODS),
    "train.lora.r": integer(1),
    "train.lora.alpha": number(0, low_open=True),
    "train.lora.dropout": number(0, 1, high_open=True),
    "data.max_train_samples": COUNT,
    "data.max_eval_samples": COUNT,
    "data.max_test_samples": COUNT,
    "data.sample_seed": integer(0),
    "data.num_proc": integer(1, also=("auto",)),
    "data.format": one_of(None, "csv", "tsv", "json", "jsonl", "parquet", "xlsx", "conll", "squad"),
    "data.eval_split": text(),
    "data.split.strategy": one_of(*STRATEGIES),
    "data.split.folds": integer(2),
    "data.split.fold": integer(0),
    "data.split.validation_fraction": number(0, 1, low_open=True, high_open=True),
    "data.split.test_fraction": number(0, 1, low_open=True, high_open=True, also=(None,)),
    "data.split.first_n": integer(1),
    "data.split.seed": integer(0),
    "evaluate.confidence_level": number(0, 1, low_open=True, high_open=True),
    "evaluate.bootstrap_resamples": integer(0),
    "evaluate.bootstrap_seed": integer(0),
    "evaluate.calibrate": boolean(),
    "model.trust_remote_code": boolean(),
    "tracking.enabled": boolean(),
    "tracking.log_model": boolean(),
    "export.onnx": boolean(),
    "export.quantize": boolean(),
    "export.model_card": boolean(),
    "export.onnx_parity_inputs": integer(1),
    "export.onnx_tolerance": number(0, low_open=True),
    "export.promotion": one_of("significant", "better", "always", "never"),
    "export.significance_level": number(0, 1, low_open=True, high_open=True),
    "export.comparison_resamples": integer(1),
}


_ABSENT = object()


def validate(cfg: DictConfig, conf_dir: str | Path) -> None:
    """Every key known to conf/ (or under an OPEN prefix) and every value in range, else one line."""
    known = known_keys(str(Path(conf_dir).resolve()))
    values = flatten(OmegaConf.to_container(cfg, resolve=False))
    for key in values:
        parts = key.split(".")
        # a known key set to a mapping (task.label_map={B-MISC: O}) holds keys of the user's own
        if not any(".".join(parts[:n]) in known for n in range(1, len(parts) + 1)) and not key.startswith(OPEN):
            raise FinetuneError(f"'{key}' is not a config key: no stage reads it{suggestion(key, conf_dir)}")
        if values[key] == []:  # `task.labels=[]`, `pipeline.stages=[]` would read as "none" or as "unset"
            raise FinetuneError(f"{key}: an empty list; give at least one value (or null for the default)")
    for key, check in (RULES | config_rules()).items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if check is not None and not check(value):
            raise FinetuneError(f"{key}: expected {check.expected}, got {value!r}")
    if cfg.model.get("source") == "path" and OmegaConf.is_missing(cfg.model, "path"):
        raise FinetuneError(f"model.path: model '{cfg.model.name}' loads a folder: set model.path=/path/to/model")


def suggestion(key: str, conf_dir: str | Path) -> str:
    """` (did you mean 'data.max_length'?)` for a misspelled key, else where the keys are listed."""
    close = difflib.get_close_matches(key, sorted(known_keys(str(Path(conf_dir).resolve()))), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else " (see conf/ for the known keys)"


@functools.lru_cache(maxsize=4)
def known_keys(conf_dir: str) -> frozenset[str]:
    """Every leaf key any file of conf/ sets, at the place it lands in the composed config."""
    root = Path(conf_dir)
    keys = set(flatten(_load(root / "config.yaml")))
    for path in root.glob("*/*.yaml"):
        group = path.parent.name
        data = _load(path)
        global_package = "@package _global_" in path.read_text(encoding="utf-8").split("\n", 1)[0]
        if group in GROUPS_UNDER_OWN_KEY and not global_package:
            data = {group: data}
        keys |= set(flatten(data))
    return frozenset(k for k in keys if not k.startswith(("defaults", "hydra")))


def _load(path: Path) -> dict[str, Any]:
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    return {k: v for k, v in data.items() if k != "defaults"}
