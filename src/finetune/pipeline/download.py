"""Stage download: read the task's sources, split them, check labels, save DatasetDict + manifest."""

from __future__ import annotations

import json
import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from finetune.data.sources import load_examples
from finetune.data.splits import apply_split_strategy
from finetune.errors import FinetuneError
from finetune.io import atomic_dir, sha256_text, write_json
from finetune.pipeline.common import MANIFEST
from finetune.tasks import recipe

log = logging.getLogger("finetune")


def download(cfg: DictConfig) -> dict[str, Any]:
    from datasets import Dataset, DatasetDict

    family = recipe(cfg)
    splits, manifest = load_examples(cfg, family)
    require_examples(splits, manifest, cfg.task.name)
    splits = apply_split_strategy(splits, cfg.data.split, family.stratum, family.group,
                                  pool=cfg.data.max_train_samples)
    require_examples(splits, manifest, cfg.task.name)
    if cfg.data.eval_split not in splits:  # found now rather than after training
        raise FinetuneError(f"data.eval_split: the evaluate stage reports '{cfg.data.eval_split}', which task "
                            f"'{cfg.task.name}' lacks (its splits: {', '.join(splits)}); give data.files."
                            f"{cfg.data.eval_split}, a split column, or carve it with data.split.strategy="
                            "random_fraction data.split.test_fraction=0.1")
    labels = family.label_set(splits)
    family = family.with_labels(labels)
    for split, examples in splits.items():
        family.encode_labels(examples, split)
    identity = json.dumps([(f["split"], f["sha256"]) for f in manifest["files"]] or manifest.get("fingerprints"),
                          sort_keys=True)
    manifest.update(task=cfg.task.name, family=cfg.task.family, labels=labels,
                    split=OmegaConf.to_container(cfg.data.split, resolve=True),
                    rows={split: len(rows) for split, rows in splits.items()}, data_sha256=sha256_text(identity))
    features = family.features()
    dataset = DatasetDict()
    for split, examples in splits.items():
        dataset[split] = Dataset.from_list([{k: v for k, v in ex.items() if not k.startswith("_")} for ex in examples],
                                           features=features)
        # A content-derived fingerprint keeps the saved files identical when the data is.
        dataset[split]._fingerprint = sha256_text(f"{manifest['data_sha256']}:{split}:{manifest['split']}")[:16]
    with atomic_dir(cfg.paths.raw) as out:
        dataset.save_to_disk(str(out / "dataset"))
        write_json(out / MANIFEST, manifest)
    log.info("saved %s: %s", cfg.paths.raw, manifest["rows"])
    return manifest


def require_examples(splits: dict[str, list[Any]], manifest: dict[str, Any], task: str) -> None:
    """A one-line error naming the source of the first split without examples."""
    for split, examples in splits.items():
        if not examples:
            files = [f["path"] for f in manifest["files"] if f["split"] == split] or \
                sorted({f["path"] for f in manifest["files"]})  # one file holding every split
            raise FinetuneError(f"split '{split}' of task '{task}' has no examples "
                                f"({manifest['source']}: {', '.join(files) or 'the Hub'})")
