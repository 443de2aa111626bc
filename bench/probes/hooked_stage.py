"""Run one of our stage scripts (stages/*.py) unchanged, with the bench Meter in its Trainer.

    python bench/probes/hooked_stage.py stages/train.py task=sentiment model=minilm ...

The script runs as `__main__` through Hydra exactly as `python stages/train.py ...` would; the
only difference is that `finetune.training.make_trainer` is wrapped so that the Trainer it
builds for training carries the Meter (bench/helpers/measure.py). The summary goes to $BENCH_METER_OUT.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))  # also when run by hand
from measure import Meter  # noqa: E402


def main() -> None:
    import finetune.training as training

    script, overrides = sys.argv[1], sys.argv[2:]
    meter = Meter()
    build = training.make_trainer

    def make_trainer(**kwargs: Any) -> Any:
        trainer = build(**kwargs)
        if kwargs.get("train_dataset") is not None:
            meter.attach(trainer)
        return trainer

    training.make_trainer = make_trainer
    sys.argv = [script, *overrides]
    runpy.run_path(script, run_name="__main__")
    meter.write()


if __name__ == "__main__":
    main()
