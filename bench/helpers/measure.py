"""Measuring a Trainer from inside its process, identically for the baselines and our stage.

- Training time: the sum of the Trainer's epochs (on_epoch_begin -> on_epoch_end). This leaves
  out model loading, tokenization, the per-epoch evaluation and checkpoint saving (they run
  after on_epoch_end), but keeps data loading, collation, forward, backward and optimizer steps.
- Tokens: a forward pre-hook on the model sums the attention mask of every training batch, so
  real (non-padding) tokens are counted from what the model was actually fed, padding apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Meter:
    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.epochs = 0
        self.samples = 0
        self.real_tokens = 0
        self.padded_tokens = 0
        self.sum_sq_lengths = 0  # Σ s² over sequences: the attention FLOP term needs it
        self._epoch_start: float | None = None
        self.extra: dict[str, Any] = {}

    def count(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        """Forward pre-hook: count the batch if the model is training (evaluation is not)."""
        mask = kwargs.get("attention_mask")
        if not module.training or mask is None:
            return
        lengths = mask.sum(dim=1)
        self.samples += int(mask.shape[0])
        self.real_tokens += int(lengths.sum())
        self.padded_tokens += int(mask.numel())
        self.sum_sq_lengths += int((lengths.long() ** 2).sum())

    def attach(self, trainer: Any) -> Meter:
        """Hook this meter into a Trainer (before `train()`)."""
        from transformers import TrainerCallback

        meter = self

        class EpochTimer(TrainerCallback):
            def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                meter._epoch_start = time.perf_counter()

            def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                meter.train_seconds += time.perf_counter() - meter._epoch_start
                meter.epochs += 1

        trainer.add_callback(EpochTimer())
        trainer.model.register_forward_pre_hook(self.count, with_kwargs=True)
        optim = trainer.args.optim
        self.extra.update(model_shape(trainer.model), bf16=bool(trainer.args.bf16),
                          compile=bool(trainer.args.torch_compile),
                          optim=str(getattr(optim, "value", optim)), torch_threads=torch_threads(),
                          sampler=str(trainer.args.train_sampling_strategy))
        return self

    def summary(self) -> dict[str, Any]:
        seconds = self.train_seconds or float("nan")
        return {"train_seconds": self.train_seconds, "epochs": self.epochs, "samples": self.samples,
                "real_tokens": self.real_tokens, "padded_tokens": self.padded_tokens,
                "sum_sq_lengths": self.sum_sq_lengths, "samples_per_s": self.samples / seconds,
                "real_tokens_per_s": self.real_tokens / seconds,
                "padding_fraction": 1 - self.real_tokens / self.padded_tokens if self.padded_tokens else None,
                **self.extra}

    def write(self, path: str | Path | None = None, **more: Any) -> None:
        """Write the summary (plus `more`) as JSON to `path` or $BENCH_METER_OUT."""
        path = path or os.environ.get("BENCH_METER_OUT")
        if path:
            Path(path).write_text(json.dumps(self.summary() | more, indent=2) + "\n")


def model_shape(model: Any) -> dict[str, int]:
    """Parameter counts and the shape numbers of the FLOP formula (BERT-like config)."""
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for name, p in model.named_parameters() if ".embeddings." in f".{name}")
    config = model.config
    return {"params": total, "non_embedding_params": total - embeddings,
            "layers": int(config.num_hidden_layers), "hidden": int(config.hidden_size)}


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def set_threads() -> None:
    """Pin torch's intra-op threads to $BENCH_THREADS (the harness sets it for every side)."""
    threads = os.environ.get("BENCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@contextlib.contextmanager
def attention_in_bf16() -> Iterator[None]:
    """transformers' own sdpa function while the block runs: the fused attention in bf16 under CPU
    autocast, as before finetune.precision.keep_cpu_attention_fp32 (which it sets back after)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    ours = ALL_ATTENTION_FUNCTIONS["sdpa"]
    AttentionInterface.register("sdpa", sdpa_attention_forward)
    try:
        yield
    finally:
        AttentionInterface.register("sdpa", ours)
