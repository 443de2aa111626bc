"""ONNX: `model.onnx` with dynamic batch and sequence axes, checked against PyTorch on real eval
inputs, and an optional dynamic int8 quantisation (`model.int8.onnx`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from finetune.errors import FinetuneError
from finetune.inference import ONNX_FILES, OnnxBackend, TorchBackend, model_inputs, run_model
from finetune.tasks.interface import Codec

log = logging.getLogger("finetune")
OPSET = 17  # torch.onnx's TorchScript exporter (dynamo=False) is tested at this opset


def export_onnx(model: Any, codec: Codec, features: Any, out: Path, *, pad_id: int,
                tolerance: float) -> dict[str, Any]:
    """Write out/model.onnx and compare it with PyTorch on `features` (real eval inputs).

    Fails when any output differs by more than `tolerance` (absolute, on logits): a wrong graph
    (a dropped mask or segment input, a fixed axis) moves logits by far more than fp32 rounding does.
    """
    import torch

    model = model.float().eval()
    names = list(codec.outputs)
    inputs = model_inputs(model)
    sample = features.select(range(min(2, len(features))))
    width = min(len(ids) for ids in sample["input_ids"])
    example = {name: torch.tensor([list(row[:width]) for row in sample[name]]) if name in sample.column_names
               else torch.zeros((len(sample), width), dtype=torch.long) for name in inputs}
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes.update({name: {0: "batch", 1: "sequence"} if codec.token_outputs else {0: "batch"} for name in names})
    path = out / ONNX_FILES["onnx"]
    with torch.no_grad():
        torch.onnx.export(model, tuple(example[name] for name in inputs), str(path), input_names=inputs,
                          output_names=names, dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    reference = run_model(TorchBackend(model, codec.outputs), features, pad_id=pad_id, batch_size=16,
                          token_outputs=codec.token_outputs)
    exported = run_model(OnnxBackend(path), features, pad_id=pad_id, batch_size=16,
                         token_outputs=codec.token_outputs)
    delta = max(float(np.abs(a - b).max()) for a, b in zip(reference, exported, strict=True))
    if not delta <= tolerance:
        raise FinetuneError(f"{path}: ONNX outputs differ from PyTorch by {delta:.3g} on {len(features)} eval "
                            f"inputs (export.onnx_tolerance={tolerance})")
    log.info("ONNX export checked on %d eval inputs: max |delta logits| = %.3g", len(features), delta)
    return {"file": path.name, "opset": OPSET, "parity_inputs": len(features), "max_abs_delta": delta,
            "tolerance": tolerance}


def quantize_int8(out: Path) -> Path:
    """Dynamic int8 quantisation of out/model.onnx's weights (activations quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = out / ONNX_FILES["onnx-int8"]
    quantize_dynamic(str(out / ONNX_FILES["onnx"]), str(target), weight_type=QuantType.QInt8)
    return target
