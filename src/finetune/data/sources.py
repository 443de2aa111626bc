"""Where a task's examples come from, tried in order: user files, a local mirror, the Hub.

`load_examples` returns canonical examples per split plus a manifest that records what was
read (paths, sha256, row counts), so every later stage and run can name its data exactly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from finetune.data.readers import detect_format
from finetune.data.splits import SPLIT, by_split_column
from finetune.errors import FinetuneError
from finetune.io import sha256_file

Splits = dict[str, list[dict[str, Any]]]


class Reader(Protocol):
    """What reads a source into canonical examples: a task family's recipe."""

    def read(self, path: Path, fmt: str, split: str) -> list[dict[str, Any]]: ...

    def from_hub(self, dataset: Any, split: str) -> list[dict[str, Any]]: ...


def load_examples(cfg: DictConfig, family: Reader) -> tuple[Splits, dict[str, Any]]:
    """Read every split of the task's data from the first source that serves it."""
    located, tried = locate_files(cfg)
    if located is not None:
        source, files = located
        return _read_files(family, files, cfg.data), manifest_of(source, files)
    if cfg.data.hub:
        try:
            return _read_hub(family, cfg.data.hub)
        except FinetuneError as error:
            tried.append(f"hub: {error}")
    else:
        tried.append("hub: this task names no Hub dataset (data.hub)")
    raise FinetuneError(f"no data source for task '{cfg.task.name}': data.files is empty; "
                        + "; ".join(tried) + ". Give files with data.files.train=... data.files.validation=...")


def locate_files(cfg: DictConfig) -> tuple[tuple[str, dict[str, Path]] | None, list[str]]:
    """("files" or "mirror", the file of each split) when user files or the mirror serve the task,
    else None; and why each source that does not was passed over."""
    data = cfg.data
    files = {split: Path(path).expanduser() for split, path in (data.files or {}).items() if path}
    if files:
        return ("files", files), []
    if not data.mirror:
        return None, ["mirror: this task has no data.mirror layout"]
    mirror = Path(data.dir).expanduser()
    files = {split: mirror / rel for split, rel in data.mirror.items()}
    missing = [str(path) for path in files.values() if not path.exists()]
    if missing:
        return None, [f"mirror: {', '.join(missing)} not found (set FINETUNE_DATA_DIR or data.dir)"]
    return ("mirror", files), []


def _read_files(family: Reader, files: dict[str, Path], data: DictConfig) -> Splits:
    """Each split from its file; with `data.split_column`, each file read once and its rows given
    to the splits the column names (a file given once holds all three)."""
    if data.get("split_column") is None:
        return {split: family.read(path, detect_format(path, data.format), split) for split, path in files.items()}
    rows = []
    for path in {path.resolve(): path for path in files.values()}.values():
        read = family.read(path, detect_format(path, data.format), "train")
        if read and read[0].get(SPLIT) is None:
            raise FinetuneError(f"data.split_column: {path} is a format without columns (or a family that reads "
                                "no split column); give one file per split with data.files.<split>")
        rows += read
    values = data.get("split_values")
    values = OmegaConf.to_container(values, resolve=True) if OmegaConf.is_config(values) else values
    source = ", ".join(sorted({str(path) for path in files.values()}))
    return by_split_column(rows, data.split_column, values, source)


def manifest_of(source: str, files: dict[str, Path]) -> dict[str, Any]:
    hashes: dict[str, str] = {}
    entries = []
    for split, path in files.items():
        resolved = str(path.resolve())
        if resolved not in hashes:
            hashes[resolved] = sha256_file(path)
        entries.append({"split": split, "path": resolved, "bytes": path.stat().st_size,
                        "sha256": hashes[resolved]})
    return {"source": source, "files": entries}


def _read_hub(family: Reader, hub: DictConfig) -> tuple[Splits, dict[str, Any]]:
    """datasets.load_dataset, honouring HF_HUB_OFFLINE / HF_DATASETS_OFFLINE (fails at once)."""
    import datasets

    spec = OmegaConf.to_container(hub, resolve=True)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or \
        os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("", "0")
    try:
        loaded = datasets.load_dataset(spec["path"], spec.get("name"))
    except Exception as error:  # noqa: BLE001 - any failure to reach the Hub is one user-facing line
        reason = "offline (HF_HUB_OFFLINE=1)" if offline else str(error).splitlines()[0][:200]
        raise FinetuneError(f"could not load '{spec['path']}' from the Hugging Face Hub: {reason}") from None
    names = spec.get("splits") or {split: split for split in loaded}  # role -> the Hub's split name
    missing = [name for name in names.values() if name not in loaded]
    if missing:
        raise FinetuneError(f"data.hub.splits: '{spec['path']}' has no split {', '.join(map(repr, missing))} "
                            f"(its splits: {', '.join(loaded)})")
    splits = {role: family.from_hub(loaded[name], role) for role, name in names.items()}
    fingerprint = {role: getattr(loaded[name], "_fingerprint", None) for role, name in names.items()}
    return splits, {"source": "hub", "hub": spec, "fingerprints": fingerprint, "files": []}
