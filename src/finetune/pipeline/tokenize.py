"""Stage tokenize: subsample (seeded) and tokenize every split once; train and evaluate reuse it."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from finetune.data.splits import subsample
from finetune.errors import FinetuneError
from finetune.io import atomic_dir, read_json, write_json
from finetune.pipeline.common import CODEC, MANIFEST, STATS, load_saved, reading
from finetune.tasks import recipe

log = logging.getLogger("finetune")
# data keys that shape the tokens, recorded in the manifest (the train stage logs them as params)
SUBSAMPLE = ("max_length", "max_train_samples", "max_eval_samples", "max_test_samples", "sample_seed")


def tokenize(cfg: DictConfig) -> dict[str, Any]:
    from datasets import DatasetDict

    from finetune.models import load_tokenizer, position_limit

    with reading(cfg, "raw") as raw_dir:
        dataset = load_saved(raw_dir / "dataset")
        manifest = read_json(raw_dir / MANIFEST)
    codec = recipe(cfg).with_labels(manifest["labels"]).codec
    tokenizer = load_tokenizer(cfg.model)
    limit = position_limit(cfg.model, tokenizer)
    if limit and int(cfg.data.max_length) > limit:
        raise FinetuneError(f"data.max_length={cfg.data.max_length} is above the {limit} positions that model "
                            f"'{cfg.model.name}' can embed; set data.max_length={limit} or less")
    examples, features, stats = {}, {}, {}
    for split, data in dataset.items():
        limit = sample_limit(cfg.data, split)
        if split in ("train", "validation") and cfg.data.split.strategy == "kfold":
            limit = None  # the folds cut the pool (data.max_train_samples) whole: every row validates once
        examples[split] = subsample(data, limit, int(cfg.data.sample_seed))
        features[split], stats[split] = codec.tokenize(examples[split], tokenizer, cfg.data.num_proc)
        if stats[split].get("truncated"):
            log.warning("%s: %d of %d %s examples were truncated to data.max_length=%s", cfg.paths.pair,
                        stats[split]["truncated"], len(examples[split]), split, cfg.data.max_length)
    with atomic_dir(cfg.paths.tokenized) as out:
        DatasetDict(examples).save_to_disk(str(out / "examples"))
        DatasetDict(features).save_to_disk(str(out / "features"))
        write_json(out / CODEC, codec.spec())
        write_json(out / STATS, stats)
        write_json(out / MANIFEST, manifest | {"tokenized": {key: cfg.data[key] for key in SUBSAMPLE}})
    log.info("tokenized %s: %s", cfg.paths.pair, stats)
    return stats


def sample_limit(data: DictConfig, split: str) -> int | str | None:
    """How many examples of `split` tokenize keeps: max_train_samples for train, max_test_samples
    (when set) for test, max_eval_samples for the rest."""
    if split == "train":
        return data.max_train_samples
    if split == "test" and data.get("max_test_samples") is not None:
        return data.max_test_samples
    return data.max_eval_samples
