"""A train run's scratch folder (`paths.checkpoints`): one run of a pair at a time, resumable.

- Two runs of one pair would share checkpoints (one could publish the other's "best"
  checkpoint): the folder is locked (`<folder>.lock`), and a second run fails at once naming
  the process that holds it.
- A run killed after a checkpoint (SIGKILL, SIGTERM, a lost machine) resumes from the newest
  complete checkpoint on the next run of the same config, in the same MLflow run. Checkpoints of
  another config (or other data) are deleted, never resumed from; they are never an output.
- The folder goes when the run succeeds.
- A distributed run: the main process locks, decides and cleans up; every process resumes from
  the checkpoint it chose (the Trainer writes checkpoints from the main process only).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune import distributed
from finetune.errors import FinetuneError
from finetune.io import read_json, write_json

log = logging.getLogger("finetune")
RESUME = "resume.json"        # {fingerprint, run_id} of the run the checkpoints belong to
STATE = "trainer_state.json"  # written last into a checkpoint: its presence means the checkpoint is whole


@dataclass
class Scratch:
    folder: Path
    fingerprint: str
    resume_from: Path | None = None   # the newest whole checkpoint of an interrupted run of this config
    run_id: str | None = None         # ... and its MLflow run
    log_history: list[dict[str, Any]] = field(default_factory=list)  # the Trainer's logs up to that checkpoint

    def remember(self, run_id: str | None) -> None:
        """Record which config and MLflow run the checkpoints about to be written belong to."""
        if distributed.is_main():
            write_json(self.folder / RESUME, {"fingerprint": self.fingerprint, "run_id": run_id})


@contextlib.contextmanager
def scratch(folder: str | Path, fingerprint: str) -> Iterator[Scratch]:
    """Lock `folder` for this process; yield what a resumed run needs; delete it on success."""
    folder = Path(folder)
    if not distributed.is_main():
        yield distributed.shared(None)
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f"{folder.name}.lock"), "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise FinetuneError(f"{folder} is in use by another train run of this pair ({holder}); "
                                "wait for it to end, or stop it") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        lock.flush()
        state = _resume_state(folder, fingerprint)
        if state is None:
            shutil.rmtree(folder, ignore_errors=True)  # another config's (or a finished run's) leftovers
        folder.mkdir(exist_ok=True)
        yield distributed.shared(state or Scratch(folder, fingerprint))
        shutil.rmtree(folder, ignore_errors=True)


def _resume_state(folder: Path, fingerprint: str) -> Scratch | None:
    """What an interrupted run of the same config left, or None."""
    try:
        saved = read_json(folder / RESUME)
    except (OSError, ValueError):
        return None
    if saved.get("fingerprint") != fingerprint:
        return None
    whole = [path for path in folder.glob("checkpoint-*") if (path / STATE).is_file()]
    if not whole:
        return Scratch(folder, fingerprint, run_id=saved.get("run_id"))
    for newest in sorted(whole, key=lambda path: int(path.name.rsplit("-", 1)[1]), reverse=True):
        try:
            history = read_json(newest / STATE)["log_history"]
        except (OSError, ValueError, KeyError, TypeError):  # cut by a crash: the older ones are still whole
            log.warning("%s: unreadable %s; resuming from the checkpoint before it", newest, STATE)
            shutil.rmtree(newest, ignore_errors=True)
            continue
        return Scratch(folder, fingerprint, newest, saved.get("run_id"), history)
    return Scratch(folder, fingerprint, run_id=saved.get("run_id"))
