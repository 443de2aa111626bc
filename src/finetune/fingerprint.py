"""Code fingerprints: `python -m finetune.fingerprint`, the `code` stage of dvc.yaml.

DVC checks every dependency of every stage on each `dvc repro`, and each stage costs it ~8
read-write-lock acquisitions (two file rewrites each). Listing the ~12 library files and config
folders a stage kind runs under each of its (task, model) stages made a no-op repro of the default
matrix take 2.16 s; one `code-<kind>` stage per kind brought it to 1.67 s; one `code` stage for all
kinds takes off a further ~0.19 s (1.55 -> 1.36 s, interleaved runs on one machine; see
bench/README.md).

The `code` stage depends on the code and config folders as a whole and writes, for each stage kind,
a sha256sum-style listing of exactly what that kind runs to `data/code/<kind>.sha256`; the kind's
(task, model) stages depend on their listing. Invalidation stays exact: an edit re-runs `code`
(under a second), and then only the kinds whose listing changed.

What a kind runs is derived, not hand-kept: its stage script, every `finetune` module the script
imports, followed through imports at any depth (function-level imports included), and the shared
config it composes (KINDS).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from finetune.errors import FinetuneError
from finetune.io import atomic_file, sha256_file
from finetune.pipeline.common import SCRIPTS

STAGE = "code"
PACKAGE = "finetune"
SOURCE = "src"  # where PACKAGE lives, relative to the project root

# Each stage kind: its script (finetune.pipeline.common.SCRIPTS), then the shared config it composes.
# Its conf/task and conf/model files are per-pair dependencies in dvc.yaml.
CONFIG: dict[str, tuple[str, ...]] = {
    "download": ("conf/config.yaml", "conf/data"),
    "tokenize": ("conf/config.yaml", "conf/data"),
    "train": ("conf/config.yaml", "conf/train", "conf/tracking"),
    "evaluate": ("conf/config.yaml", "conf/train", "conf/tracking"),
    "export": ("conf/config.yaml", "conf/export", "conf/tracking"),
}
KINDS: dict[str, tuple[str, ...]] = {kind: (f"stages/{SCRIPTS[kind]}", *CONFIG[kind]) for kind in SCRIPTS}
# Packages that import their modules by name at run time (invisible to the import scan): reaching
# the package brings in all of its modules.
IMPORTED_BY_NAME = ("finetune.tasks",)  # the task families, chosen by conf/task's `family`


def module_path(name: str, root: Path) -> Path | None:
    """The source file of module `name` of PACKAGE under `root`, or None if it is not one."""
    if name != PACKAGE and not name.startswith(f"{PACKAGE}."):
        return None
    base = root / SOURCE / Path(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def imported_names(path: Path, root: Path) -> Iterator[str]:
    """Every module name `path` imports, anywhere in its body; `from a import b` yields a and a.b."""
    package = ".".join(path.relative_to(root / SOURCE).parent.parts) if path.is_relative_to(root / SOURCE) else ""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                anchor = package.rsplit(".", node.level - 1)[0]
                module = f"{anchor}.{module}" if module else anchor
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def python_files(script: str, root: Path) -> list[str]:
    """`script` and the PACKAGE modules it runs, including each imported module's parent packages."""
    todo, seen = [root / script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        names = set(imported_names(path, root))
        names |= {name.rsplit(".", n)[0] for name in names for n in range(1, name.count(".") + 1)}  # a.b runs a
        for package in IMPORTED_BY_NAME:
            if package in names and (init := module_path(package, root)):
                names |= {f"{package}.{module.stem}" for module in init.parent.glob("*.py")}
        todo.extend(found for name in names if (found := module_path(name, root)))
    return sorted(path.relative_to(root).as_posix() for path in seen)


def files_under(paths: Iterable[str], root: Path) -> Iterator[str]:
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
            raise FinetuneError(f"{full} does not exist (named in finetune.fingerprint.KINDS)")


def kind_files(kind: str, root: Path = Path(".")) -> list[str]:
    """Everything stage kind `kind` runs: its script's Python files, then its shared config files."""
    script, *config = KINDS[kind]
    if not (root / script).is_file():
        raise FinetuneError(f"{root / script} does not exist (the script of stage kind {kind!r})")
    return [*python_files(script, root), *files_under(config, root)]


def listing(files: Iterable[str], root: Path) -> str:
    """`sha256sum` output for `files`: it changes exactly when one of them does."""
    return "".join(f"{sha256_file(root / file)}  {file}\n" for file in files)


def write_fingerprints(root: Path = Path(".")) -> dict[str, Path]:
    """Write every kind's listing into the `code` stage's output folder, as dvc.yaml declares it.

    Each listed file must lie under one of the stage's deps, or DVC would not re-run the stage
    when it changes: that is an error naming dvc.yaml and the file.
    """
    dvcfile = root / "dvc.yaml"
    if not dvcfile.is_file():
        raise FinetuneError(f"{dvcfile.resolve()} not found: run from the project root")
    spec = (yaml.safe_load(dvcfile.read_text()).get("stages") or {}).get(STAGE) or {}
    outs, deps = spec.get("outs") or [], spec.get("deps") or []
    if len(outs) != 1 or not deps:
        raise FinetuneError(f"{dvcfile}: stage {STAGE!r} must exist with deps and exactly one output folder")
    out = root / (next(iter(outs[0])) if isinstance(outs[0], dict) else outs[0])
    files = {kind: kind_files(kind, root) for kind in KINDS}
    for kind, names in files.items():
        for name in names:
            if not any(Path(name).is_relative_to(dep) for dep in deps):
                raise FinetuneError(f"{dvcfile}: stage {STAGE!r} does not depend on {name} (run by {kind}); "
                                    "add it or a folder above it to the stage's deps")
    written = {}
    for kind, names in files.items():
        with atomic_file(out / f"{kind}.sha256") as handle:
            handle.write(listing(names, root))
        written[kind] = out / f"{kind}.sha256"
    return written


if __name__ == "__main__":
    if len(sys.argv) != 1:
        sys.exit("usage: python -m finetune.fingerprint  (run from the project root; dvc repro runs it)")
    try:
        write_fingerprints()
    except FinetuneError as error:
        sys.exit(f"error: {error}")
