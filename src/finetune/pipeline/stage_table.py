"""The one table of the pipeline's stages. dvc.yaml's stages, the order `stages/pipeline.py` runs
them in, the commands an error message suggests and the README's "What runs" table all come from
it, and each stage is given only the config sections it declares here, so a stage that reads an
undeclared section fails instead of leaving a DVC output stale.

    python -m finetune.pipeline.stage_table > dvc.yaml     # after editing the table
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

# What an earlier stage leaves for a later one, as DVC paths: `{task}` and `{pair}` (<task>-<model>).
# The keys named like a `paths.<key>` of conf/config.yaml are what a later stage reads.
OUTPUTS = {"raw": "data/raw/{task}", "tokenized": "data/tokenized/{pair}", "model": "models/{pair}",
           "train_plots": "plots/{pair}/train", "predictions": "predictions/{pair}",
           "eval_plots": "plots/{pair}/eval", "metrics": "metrics/{pair}.json", "export": "exports/{pair}"}
PER_ITEM = ("task", "model")  # config groups chosen per DVC stage (`task=<task> model=<model>`)
ALWAYS = ("paths", "pipeline")  # sections every stage is given: the layout, no values of the run


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: library function `finetune.pipeline.<name>.<name>`, run by `stages/<script>`."""

    name: str
    script: str
    reads: tuple[str, ...]  # config sections (conf/<section>, params.yaml's <section>)
    inputs: tuple[str, ...]  # OUTPUTS of earlier stages it reads
    outs: tuple[str, ...]  # OUTPUTS it writes (DVC-cached)
    summary: str  # what it writes, for the README
    metrics: tuple[str, ...] = ()  # OUTPUTS it writes as DVC metrics (not cached)

    @property
    def per_model(self) -> bool:
        return "model" in self.reads

    @property
    def writes(self) -> tuple[str, ...]:
        return self.outs + self.metrics


STAGES = (
    Stage("download", "download.py", reads=("data", "task"), inputs=(), outs=("raw",),
          summary="`data/raw/<task>/`: the task's examples and `manifest.json` (sha256s, row counts, labels)"),
    Stage("tokenize", "tokenize_data.py", reads=("data", "model", "task"), inputs=("raw",), outs=("tokenized",),
          summary="`data/tokenized/<pair>/`: the seeded subsample's examples and features"),
    Stage("train", "train.py", reads=("model", "task", "tracking", "train"), inputs=("tokenized",),
          outs=("model", "train_plots"), summary="`models/<pair>/` (best checkpoint), `plots/<pair>/train/`"),
    Stage("evaluate", "evaluate_model.py", reads=("data", "evaluate", "model", "task", "tracking", "train"),
          inputs=("tokenized", "model"), outs=("predictions", "eval_plots"), metrics=("metrics",),
          summary="`metrics/<pair>.json` (validation and test, 95% intervals, calibration), `predictions/<pair>/` "
                  "(with label issues), `plots/<pair>/eval/`"),
    Stage("export", "export.py", reads=("data", "export", "model", "task", "tracking", "train"),
          inputs=("tokenized", "model", "metrics"), outs=("export",),
          summary="`exports/<pair>/`: model, tokenizer, decoding settings, card, ONNX files; a registry version"),
)
BY_NAME = {stage.name: stage for stage in STAGES}
BY_SCRIPT = {stage.script: stage for stage in STAGES}
SCRIPTS = {stage.name: stage.script for stage in STAGES}
PRODUCERS = {output: stage.name for stage in STAGES for output in stage.writes}


# The stages that act on a key, where not every stage given its section does (the longest listed
# prefix decides; a key not listed is acted on by every stage that reads its section). A family's
# codec settings are fixed at tokenize, its source options read at download, its other options by
# the stages after tokenize.
EVAL_SIDE = ("train", "evaluate", "export")
ACTS_ON = {
    "data": ("download",),  # where examples come from, how they are read and split
    "data.max_train_samples": ("download", "tokenize"),  # download: the pool k-fold cuts
    "data.max_eval_samples": ("tokenize",),
    "data.max_test_samples": ("tokenize",),
    "data.sample_seed": ("tokenize",),
    "data.max_length": ("tokenize",),
    "data.num_proc": ("tokenize",),
    "data.eval_split": ("evaluate",),
    "task.name": ("download", "tokenize", *EVAL_SIDE),  # names every output
    "task.family": ("download", "tokenize", *EVAL_SIDE),
    "train": ("train",),
    **{f"train.{key}": EVAL_SIDE for key in ("per_device_eval_batch_size", "max_batch_tokens", "torch_threads",
                                              "bf16")},
}


def acting_stages(key: str) -> tuple[str, ...]:
    """The stages whose outputs a config key changes (`data.max_eval_samples`: tokenize)."""
    from finetune.tasks import family_keys

    listed = {key: ("download", "tokenize") for key in family_keys("settings")} \
        | {key: ("download",) for key in family_keys("sources")} | {key: EVAL_SIDE for key in family_keys("options")} \
        | ACTS_ON
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in listed:
            stages = listed[".".join(parts[:n])]
            return tuple(name for name in stages if parts[0] in BY_NAME[name].reads)
    return tuple(stage.name for stage in STAGES if parts[0] in stage.reads)


def unheard(keys: list[str], running: list[str], chained: bool) -> list[str]:
    """A warning for each key that none of the `running` stages acts on, naming the stages that do
    (`chained`: the stages of stages/pipeline.py's `pipeline.stages`, else one stage script)."""
    warnings = []
    for key in keys:
        acting = acting_stages(key) if key.split(".")[0] not in ALWAYS else ()
        if acting and not set(acting) & set(running):
            where = "and pipeline.stages does not run it" if chained else \
                f"not {running[0]} (give it to that stage, or run them all with stages/pipeline.py)"
            warnings.append(f"warning: {key} has no effect here: {', '.join(acting)} reads it, {where}")
    return warnings


def stage_config(cfg: DictConfig, stage: Stage) -> DictConfig:
    """`cfg` with only the sections `stage` reads (paths resolved first, as they name the pair)."""
    paths = OmegaConf.to_container(cfg.paths, resolve=True)
    kept = OmegaConf.create({key: cfg[key] for key in (*ALWAYS, *stage.reads) if key in cfg})
    with open_dict(kept):
        kept.paths = paths
    OmegaConf.set_struct(kept, True)
    return kept


def conf_dependencies(stage: Stage) -> list[str]:
    """The conf/ files a stage composes: conf/config.yaml, its per-item presets, its sections' folders."""
    shared = [f"conf/{section}" for section in stage.reads if section not in PER_ITEM]
    shared += ["conf/family"] if "task" in stage.reads else []  # a task preset composes its family's file
    chosen = [f"conf/{item}/${{item.{item}}}.yaml" for item in PER_ITEM if item in stage.reads]
    return ["conf/config.yaml", *shared, *chosen]


def dvc_path(output: str) -> str:
    return OUTPUTS[output].format(task="${item.task}", pair="${item.task}-${item.model}")


def dvc_stage(stage: Stage, params_sections: list[str]) -> list[str]:
    """The lines of one stage in dvc.yaml."""
    items = PER_ITEM if stage.per_model else ("task",)
    lines = [f"  {stage.name}:", "    matrix:", *[f"      {item}: ${{matrix.{item}}}" for item in items],
             f"    cmd: python stages/{stage.script} " + " ".join(f"{item}=${{item.{item}}}" for item in items),
             "    deps:", "      - src/finetune", f"      - stages/{stage.script}",
             *[f"      - {path}" for path in conf_dependencies(stage)],
             *[f"      - {dvc_path(output)}" for output in stage.inputs]]
    params = [section for section in stage.reads if section in params_sections]
    if params:
        lines += ["    params:", *[f"      - {section}" for section in params]]
    lines += ["    outs:", *[f"      - {dvc_path(output)}" for output in stage.outs]]
    if stage.metrics:
        lines += ["    metrics:", *[f"      - {dvc_path(output)}:\n          cache: false" for output in stage.metrics]]
    return lines


HEADER = """\
# Generated from finetune/pipeline/stage_table.py: edit the table there, then
#   python -m finetune.pipeline.stage_table > dvc.yaml
# The DAG: download -> tokenize -> train -> evaluate -> export, for every (task, model) pair of
# params.yaml's `matrix`. Stage names: download@<task>, tokenize@<task>-<model>, train@..., ...
# Each stage depends on the library, its script, the conf files of the sections it reads and those
# sections of params.yaml. An edit anywhere in the library re-runs every stage; a stage whose output
# comes out unchanged stops the re-run there.
stages:
"""
FOOTER = """\
# `dvc plots show`: learning curves (history.csv) and the PNG plots of every pair.
plots:
  - plots:
      x: step
      y:
        - loss
        - eval_loss
"""


def dvc_yaml(root: str | Path) -> str:
    """dvc.yaml for the repository at `root` (its params.yaml says which sections DVC tracks)."""
    params = OmegaConf.load(Path(root) / "params.yaml")
    sections = [key for key in params if key != "matrix"]
    body = "\n\n".join("\n".join(dvc_stage(stage, sections)) for stage in STAGES)
    return HEADER + body + "\n" + FOOTER


def markdown_table() -> str:
    """The README's "What runs" table."""
    rows = ["| stage | script | reads config | reads | writes |", "|---|---|---|---|---|"]
    for stage in STAGES:
        name = f"`{stage.name}@<task>{'-<model>' if stage.per_model else ''}`"
        inputs = ", ".join(f"`{OUTPUTS[i].format(task='<task>', pair='<pair>')}`" for i in stage.inputs) or "sources"
        rows.append(f"| {name} | `stages/{stage.script}` | {', '.join(stage.reads)} | {inputs} | {stage.summary} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(dvc_yaml(Path.cwd()), end="")
