"""Stage download: read the task's sources, split them, check labels, save DatasetDict + manifest.

Table files a recipe reads column-wise go through Arrow (finetune.data.columnar): batches
streamed to disk, flat memory; anything that path cannot take as the row readers would, and every
bad input, is read row by row, which names the line at fault.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from finetune.data import columnar
from finetune.data.readers import detect_format
from finetune.data.sources import load_examples, locate_files, manifest_of
from finetune.data.splits import apply_split_strategy
from finetune.errors import DataError, FinetuneError
from finetune.io import atomic_dir, sha256_text, write_json
from finetune.pipeline.common import MANIFEST
from finetune.tasks import recipe
from finetune.tasks.interface import Recipe

log = logging.getLogger("finetune")


def download(cfg: DictConfig) -> dict[str, Any]:
    family = recipe(cfg)
    layout = family.layout()
    located, _ = locate_files(cfg)
    if layout is not None and located is not None:
        try:
            with atomic_dir(cfg.paths.raw) as out:
                manifest = download_columns(cfg, family, layout, located, out)
            log.info("saved %s: %s", cfg.paths.raw, manifest["rows"])
            return manifest
        except columnar.Fallback as why:
            log.debug("reading the rows one by one: %s", why)
    return download_rows(cfg, family)


def download_rows(cfg: DictConfig, family: Recipe) -> dict[str, Any]:
    """The row path: every source read into examples, which any family can read."""
    from datasets import Dataset, DatasetDict

    splits, manifest = load_examples(cfg, family)
    require_examples(splits, manifest, cfg.task.name)
    splits = apply_split_strategy(splits, cfg.data.split, family.stratum, family.group,
                                  pool=cfg.data.max_train_samples)
    require_examples(splits, manifest, cfg.task.name)
    require_eval_split(cfg, list(splits))
    labels = family.label_set(splits)
    family = family.with_labels(labels)
    for split, examples in splits.items():
        family.encode_labels(examples, split)
    describe(cfg, manifest, labels, {split: len(rows) for split, rows in splits.items()})
    features = family.features()
    dataset = DatasetDict()
    for split, examples in splits.items():
        dataset[split] = Dataset.from_list([{k: v for k, v in ex.items() if not k.startswith("_")} for ex in examples],
                                           features=features)
        dataset[split]._fingerprint = fingerprint(manifest, split)
    with atomic_dir(cfg.paths.raw) as out:
        dataset.save_to_disk(str(out / "dataset"))
        write_json(out / MANIFEST, manifest)
    log.info("saved %s: %s", cfg.paths.raw, manifest["rows"])
    return manifest


def download_columns(cfg: DictConfig, family: Recipe, layout: columnar.Layout,
                     located: tuple[str, dict[str, Path]], out: Path) -> dict[str, Any]:
    """The Arrow path into `out`; `columnar.Fallback` wherever the row path must read instead."""
    source, files = located
    if layout.split:  # each file read once, its rows given to the splits the column names
        sources: list[tuple[str | None, Path]] = [(None, p) for p in {p.resolve(): p for p in files.values()}.values()]
    else:
        sources = list(files.items())
    fmt_of = lambda path: detect_format(path, cfg.data.format)  # noqa: E731
    with ThreadPoolExecutor(1) as pool:  # hashing the files overlaps reading them
        hashed = pool.submit(manifest_of, source, files)
        scanned = columnar.scan(sources, fmt_of, layout)
        manifest = hashed.result()
    given = columnar.roles(scanned, layout, OmegaConf.to_container(cfg.data.split_values, resolve=True)
                           if OmegaConf.is_config(cfg.data.split_values) else cfg.data.split_values)
    columnar.require_rows(given)
    found = columnar.split_rows(scanned, given, cfg.data.split, family.stratum, cfg.data.max_train_samples)
    columnar.require_rows(found)
    require_eval_split(cfg, list(found))
    where = str(sources[0][1])
    try:
        labels = family.label_set({"train": columnar.representatives(scanned, found["train"], where)})
        family = family.with_labels(labels)
        encoded = {}
        for split, rows in found.items():
            examples = family.encode_labels(columnar.representatives(scanned, rows, where), split)
            encoded[split] = {example["_code"]: example["label"] for example in examples}
    except DataError as error:  # the row path names the row
        raise columnar.Fallback(str(error)) from None
    describe(cfg, manifest, labels, {split: len(rows) for split, rows in found.items()})
    columnar.write(scanned, fmt_of, layout, found, encoded, family.features(), out / "dataset",
                   {split: fingerprint(manifest, split) for split in found})
    write_json(out / MANIFEST, manifest)
    return manifest


def describe(cfg: DictConfig, manifest: dict[str, Any], labels: list[str] | None, rows: dict[str, int]) -> None:
    """The manifest's account of what was read: the task, labels, split settings, rows, data digest."""
    identity = json.dumps([(f["split"], f["sha256"]) for f in manifest["files"]] or manifest.get("fingerprints"),
                          sort_keys=True)
    manifest.update(task=cfg.task.name, family=cfg.task.family, labels=labels,
                    split=OmegaConf.to_container(cfg.data.split, resolve=True), rows=rows,
                    data_sha256=sha256_text(identity))


def fingerprint(manifest: dict[str, Any], split: str) -> str:
    """A content-derived fingerprint: the saved files stay identical when the data is."""
    return sha256_text(f"{manifest['data_sha256']}:{split}:{manifest['split']}")[:16]


def require_eval_split(cfg: DictConfig, splits: list[str]) -> None:
    """The split the evaluate stage reports exists: found now rather than after training."""
    if cfg.data.eval_split not in splits:
        raise FinetuneError(f"data.eval_split: the evaluate stage reports '{cfg.data.eval_split}', which task "
                            f"'{cfg.task.name}' lacks (its splits: {', '.join(splits)}); give data.files."
                            f"{cfg.data.eval_split}, a split column, or carve it with data.split.strategy="
                            "random_fraction data.split.test_fraction=0.1")


def require_examples(splits: dict[str, list[Any]], manifest: dict[str, Any], task: str) -> None:
    """A one-line error naming the source of the first split without examples."""
    for split, examples in splits.items():
        if not examples:
            files = [f["path"] for f in manifest["files"] if f["split"] == split] or \
                sorted({f["path"] for f in manifest["files"]})  # one file holding every split
            raise FinetuneError(f"split '{split}' of task '{task}' has no examples "
                                f"({manifest['source']}: {', '.join(files) or 'the Hub'})")
