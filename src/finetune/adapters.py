"""LoRA adapters (`train.peft: lora`): the encoder's weights stay frozen and low-rank updates of
some of its matrices train beside the task head, which trains fully.

The train stage saves the adapter alone (ADAPTER, a few hundred KB to a few MB) and the model
with the adapter merged into its weights, so every later stage, `transformers.pipeline`, ONNX and
the served model read an ordinary model folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune.config_values import to_container

log = logging.getLogger("finetune")
METHODS = ("lora",)
ADAPTER = "adapter"  # the folder, inside a model or export folder, holding the adapter alone


def adapt(model: Any, train_cfg: DictConfig, task_type: str) -> Any:
    """The model with LoRA adapters on its encoder where `train.peft` asks for them (else the model)."""
    if not train_cfg.get("peft"):
        return model
    from peft import LoraConfig, get_peft_model

    lora = to_container(train_cfg.lora)
    head = [name for name, child in model.named_children()
            if name != model.base_model_prefix and any(True for _ in child.parameters())]
    config = LoraConfig(task_type=task_type, r=int(lora["r"]), lora_alpha=float(lora["alpha"]),
                        lora_dropout=float(lora["dropout"]), target_modules=lora.get("target_modules"),
                        modules_to_save=list(head))  # peft extends the list it is given
    adapted = get_peft_model(model, config)
    trainable, total = adapted.get_nb_trainable_parameters()
    log.info("LoRA r=%s on %s: %d of %d parameters train (%.2f%%; the head %s in full)", lora["r"],
             ", ".join(sorted(config.target_modules or [])), trainable, total, 100 * trainable / total,
             ", ".join(head))
    return adapted


def is_adapted(model: Any) -> bool:
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")


def save(model: Any, tokenizer: Any, out: Path) -> None:
    """Write the adapter to out/ADAPTER and the merged model (and tokenizer) to `out`."""
    model.save_pretrained(str(out / ADAPTER))
    (out / ADAPTER / "README.md").unlink(missing_ok=True)  # peft's template card; the export writes the real one
    merged = model.merge_and_unload()
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def adapter_size_mb(folder: Path) -> float:
    """The adapter's weights on disk, in MB."""
    return round(sum(p.stat().st_size for p in (folder / ADAPTER).glob("*.safetensors")) / 1e6, 3)
