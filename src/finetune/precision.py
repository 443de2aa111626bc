"""Which numeric precision a model runs in: the one rule that training, evaluation and
prediction share (`bf16: auto` in conf/train, `--precision auto` in finetune-predict)."""

from __future__ import annotations

from typing import Any

from finetune.errors import FinetuneError


def bf16_supported() -> bool:
    """bf16 autocast pays off: a CUDA GPU with bf16, or a CPU with AMX tiles.

    AVX-512 BF16 alone is not enough: on this project's 2-core VM (AVX-512 BF16, no AMX) a
    MiniLM training step ran ~1.5x slower under bf16 autocast than in fp32 (bench/).
    """
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    amx = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    return bool(amx and amx())


def resolve_bf16(precision: str) -> bool:
    """`auto`: bf16 autocast where it pays (`bf16_supported()`); `bf16` / `fp32` force it."""
    if precision not in ("auto", "bf16", "fp32"):
        raise FinetuneError(f"precision '{precision}': use auto, bf16 or fp32")
    return bf16_supported() if precision == "auto" else precision == "bf16"


def precision_setting(bf16: Any) -> str:
    """`train.bf16` (auto / true / false) as a precision (auto / bf16 / fp32)."""
    return "auto" if bf16 == "auto" else ("bf16" if bf16 else "fp32")
