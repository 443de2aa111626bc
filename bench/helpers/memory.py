"""Memory of a measured command beyond `ru_maxrss`.

`ru_maxrss` counts every resident page, file-backed ones included: a process that reads a 4 GB
memory-mapped Arrow file through shows ~4 GB, though the kernel drops those pages whenever it
needs the room. Two figures separate that from memory the process really holds:

- `PrivatePeak`: the peak of anonymous resident memory summed over the process tree (proportional
  set: pages that forked workers share count once), sampled every 0.1 s;
- `memory_cgroup`: runs the command under a hard memory limit (a cgroup, v1 or v2, where this
  machine lets us make one), so "finished under 1 GB" is a fact, not an estimate.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path


def _tree(pid: int) -> list[int]:
    pids, seen = [pid], []
    while pids:
        current = pids.pop()
        seen.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                pids += [int(p) for p in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
    return seen


def _private_bytes(pid: int) -> int:
    """Anonymous memory of `pid`, proportional: a page its forked workers still share counts once."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss_Anon:"), (f"/proc/{pid}/status", "RssAnon:")):
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    return 0


class PrivatePeak:
    """Samples the private resident memory of `pid` and its descendants until `stop()`."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.peak = 0
        self._pid, self._every = pid, every_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, sum(_private_bytes(p) for p in _tree(self._pid)))
            time.sleep(self._every)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


class Cgroup:
    """A memory cgroup made for one measurement: `enter` in the child, `hits` afterwards."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path, self.v2 = path, v2

    def enter(self) -> None:
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def hits(self) -> int:
        """How often the group reached its limit (the kernel then reclaims pages or kills)."""
        if self.v2:
            events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
            return int(events.get("max", 0))
        return int((self.path / "memory.failcnt").read_text())


def _own_cgroup() -> tuple[Path, bool] | None:
    """This process's memory cgroup folder and whether it is cgroup v2 (None: no memory controller)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/"), False
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return Path("/sys/fs/cgroup") / path.lstrip("/"), True
    return None


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Cgroup]:
    """A fresh memory cgroup capped at `limit_bytes` (no swap), removed afterwards.

    Raises SystemExit with the reason where this machine does not let us make one.
    """
    own = _own_cgroup()
    if own is None:
        raise SystemExit("no memory cgroup controller here: cannot run under a memory limit")
    parent, v2 = own
    path = parent / f"bench-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
        if v2:
            (path / "memory.max").write_text(str(limit_bytes))
            (path / "memory.swap.max").write_text("0")
        else:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):  # only where swap accounting is on
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
    except OSError as error:
        raise SystemExit(f"cannot make a memory cgroup under {parent}: {error}") from error
    try:
        yield Cgroup(path, v2)
    finally:
        with contextlib.suppress(OSError):
            path.rmdir()
