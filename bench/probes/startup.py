"""Start-up probe: how long a stage script takes to reach its work.

    BENCH_T0=<time.time() at spawn> BENCH_PROBE_OUT=out.json python bench/probes/startup.py stages/X.py ARGS

Runs the stage script as `__main__` (as `python stages/X.py ARGS` would) and records, relative to
the parent's spawn time:
- `entry`: the stage function is entered (interpreter, Hydra and config composition done);
- `first_input`: the stage opens its first input (`require(...)`, or `load_examples` for
  download), i.e. after the imports the stage needs for its work.
Then it exits at once, so probing never writes any stage output.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import runpy
import sys
import time
from collections.abc import Callable
from typing import Any

T0 = float(os.environ["BENCH_T0"])
marks: dict[str, float] = {}


def _finish() -> None:
    marks["first_input"] = time.time() - T0
    with open(os.environ["BENCH_PROBE_OUT"], "w") as handle:
        json.dump(marks, handle)
    os._exit(0)


def _stop_at_input(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _finish()

    return wrapper


def main() -> None:
    import finetune.entry as entry

    stage = entry.stage

    def probed_stage(func: Callable[[Any], Any]) -> Callable[[], Any]:
        @functools.wraps(func)
        def entered(cfg: Any) -> Any:
            marks["entry"] = time.time() - T0
            import finetune.pipeline.common as common

            common.require = _stop_at_input(common.require)
            if "download" in sys.argv[0]:
                import finetune.data.sources as sources

                sources.load_examples = _stop_at_input(sources.load_examples)
            return func(cfg)

        # `stage` finds the repository from the function's file: keep it the stage script's.
        entered.__code__ = entered.__code__.replace(co_filename=inspect.getfile(func))
        return stage(entered)

    entry.stage = probed_stage
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    raise SystemExit("probe: the stage finished without reading an input")


if __name__ == "__main__":
    main()
