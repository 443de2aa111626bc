"""TrainingArguments assembly from conf/train and the length-grouped sampler."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from finetune.config import compose
from finetune.errors import FinetuneError
from finetune.training import bf16_supported, make_trainer, training_arguments
from tests.conftest import REPO


def train_cfg(*overrides: str):
    return compose(REPO, ["task=sarcasm", "model=tiny", *overrides]).train


def test_train_keys_pass_through_and_own_keys_are_removed(tmp_path):
    args = training_arguments(train_cfg("train.learning_rate=3e-5", "+train.gradient_accumulation_steps=2"),
                              tmp_path, "accuracy")
    assert args.learning_rate == 3e-5 and args.gradient_accumulation_steps == 2
    assert args.metric_for_best_model == "accuracy" and args.greater_is_better
    assert args.bf16 == bf16_supported()
    assert not hasattr(args, "early_stopping_patience")


def test_unknown_train_key_suggests_the_field(tmp_path):
    cfg = train_cfg()
    OmegaConf.set_struct(cfg, False)
    cfg.learning_rat = 1e-4
    with pytest.raises(FinetuneError, match="'learning_rat' \\(did you mean 'learning_rate'\\?\\)"):
        training_arguments(cfg, tmp_path, "accuracy")


def test_without_validation_no_best_model_selection(tmp_path):
    args = training_arguments(train_cfg(), tmp_path, "accuracy", has_eval=False)
    assert args.eval_strategy == "no" and not args.load_best_model_at_end


def test_sampler_uses_saved_lengths_in_shuffled_buckets_and_eval_keeps_order(tmp_path):
    from datasets import Dataset

    lengths = [5 + (i * 7) % 60 for i in range(256)]
    data = Dataset.from_dict({"input_ids": [[1] * n for n in lengths], "labels": [0] * 256, "length": lengths})
    args = training_arguments(train_cfg("train.per_device_train_batch_size=8"), tmp_path, "accuracy")
    trainer = make_trainer(args=args, model=_TinyModel(), tokenizer=None, collator=None, train_dataset=data,
                           eval_dataset=data, compute_metrics=None, callbacks=[])
    order = list(trainer._get_train_sampler(data))
    assert sorted(order) == list(range(256)) and order != sorted(order, key=lengths.__getitem__)
    batches = [[lengths[i] for i in order[k:k + 8]] for k in range(0, 256, 8)]
    spread = sum(max(b) - min(b) for b in batches) / len(batches)
    assert spread < 20, "each batch holds similar lengths (random batches spread ~55)"
    assert list(trainer._get_eval_sampler(data)) == list(range(256))


class _TinyModel:
    """Just enough of a model for building a Trainer's samplers."""

    def __new__(cls):
        import torch

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = torch.nn.Linear(1, 1)

            def forward(self, input_ids=None, labels=None):
                return self.linear(input_ids.float())

        return Model()
