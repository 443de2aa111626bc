"""Code fingerprints: `python -m finetune.fingerprint <stage>` for the `code-*` stages of dvc.yaml.

DVC checks every dependency of every stage on each `dvc repro`. Listing the ~12 library files and
config folders a stage kind runs under each of its (task, model) stages made a no-op repro of the
default matrix take 2.16 s instead of 1.67 s (bench/overhead.py, BENCHMARKS.md). So each
stage kind has one `code-<kind>` stage that depends on that code and writes a sha256sum-style
listing of it; the (task, model) stages depend on the listing. Invalidation stays exact: an edit
changes the listing, which re-runs that kind's stages and nothing else.

The file list is read from the stage's own `deps` in dvc.yaml, so it is written down once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from finetune.errors import FinetuneError
from finetune.io import atomic_file, sha256_file


def code_files(paths: Iterable[str], root: Path) -> Iterator[str]:
    """The files under `paths` (relative to `root`), folders walked in sorted order, bytecode left out."""
    for path in paths:
        full = root / path
        if full.is_file():
            yield path
        elif full.is_dir():
            for file in sorted(full.rglob("*")):
                relative = file.relative_to(root)
                if file.is_file() and file.suffix != ".pyc" and "__pycache__" not in relative.parts:
                    yield relative.as_posix()
        else:
            raise FinetuneError(f"{root / 'dvc.yaml'}: dependency {path!r} does not exist")


def listing(paths: Iterable[str], root: Path) -> str:
    """`sha256sum` output for the files under `paths`: changes exactly when one of them does."""
    return "".join(f"{sha256_file(root / file)}  {file}\n" for file in code_files(paths, root))


def write_fingerprint(stage: str, root: Path = Path(".")) -> Path:
    """Write the listing of `stage`'s deps to its single output, as dvc.yaml declares them."""
    dvcfile = root / "dvc.yaml"
    spec = (yaml.safe_load(dvcfile.read_text()).get("stages") or {}).get(stage)
    if not spec or not spec.get("deps") or len(spec.get("outs") or []) != 1:
        raise FinetuneError(f"{dvcfile}: stage {stage!r} must exist with deps and exactly one output")
    out = spec["outs"][0]
    target = root / (next(iter(out)) if isinstance(out, dict) else out)
    with atomic_file(target) as handle:
        handle.write(listing(spec["deps"], root))
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m finetune.fingerprint <dvc.yaml stage name, e.g. code-train>")
    try:
        write_fingerprint(sys.argv[1])
    except FinetuneError as error:
        sys.exit(f"error: {error}")
