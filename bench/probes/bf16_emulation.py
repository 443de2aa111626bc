"""bf16 autocast numerics on a CPU without bf16 units, at fp32 speed: for bench/comparisons/precision.py.

On a CPU without AVX-512 BF16 or AMX, torch runs bf16 matrix products through a scalar fallback
(~1 GFLOP/s against ~135 in fp32 on the AVX2 machine of this project), so a bf16 quality check
at a real budget would take days. The numbers of a bf16 GEMM do not need bf16 hardware, though:
bf16 × bf16 products are exact in fp32 (8 + 8 significand bits fit in 24), and GPUs and AMX
accumulate in fp32 and round the result to bf16. So inside `EmulatedBf16Matmuls` every matrix
product (and fused attention) that autocast hands over in bf16 is computed by the fp32 kernel on
the very same bf16 values, and its result rounded to bf16. Everything else (autocast's casts,
element-wise ops in bf16, layer norm and softmax in fp32, the fp32 master weights) runs as under
real bf16 autocast. Left over: the order of the fp32 accumulation, as between any two GEMMs.

    python bench/probes/bf16_emulation.py stages/train.py task=ner train.bf16=true ...   # a stage inside the mode
    python bench/probes/bf16_emulation.py --check       # against real bf16 autocast on a tiny BERT
"""

from __future__ import annotations

import contextlib
import json
import runpy
import sys
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

aten = torch.ops.aten
MATMULS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default, aten.addbmm.default}
BF16 = torch.bfloat16


def _is_bf16(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == BF16


def _up(value: Any) -> Any:
    return value.float() if _is_bf16(value) else value


def _scores(q: torch.Tensor, k: torch.Tensor, is_causal: bool, attn_mask: torch.Tensor | None,
            scale: float | None) -> tuple[torch.Tensor, float]:
    """Scaled, masked attention scores in fp32 (bf16 inputs, fp32 accumulation)."""
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    scores = (q.float() @ k.float().transpose(-2, -1)) * scale
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else scores + attn_mask.float()
    if is_causal:
        scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
    return scores, scale


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
                    is_causal: bool = False, *, attn_mask: torch.Tensor | None = None,
                    scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The CPU flash-attention kernel's bf16 arithmetic: fp32 scores and softmax statistics, the
    exponentials rounded to bf16 before the product with V, the output rounded to bf16."""
    scores, _ = _scores(q, k, is_causal, attn_mask, scale)
    peak = scores.amax(-1, keepdim=True)
    exps = torch.exp(scores - peak)
    total = exps.sum(-1, keepdim=True)
    out = (exps.to(BF16).float() @ v.float()) / total
    return out.to(BF16), (peak + total.log()).squeeze(-1)


def flash_attention_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             out: torch.Tensor, logsumexp: torch.Tensor, dropout_p: float = 0.0,
                             is_causal: bool = False, *, attn_mask: torch.Tensor | None = None,
                             scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Its backward: probabilities recomputed in fp32, rounded to bf16 for dV, the score gradient
    rounded to bf16 for dQ and dK, every product accumulated in fp32, the gradients rounded to bf16."""
    scores, scale = _scores(q, k, is_causal, attn_mask, scale)
    probs = torch.exp(scores - logsumexp.unsqueeze(-1))
    grad_out32 = grad_out.float()
    grad_v = probs.to(BF16).float().transpose(-2, -1) @ grad_out32
    grad_probs = grad_out32 @ v.float().transpose(-2, -1)
    row = (grad_out32 * out.float()).sum(-1, keepdim=True)
    grad_scores = (probs * (grad_probs - row)).to(BF16).float()
    grad_q = grad_scores @ k.float() * scale
    grad_k = grad_scores.transpose(-2, -1) @ q.float() * scale
    return grad_q.to(BF16), grad_k.to(BF16), grad_v.to(BF16)


ATTENTION = {aten._scaled_dot_product_flash_attention_for_cpu.default: flash_attention,
             aten._scaled_dot_product_flash_attention_for_cpu_backward.default: flash_attention_backward}


class EmulatedBf16Matmuls(TorchDispatchMode):
    """bf16 matrix products by fp32 kernels on the same bf16 values, results rounded to bf16; the
    fused attention kernel's bf16 arithmetic re-enacted in fp32 (`flash_attention`)."""

    def __init__(self) -> None:
        super().__init__()
        self.intercepted = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if (func in MATMULS or func in ATTENTION) and any(_is_bf16(a) for a in args):
            self.intercepted += 1
            if func in ATTENTION:
                return ATTENTION[func](*args, **kwargs)
            return func(*tree_map(_up, args), **tree_map(_up, kwargs)).to(BF16)
        return func(*args, **kwargs)


def check() -> dict[str, float]:
    """A tiny BERT classifier, one forward + backward, relative distances of logits and gradients.

    precisions: `fp32`; `bf16` real autocast (the fused attention kernel); `bf16-math` real autocast
    with attention decomposed into bf16 matmuls and softmax (another legitimate bf16 kernel choice);
    `emulated`. The emulation is faithful where its distance to `bf16` is no larger than the two
    real kernels' distance to each other, and all three sit about as far from fp32.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config)
    ids = torch.randint(0, 1000, (8, 64))
    mask = torch.ones_like(ids)
    mask[4:, 40:] = 0
    labels = torch.randint(0, 2, (8,))

    def run(precision: str) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        emulated = EmulatedBf16Matmuls()
        backends = [SDPBackend.MATH] if precision == "bf16-math" else [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]
        with (torch.autocast("cpu", dtype=BF16, enabled=precision != "fp32"), sdpa_kernel(backends),
              emulated if precision == "emulated" else contextlib.nullcontext()):
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            out.loss.backward()
        if precision == "emulated" and not emulated.intercepted:
            raise RuntimeError("the emulation intercepted no operation")
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return out.logits.float().detach(), grads.clone()

    results = {name: run(name) for name in ("fp32", "bf16", "bf16-math", "emulated")}
    pairs = (("emulated", "bf16"), ("bf16-math", "bf16"), ("bf16", "fp32"), ("bf16-math", "fp32"),
             ("emulated", "fp32"))
    return {f"{what} {a} vs {b}": float((results[a][part] - results[b][part]).norm() / results[b][part].norm())
            for part, what in ((0, "logits"), (1, "gradients")) for a, b in pairs}


def main() -> None:
    if sys.argv[1:] == ["--check"]:
        print(json.dumps(check()))
        return
    script, overrides = sys.argv[1], sys.argv[2:]
    sys.argv = [script, *overrides]
    with EmulatedBf16Matmuls() as mode:
        runpy.run_path(script, run_name="__main__")
    if not mode.intercepted:  # no bf16 product at all: autocast was off, and the run was plain fp32
        raise SystemExit(f"bf16_emulation: {script} ran no bf16 matrix product (is train.bf16 true?)")
    print(f"bf16_emulation: {mode.intercepted} bf16 products and attention calls emulated", file=sys.stderr)


if __name__ == "__main__":
    main()
