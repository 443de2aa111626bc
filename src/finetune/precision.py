"""Which numeric precision a model runs in: the rule that training, evaluation and prediction
share (`bf16: auto` in conf/train, `--precision auto` in finetune-predict), and what makes bf16
training pay on a CPU.

`auto` is decided by measurement (finetune.calibration); `bf16` / `fp32` force it.
"""

from __future__ import annotations

from typing import Any

from finetune.errors import FinetuneError

PRECISIONS = ("auto", "bf16", "fp32")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise FinetuneError(f"precision '{precision}': use {', '.join(PRECISIONS)}")
    return precision


def precision_setting(bf16: Any) -> str:
    """`train.bf16` (auto / true / false) as a precision (auto / bf16 / fp32)."""
    return "auto" if bf16 == "auto" else ("bf16" if bf16 else "fp32")


def keep_cpu_attention_fp32() -> None:
    """Run the fused attention kernel in fp32 when training under CPU bf16 autocast.

    PyTorch's CPU flash-attention backward is far slower in bf16 than in fp32 and ate most of
    what the bf16 matrix products save (bench/results/bf16_profile.md). Queries, keys and values
    are cast up, the kernel runs outside autocast and its output is cast back. Inference (no
    gradients) and GPUs keep the bf16 kernel. Installed once per process, in transformers'
    attention registry under the same name, so saved model configs do not change.
    """
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    if getattr(original, "keeps_cpu_training_fp32", False):
        return

    def sdpa(module: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if query.device.type != "cpu" or not torch.is_grad_enabled() or not torch.is_autocast_enabled("cpu"):
            return original(module, query, key, value, *args, **kwargs)
        with torch.autocast("cpu", enabled=False):
            mask = args[0] if args else kwargs.get("attention_mask")
            if mask is not None and mask.is_floating_point():
                mask = mask.float()
                args, kwargs = ((mask, *args[1:]), kwargs) if args else (args, kwargs | {"attention_mask": mask})
            output, weights = original(module, query.float(), key.float(), value.float(), *args, **kwargs)
        return output.to(query.dtype), weights

    sdpa.keeps_cpu_training_fp32 = True  # type: ignore[attr-defined]
    AttentionInterface.register("sdpa", sdpa)
