"""Driving our pipeline from the harness: the real stage scripts, Hydra overrides, scratch outputs.

Every stage runs as `python stages/<script>.py task=... model=... <overrides>` in a fresh process
with its working directory in bench/work/, so all outputs (`paths.out`) land there; the raw and
tokenized data go to a prepared folder shared by the comparisons that ask for the same data.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import PROBES, PYTHON, REPO, WORK, Context, read_json

from finetune.pipeline.stage_table import SCRIPTS

STAGES = REPO / "stages"


def data_overrides(task: str, model: str = "minilm", **data: Any) -> list[str]:
    """`task=... model=...` plus `data.<key>=<value>` (None -> null)."""
    return [f"task={task}", f"model={model}"] + [f"data.{k}={hydra_value(v)}" for k, v in data.items()]


def train_overrides(ctx: Context, **train: Any) -> list[str]:
    """Tracking off, the harness's thread count, and `train.<key>=<value>`."""
    values = {"torch_threads": ctx.threads, **train}
    return ["tracking=none"] + [f"train.{k}={hydra_value(v)}" for k, v in values.items()]


def hydra_value(value: Any) -> str:
    """A Python value as Hydra override text (None -> null, True -> true)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def compose(overrides: list[str]) -> Any:
    """The config our stages would see (hyper-parameters for the baselines' command lines)."""
    from finetune.config import compose as compose_config

    return compose_config(REPO, overrides)


def pair_name(overrides: list[str]) -> tuple[str, str]:
    """(task, model preset) named by the overrides."""
    values = dict(o.split("=", 1) for o in overrides if "=" in o)
    return values["task"], values["model"]


def paths(overrides: list[str]) -> list[str]:
    """Raw and tokenized data in bench/work/prepared/<hash of the data overrides>/."""
    task, model = pair_name(overrides)
    key = hashlib.sha256(json.dumps(sorted(overrides)).encode()).hexdigest()[:12]
    root = WORK / "prepared" / f"{task}-{model}-{key}"
    return [f"paths.raw={root}/raw/{task}", f"paths.tokenized={root}/tokenized/{task}-{model}"]


def tokenized_dir(overrides: list[str]) -> Path:
    return Path(paths(overrides)[-1].split("=", 1)[1])


def prepare(ctx: Context, data: list[str]) -> Path:
    """Download + tokenize once per distinct data config (not timed); returns the tokenized folder."""
    out = tokenized_dir(data)
    if not (out / "manifest.json").exists():
        logs = out.parent.parent / "logs"
        for script in (SCRIPTS["download"], SCRIPTS["tokenize"]):
            ctx.run([PYTHON, STAGES / script, *data, *paths(data), f"paths.inputs={out.parent.parent}"],
                    cwd=out.parent.parent,
                    log=logs / f"{script}.log")
    return out


def train(ctx: Context, workdir: Path, data: list[str], train: list[str], tag: str,
          wrap: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Our train stage (real script, Meter hooked in); the Meter summary plus the process wall.

    `wrap`: a runner script put before the stage (bench/probes/bf16_emulation.py)."""
    workdir.mkdir(parents=True, exist_ok=True)
    meter = workdir / f"{tag}.meter.json"
    meter.unlink(missing_ok=True)
    wall = ctx.run([PYTHON, *wrap, PROBES / "hooked_stage.py", STAGES / SCRIPTS["train"], *data, *paths(data), *train],
                   cwd=workdir, log=workdir / f"{tag}.log", env=ctx.env(BENCH_METER_OUT=str(meter)))
    return read_json(meter) | {"process_wall": wall}


def evaluate(ctx: Context, workdir: Path, data: list[str], train: list[str], tag: str,
             wrap: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Our evaluate stage on `data.eval_split`: the metrics file it writes, plus its wall time."""
    wall = ctx.run([PYTHON, *wrap, STAGES / SCRIPTS["evaluate"], *data, *paths(data), *train,
                    f"paths.inputs={workdir}"],  # the model the train stage wrote there
                   cwd=workdir, log=workdir / f"{tag}.evaluate.log")
    task, model = pair_name(data)
    model = next((o.split("=", 1)[1] for o in data if o.startswith("model.name=")), model)  # renamed preset
    return read_json(workdir / "metrics" / f"{task}-{model}.json") | {"process_wall": wall}


def export_examples(tokenized: Path, out_dir: Path, splits: dict[str, str]) -> dict[str, Path]:
    """The examples our tokenize stage picked, as {"text", "label"} JSON Lines for the baselines
    (with "text_pair" for sentence pairs; the label as stored: an id, a number or a 0/1 list).

    `splits` maps a file name to a split ({"train": "train", "eval": "test"}).
    """
    from datasets import load_from_disk

    examples = load_from_disk(str(tokenized / "examples"))
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, split in splits.items():
        files[name] = out_dir / f"{name}.jsonl"
        with open(files[name], "w", encoding="utf-8") as handle:
            for row in examples[split]:
                pair = {"text_pair": row["text_pair"]} if "text_pair" in row else {}
                record = {"text": row["text"], **pair, "label": row["label"]}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return files


def model_path(name: str = "minilm") -> str:
    """Local path of a packaged model preset (what our stage loads for `model=<name>`)."""
    from finetune.models import resolve_source

    return resolve_source(compose([f"model={name}"]).model)


def run_stages(out: Path, overrides: list[str], stages: str, log: Path) -> Path:
    """`stages/pipeline.py` running `stages` (e.g. "download,tokenize") with outputs below `out`,
    offline and untracked, its log in `log`; returns `out`."""
    import os
    import subprocess

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        subprocess.run([PYTHON, STAGES / "pipeline.py", *overrides, "tracking=none", f"paths.out={out}",
                        f"pipeline.stages=[{stages}]"], cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                       stderr=handle, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    return out


def finished_stages(work: Path, name: str, overrides: list[str], run: str, fresh: bool = False) -> Path:
    """The stages `run` of `overrides` in `work`/<name>; a folder that already finished them with the
    same overrides is kept (`fresh`: never), its commit recorded in finished.json (results name each
    run's commit)."""
    from common import provenance

    out = work / name
    done = out / "finished.json"
    key = {"overrides": overrides, "stages": run}
    if not fresh and done.exists() and json.loads(done.read_text())["key"] == key:
        return out
    start = time.perf_counter()
    run_stages(out, overrides, run, work / f"{name}.log")
    done.write_text(json.dumps({"key": key, "commit": provenance()["commit"],
                                "wall_s": round(time.perf_counter() - start, 1)}))
    return out


def pipeline_run(work: Path, name: str, overrides: list[str], fresh: bool = False) -> dict[str, Any]:
    """download -> tokenize -> train -> evaluate in `work`/<name>: metrics, times (`wall_s`: the four
    stages' processes, when they ran), predictions."""
    out = finished_stages(work, name, overrides, "download,tokenize,train,evaluate", fresh)
    pair = next((out / "metrics").glob("*.json")).stem
    metrics = read_json(out / "metrics" / f"{pair}.json")
    summary = read_json(out / "models" / pair / "train_summary.json")
    stats = read_json(out / "data" / "tokenized" / pair / "tokenize_stats.json")
    finished = read_json(out / "finished.json")
    return {"metrics": metrics, "train_s": summary["train_runtime"], "train_tokens": summary["train_tokens"],
            "train_examples": summary["train_examples"], "eval_s": metrics.get("eval_runtime"), "stats": stats,
            "wall_s": finished.get("wall_s"), "predictions": out / "predictions" / pair, "commit": finished["commit"]}
