"""TrainingArguments assembly from conf/train and the length-grouped sampler."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from finetune.config import compose
from finetune.errors import FinetuneError
from finetune.training import (
    LengthGroupedBuckets,
    length_grouped_order,
    make_trainer,
    micro_batch_size,
    pad_multiple,
    training_arguments,
)
from tests.conftest import REPO


def train_cfg(*overrides: str):
    return compose(REPO, ["task=sarcasm", "model=tiny", *overrides]).train


def test_train_keys_pass_through_and_own_keys_are_removed(tmp_path):
    args = training_arguments(train_cfg("train.learning_rate=3e-5", "+train.gradient_accumulation_steps=2"),
                              tmp_path, "accuracy")
    assert args.learning_rate == 3e-5 and args.gradient_accumulation_steps == 2
    assert args.metric_for_best_model == "accuracy" and args.greater_is_better
    assert not args.bf16 and not args.torch_compile, "an `auto` switch without a measured choice stays off"
    measured = training_arguments(train_cfg(), tmp_path, "accuracy", measured={"bf16": True, "compile": True})
    assert measured.bf16 and measured.torch_compile
    forced = training_arguments(train_cfg("train.bf16=false", "train.compile=true"), tmp_path, "accuracy",
                                measured={"bf16": True, "compile": False})
    assert not forced.bf16 and forced.torch_compile, "true / false are not measured"
    assert not hasattr(args, "early_stopping_patience")


def test_pad_multiple_auto_is_8_on_cuda_and_none_on_a_cpu(monkeypatch):
    import finetune.training

    assert pad_multiple(8) == 8 and pad_multiple(None) is None
    monkeypatch.setattr(finetune.training, "_cuda_available", lambda: False)
    assert pad_multiple("auto") is None
    monkeypatch.setattr(finetune.training, "_cuda_available", lambda: True)
    assert pad_multiple("auto") == 8


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
    cfg = train_cfg("train.per_device_train_batch_size=8")
    args = training_arguments(cfg, tmp_path, "accuracy")
    trainer = make_trainer(args=args, model=_TinyModel(), tokenizer=None, collator=None, train_dataset=data,
                           eval_dataset=data, compute_metrics=None, callbacks=[],
                           length_bucket_batches=cfg.length_bucket_batches)
    order = list(trainer._get_train_sampler(data))
    assert sorted(order) == list(range(256)) and order != sorted(order, key=lengths.__getitem__)
    batches = [[lengths[i] for i in order[k:k + 8]] for k in range(0, 256, 8)]
    spread = sum(max(b) - min(b) for b in batches) / len(batches)
    assert spread < 20, "each batch holds similar lengths (random batches spread ~55)"
    assert list(trainer._get_eval_sampler(data)) == list(range(256))


def test_length_buckets_shuffle_batches_keep_the_short_one_last_and_put_the_longest_first():
    import torch

    lengths = torch.randint(1, 500, (1003,), generator=torch.Generator().manual_seed(0))

    def order(bucket_batches, seed=1):
        return length_grouped_order(lengths, 16, bucket_batches, torch.Generator().manual_seed(seed))

    def mean_spread(indices):
        batches = torch.as_tensor(indices).split(16)
        return sum(int(lengths[b].max() - lengths[b].min()) for b in batches) / len(batches)

    small, whole = order(4), order(None)
    assert sorted(small) == list(range(1003)) and order(4) == small and order(4, seed=2) != small
    assert int(lengths[small[:16]].max()) == int(lengths.max()), "longest batch first"
    assert len(small) % 16 == 11 and small[-11:] != sorted(small[-11:]), "the short batch is the last one"
    batches = [lengths[b].tolist() for b in torch.as_tensor(small).split(16)]
    assert all(b == sorted(b, reverse=True) for b in batches), "16 full batches, then the short one, each sorted"
    # buckets of 4 batches: batches far more alike than random ones, less alike than with one bucket
    assert mean_spread(whole) < mean_spread(small) < mean_spread(torch.randperm(1003).tolist()) / 3
    first_of_batches = [lengths[b[0]] for b in torch.as_tensor(whole[16:-11]).split(16)]
    assert first_of_batches != sorted(first_of_batches, reverse=True), "batches are shuffled, not in sorted order"

    sampler = LengthGroupedBuckets(lengths.tolist(), 16, 4, seed=7)
    first, second = list(sampler), list(sampler)
    assert first != second and sorted(first) == sorted(second) == list(range(1003))
    sampler.set_epoch(0)
    assert list(sampler) == first, "set_epoch (accelerate, resuming) replays an epoch's order"


def test_max_batch_tokens_splits_batches_into_micro_batches(tmp_path):
    assert micro_batch_size(32, 256, 2048) == 8
    assert micro_batch_size(32, 64, 2048) == 32
    assert micro_batch_size(8, 384, 2048) == 4, "the largest divisor of the batch within the budget"
    assert micro_batch_size(7, 512, 2048) == 1
    assert micro_batch_size(32, 256, None) == 32
    args = training_arguments(train_cfg("train.per_device_train_batch_size=32", "train.max_batch_tokens=2048",
                                        "+train.gradient_accumulation_steps=2"), tmp_path, "accuracy", max_length=256)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 8)
    assert args.per_device_eval_batch_size == 8
    args = training_arguments(train_cfg("train.per_device_train_batch_size=32", "train.max_batch_tokens=null"),
                              tmp_path, "accuracy", max_length=256)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (32, 1)


def train_tiny(tmp_path, budget: str, loss=None) -> tuple[float, dict]:
    """Train a 2-layer BERT one epoch (batches of 16, max_batch_tokens=`budget`); (loss, weights)."""
    import torch
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification, DataCollatorWithPadding

    from finetune.models import load_tokenizer

    tokenizer = load_tokenizer(compose(REPO, ["model=tiny"]).model)
    texts = [" ".join(["word"] * (3 + i % 9)) + f" {i}" for i in range(32)]
    data = Dataset.from_dict({**tokenizer(texts), "labels": [i % 2 for i in range(32)]})
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    args = training_arguments(train_cfg("train.per_device_train_batch_size=16", f"train.max_batch_tokens={budget}",
                                        "train.num_train_epochs=1", "train.train_sampling_strategy=random",
                                        "train.learning_rate=1e-3", "+train.max_grad_norm=1e9",
                                        "train.disable_tqdm=true"),
                              tmp_path / budget, "accuracy", has_eval=False, max_length=16)
    trainer = make_trainer(args=args, model=model, tokenizer=tokenizer, collator=DataCollatorWithPadding(tokenizer),
                           train_dataset=data, eval_dataset=None, compute_metrics=None, callbacks=[], loss=loss)
    result = trainer.train()
    return result.training_loss, {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_training(first: tuple[float, dict], second: tuple[float, dict]) -> None:
    import torch

    assert second[0] == pytest.approx(first[0], rel=1e-4)
    for name, value in first[1].items():
        torch.testing.assert_close(second[1][name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_micro_batches_take_the_same_optimizer_steps_as_whole_batches(tmp_path):
    # 4 rows of 16 tokens: 4 micro-batches per step
    assert_same_training(train_tiny(tmp_path, "null"), train_tiny(tmp_path, "64"))


def test_a_family_loss_is_scaled_like_the_model_loss_under_micro_batches(tmp_path):
    from finetune.tasks import recipe

    family = recipe(compose(REPO, ["task=sarcasm", "model=tiny"]))
    cfg = train_cfg("train.class_weights=[1.0,1.0]")
    equal = family.with_labels(["not_sarcastic", "sarcastic"]).loss(None, cfg)
    assert equal is not None
    whole = train_tiny(tmp_path, "null")
    assert_same_training(whole, train_tiny(tmp_path, "64", loss=equal))
    skewed = family.with_labels(["not_sarcastic", "sarcastic"]).loss(None, train_cfg("train.class_weights=[1.0,5.0]"))
    assert train_tiny(tmp_path, "null", loss=skewed)[0] != pytest.approx(whole[0], rel=1e-3)


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


def test_length_grouped_batches_shard_across_processes_as_ddp_deals_them():
    """What every process of a 2-process run gets from accelerate's sharding of our sampler: its
    own batches, every example each epoch, a fresh order per epoch, and no duplicate beyond the
    few examples accelerate repeats from the epoch's start to give every process full batches."""
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    lengths = [5 + (i * 37) % 90 for i in range(203)]
    epochs = []
    for epoch in range(2):
        per_process = []
        for process in range(2):
            sampler = LengthGroupedBuckets(lengths, 16, 4, seed=42)
            loader = prepare_data_loader(DataLoader(list(range(203)), sampler=sampler, batch_size=8),
                                         num_processes=2, process_index=process, put_on_device=False)
            loader.set_epoch(epoch)
            per_process.append([batch.tolist() for batch in loader])
        epochs.append(per_process)
        first, second = ([i for batch in batches for i in batch] for batches in per_process)
        assert len(per_process[0]) == len(per_process[1]) == 13, "as many batches on each process"
        assert sorted(set(first) | set(second)) == list(range(203)), "every example, every epoch"
        assert len(first) + len(second) == 208 and len(set(first) & set(second)) == 5, \
            "5 examples repeated to fill the last batches (2 processes x 13 batches x 8)"
        spread = [max(lengths[i] for i in batch) - min(lengths[i] for i in batch) for batch in per_process[0]]
        assert sum(spread) / len(spread) < 25, "each process's batches stay length-grouped"
    assert epochs[0][0] != epochs[1][0], "the order changes from one epoch to the next"
