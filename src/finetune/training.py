"""Trainer assembly: TrainingArguments from `conf/train`, the fast path, callbacks, best model."""

from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from finetune.checks import is_number
from finetune.config_values import to_container
from finetune.errors import FinetuneError

# Keys of conf/train that are ours rather than TrainingArguments fields.
OWN_KEYS = ("class_weights", "pad_to_multiple_of", "early_stopping_patience", "torch_threads", "max_batch_tokens",
            "attention_dropout", "length_bucket_batches", "compile", "peft", "lora")
CALIBRATION_BATCHES = 3  # micro-batches timed each way by `auto` (the run's first ones: the longest, then a mix)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pad_multiple(value: int | str | None) -> int | None:
    """`pad_to_multiple_of` resolved: `auto` = 8 on a CUDA GPU (tensor-core tiles), none on a CPU,
    where rounding short batches up cost time and gained nothing (BENCHMARKS.md, ablation).
    """
    if value == "auto":
        return 8 if _cuda_available() else None
    return int(value) if value else None


def micro_batch_size(batch_size: int, max_length: int | None, max_batch_tokens: int | None) -> int:
    """The largest divisor of `batch_size` whose batches hold at most `max_batch_tokens` tokens.

    Full-length batches are what the budget is checked against (`max_length` tokens per row).
    """
    if not max_batch_tokens or not max_length or batch_size * max_length <= max_batch_tokens:
        return batch_size
    fitting = [d for d in range(1, batch_size + 1) if batch_size % d == 0 and d * max_length <= max_batch_tokens]
    return max(fitting, default=1)


def length_grouped_order(lengths: Any, batch_size: int, bucket_batches: int | None, generator: Any) -> list[int]:
    """One epoch's example order for length-grouped batches from shuffled buckets.

    Shuffle all examples, cut them into buckets of `bucket_batches` batches (None: one bucket),
    sort each bucket by length, cut it into batches, then shuffle the batches across the epoch.
    Small buckets keep batches close to random samples (transformers' sampler sorts 50 batches'
    worth and keeps each bucket's batches together, longest first); most of the padding still
    goes. The batch with the longest example comes first (an out-of-memory error shows at once)
    and a short last batch stays last (micro-batches stay aligned with the batches).
    """
    import torch

    lengths = torch.as_tensor(lengths)
    order = torch.randperm(len(lengths), generator=generator)
    bucket = batch_size * bucket_batches if bucket_batches else len(lengths)
    batches = []
    for start in range(0, len(order), bucket):
        members = order[start:start + bucket]
        members = members[torch.argsort(lengths[members], descending=True, stable=True)]
        batches.extend(members.split(batch_size))
    short_last = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    if batches:
        longest = max(range(len(batches)), key=lambda i: int(lengths[batches[i]].max()))
        batches.insert(0, batches.pop(longest))
    return torch.cat(batches + short_last).tolist() if batches or short_last else []


class LengthGroupedBuckets:
    """A sampler (for the Trainer's DataLoader) over `length_grouped_order`, reshuffled every epoch."""

    def __init__(self, lengths: Any, batch_size: int, bucket_batches: int | None, seed: int) -> None:
        self.lengths, self.batch_size, self.bucket_batches, self.seed = lengths, batch_size, bucket_batches, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by accelerate before each epoch, also on resume
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):  # noqa: ANN204 - an iterator of indices
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1  # a fresh order next epoch even if nobody calls set_epoch
        return iter(length_grouped_order(self.lengths, self.batch_size, self.bucket_batches, generator))


def eval_batch_size(train_cfg: DictConfig, max_length: int | None) -> int:
    """`per_device_eval_batch_size`, capped so a full-length batch holds <= `max_batch_tokens` tokens."""
    batch = int(train_cfg.get("per_device_eval_batch_size") or 8)
    budget = train_cfg.get("max_batch_tokens")
    return max(1, min(batch, int(budget) // int(max_length))) if budget and max_length else batch


def training_arguments(train_cfg: DictConfig, output_dir: Path, primary_metric: str,
                       has_eval: bool = True, max_length: int | None = None, greater_is_better: bool = True,
                       measured: dict[str, bool] | None = None) -> Any:
    """TrainingArguments from the train config (own keys removed, `auto` switches resolved).

    `measured`: the choices `measured_fast_path` made for the switches set to `auto` (`bf16`,
    `compile`); an `auto` switch without one stays off.

    With `max_batch_tokens`, a batch of `per_device_train_batch_size` rows is fed to the model in
    micro-batches whose gradients are accumulated: the optimizer sees the same batches and takes
    the same steps, while the activations stay small enough for the CPU's caches.
    """
    from transformers import TrainingArguments

    values = {k: v for k, v in to_container(train_cfg).items() if k not in OWN_KEYS}
    budget = train_cfg.get("max_batch_tokens")
    batch = int(values.get("per_device_train_batch_size", 8))
    micro = micro_batch_size(batch, max_length, budget)
    if micro < batch:
        values["per_device_train_batch_size"] = micro
        values["gradient_accumulation_steps"] = int(values.get("gradient_accumulation_steps", 1)) * (batch // micro)
    values["per_device_eval_batch_size"] = eval_batch_size(train_cfg, max_length)
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(values) - fields)
    if unknown:
        hints = {k: difflib.get_close_matches(k, fields, n=1) for k in unknown}
        described = ", ".join(f"'{k}'" + (f" (did you mean '{hints[k][0]}'?)" if hints[k] else "")
                              for k in unknown)
        raise FinetuneError(f"train.{unknown[0]}: not a TrainingArguments field: {described}")
    values.setdefault("dataloader_pin_memory", _cuda_available())  # pinning is for host-to-GPU copies
    # Our losses are batch means. Under DDP the Trainer would multiply them by the number of
    # processes (it expects sums over tokens divided by a count gathered from every process):
    # gradients and the logged loss would double on 2 processes.
    values.setdefault("average_tokens_across_devices", False)
    measured = measured or {}
    if values.get("bf16") == "auto":
        values["bf16"] = measured.get("bf16", False)
    compile_setting = train_cfg.get("compile", False)
    if compile_setting is not None:
        values["torch_compile"] = measured.get("compile", False) if compile_setting == "auto" else bool(compile_setting)
    if not _cuda_available():
        # Told it is on a CPU, the Trainer autocasts bf16 there, and accelerate runs torchrun's
        # processes as DDP (without it, each process trains alone and all of them log).
        values.setdefault("use_cpu", True)
    if not has_eval:
        values.update(eval_strategy="no", load_best_model_at_end=False)
    if values.get("load_best_model_at_end"):
        values.setdefault("metric_for_best_model", primary_metric)
        values.setdefault("greater_is_better", greater_is_better)
    try:
        return TrainingArguments(output_dir=str(output_dir), **values)
    except (ValueError, TypeError) as error:
        raise FinetuneError(f"invalid train config: {str(error).splitlines()[0]}") from None


def run_steps(train_cfg: DictConfig, examples: int, micro_batch: int) -> int:
    """Forward-backward passes (micro-batches) of a whole training run."""
    if (train_cfg.get("max_steps") or -1) > 0:
        batch = int(train_cfg.get("per_device_train_batch_size", 8))
        return int(train_cfg.max_steps) * max(1, batch // micro_batch)
    return math.ceil(examples / micro_batch) * math.ceil(float(train_cfg.get("num_train_epochs", 1)))


def calibration_batches(features: Any, collator: Any, model: Any, args: Any, bucket_batches: int | None,
                        count: int = CALIBRATION_BATCHES) -> list[dict[str, Any]]:
    """The run's first `count` micro-batches, in the order its sampler deals them, collated as the
    Trainer collates them (the model's input columns only)."""
    import inspect

    import torch

    from finetune.calibration import device_type

    accepted = set(inspect.signature(model.forward).parameters)
    rows = features.select_columns([c for c in features.column_names if c in accepted])
    micro, seed = args.per_device_train_batch_size, int(args.data_seed if args.data_seed is not None else args.seed)
    generator = torch.Generator().manual_seed(seed)
    if args.train_sampling_strategy == "group_by_length":
        order = length_grouped_order(features["length"], micro * args.gradient_accumulation_steps, bucket_batches,
                                     generator)
    else:
        order = torch.randperm(len(features), generator=generator).tolist()
    device = device_type()  # where the Trainer will put the model
    batches = []
    for start in range(0, min(len(order), count * micro), micro):
        batch = collator([rows[i] for i in order[start:start + micro]])
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def measured_fast_path(train_cfg: DictConfig, args: Any, model: Any, features: Any, collator: Any,
                       tolerance: float) -> dict[str, Any]:
    """The `auto` switches of the train config (bf16, compile) decided by timing this model on the
    run's own first micro-batches (finetune.calibration): {switch: Choice}. In a distributed run
    the main process measures and the others take its choices."""
    from finetune import calibration, distributed

    wanted = [switch for switch in ("bf16", "compile") if train_cfg.get(switch) == "auto"]
    if not wanted:
        return {}
    choices: dict[str, Any] | None = None
    if distributed.is_main():
        micro = args.per_device_train_batch_size
        batches = calibration_batches(features, collator, model, args, train_cfg.get("length_bucket_batches"))
        choices = {}
        if "bf16" in wanted:
            choices["bf16"] = calibration.training_bf16(model, batches, tolerance)
        bf16 = choices["bf16"].use if "bf16" in choices else bool(train_cfg.get("bf16"))
        if "compile" in wanted:
            steps = run_steps(train_cfg, len(features), micro)
            rate = choices["bf16"].rates.get("bf16" if bf16 else "fp32") if "bf16" in choices else None
            choices["compile"] = calibration.training_compile(model, batches, steps, bf16, rate)
    return distributed.shared(choices)


def make_trainer(*, args: Any, model: Any, tokenizer: Any, collator: Any, train_dataset: Any,
                 eval_dataset: Any, compute_metrics: Any, callbacks: list[Any],
                 length_bucket_batches: int | None = None, loss: Any = None) -> Any:
    """A Trainer whose length-grouped sampler uses the lengths saved at tokenize time; `loss`, if
    given, replaces the model's own (a mean over the batch, as the model's is)."""
    from transformers import Trainer

    class LengthAwareTrainer(Trainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # BERT-style heads take **kwargs but compute a plain mean loss, ignoring the
            # num_items_in_batch the Trainer then passes instead of dividing by the accumulation
            # steps: gradients (and the logged loss) would grow with gradient accumulation.
            self.model_accepts_loss_kwargs = False
            self.loss_is_scaled_for_ga = False  # our `loss` too is a batch mean: divide by the accumulation

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy == "group_by_length" and lengths is not None:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                return LengthGroupedBuckets(lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                            length_bucket_batches, seed)
            return super()._get_train_sampler(dataset)

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            # transformers 5 length-groups (shuffles) evaluation too under group_by_length; our
            # post-processing maps outputs back to examples by position, so keep eval in order.
            from torch.utils.data import SequentialSampler

            return SequentialSampler(eval_dataset)

    # Trainer drops unused columns (the `length` column too) before it builds the sampler.
    column = args.length_column_name
    lengths = list(train_dataset[column]) if train_dataset is not None and column in train_dataset.column_names \
        else None
    return LengthAwareTrainer(model=model, args=args, data_collator=collator, train_dataset=train_dataset,
                              eval_dataset=eval_dataset, processing_class=tokenizer,
                              compute_metrics=compute_metrics, callbacks=callbacks, compute_loss_func=loss)


def history_callback(log_to_mlflow: bool, earlier: list[dict[str, Any]] | None = None) -> Any:
    """A TrainerCallback that keeps every log entry and sends it to the active MLflow run by step.

    `earlier`: the Trainer's log history saved in the checkpoint a resumed run starts from.
    """
    from transformers import TrainerCallback

    class History(TrainerCallback):
        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = [
                {"step": entry["step"], **{k: float(v) for k, v in entry.items() if k != "step" and is_number(v)}}
                for entry in earlier or []]

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            numbers = {k: float(v) for k, v in logs.items() if is_number(v)}
            self.rows.append({"step": state.global_step, "epoch": state.epoch, **numbers})
            if log_to_mlflow:
                from finetune.tracking import log_metrics

                log_metrics({k: v for k, v in numbers.items() if k != "epoch"} | {"epoch": state.epoch or 0},
                            step=state.global_step)

    return History()

