"""Stage tokenize: subsample (seeded) and tokenize every split once; train and evaluate reuse it."""

from __future__ import annotations

import logging
import shutil
from typing import Any

from omegaconf import DictConfig

from finetune.data.splits import subsample
from finetune.errors import FinetuneError
from finetune.io import atomic_dir, read_json, write_json
from finetune.pipeline.common import LABELS, MANIFEST, STATS, load_saved, reading
from finetune.tasks import get_family

log = logging.getLogger("finetune")


def tokenize(cfg: DictConfig) -> dict[str, Any]:
    from datasets import DatasetDict

    from finetune.models import load_tokenizer, position_limit

    with reading(cfg, "raw") as raw_dir:
        dataset = load_saved(raw_dir / "dataset")
        manifest = read_json(raw_dir / MANIFEST)
        labels = manifest["labels"]
    family = get_family(cfg)
    tokenizer = load_tokenizer(cfg.model)
    limit = position_limit(cfg.model, tokenizer)
    if limit and int(cfg.data.max_length) > limit:
        raise FinetuneError(f"data.max_length={cfg.data.max_length} is above the {limit} positions that model "
                            f"'{cfg.model.name}' can embed; set data.max_length={limit} or less")
    examples, features, stats = {}, {}, {}
    for split, data in dataset.items():
        limit = cfg.data.max_train_samples if split == "train" else cfg.data.max_eval_samples
        examples[split] = subsample(data, limit, int(cfg.data.sample_seed))
        features[split], stats[split] = family.tokenize(examples[split], tokenizer, labels)
        if stats[split].get("truncated"):
            log.warning("%s: %d of %d %s examples were truncated to data.max_length=%s", cfg.paths.pair,
                        stats[split]["truncated"], len(examples[split]), split, cfg.data.max_length)
    with atomic_dir(cfg.paths.tokenized) as out:
        DatasetDict(examples).save_to_disk(str(out / "examples"))
        DatasetDict(features).save_to_disk(str(out / "features"))
        write_json(out / LABELS, labels)
        write_json(out / STATS, stats)
        shutil.copy(raw_dir / MANIFEST, out / MANIFEST)
    log.info("tokenized %s: %s", cfg.paths.pair, stats)
    return stats
