"""Atomic writes, hashing and small JSON helpers shared by every stage."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces `target` only if the block succeeds.

    A failure leaves the previous `target` (if any) untouched and removes the half-written folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    public_modes(tmp)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temporary sibling of `target` for writing; rename it over `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_modes(root: Path) -> None:
    """The modes the umask gives to `root` and everything below it.

    Temporary folders and files (and some writers, such as safetensors) are created private
    (0700/0600); outputs a teammate should read get 0777/0666 less the umask, as any new file would.
    """
    mask = current_umask()
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def write_json(path: str | Path, data: Any) -> None:
    with atomic_file(path, encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")


def read_json(path: str | Path) -> Any:
    """The file's JSON; malformed JSON is a ValueError that names the file."""
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{Path(path).name} is not valid JSON ({error})") from None


def unreadable_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged file raises: missing files, bad JSON, cut Arrow or safetensors files."""
    errors: list[type[BaseException]] = [OSError, ValueError, KeyError]
    try:
        from safetensors import SafetensorError
        errors.append(SafetensorError)
    except ImportError:  # safetensors comes with transformers; a stage without it reads no weights
        pass
    return tuple(errors)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
