"""Training across processes: which process this is, and the one decision they must share.

`torchrun --nproc_per_node=N stages/train.py ...` and `accelerate launch stages/train.py ...` start
N copies of the stage; each trains on its shard of every batch (the Trainer's DDP) and the main
process (rank 0) alone writes outputs, checkpoints and the MLflow run. The launchers say which
copy a process is in its environment (RANK, WORLD_SIZE), readable before torch starts.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

T = TypeVar("T")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True in a single process and in rank 0 of a distributed run."""
    return rank() == 0


def shared(value: T | None) -> T:
    """The main process's `value`, on every process (the others pass None).

    Call it on every rank at the same point: it is a collective. It starts the process group
    the Trainer would start anyway (accelerate's, from the launcher's environment).
    """
    if world_size() == 1:
        return value  # type: ignore[return-value]
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())  # CPU processes form a group only when told
    box: list[Any] = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
