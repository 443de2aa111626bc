"""Config composition: conf/ < task preset < params.yaml < command line; clear errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.config import compose
from finetune.config_values import flatten


def copy_project(repo: Path, dest: Path) -> Path:
    for name in ("conf", "stages"):
        shutil.copytree(repo / name, dest / name)
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(repo / name, dest / name)
    return dest


def test_task_preset_sets_task_specific_defaults(repo):
    sarcasm = compose(repo, ["task=sarcasm", "model=tiny"])
    sentiment = compose(repo, ["task=sentiment"])
    assert sarcasm.data.text_column == "headline" and sarcasm.data.split.strategy == "first_n"
    assert sentiment.data.split.strategy == "random_fraction" and sentiment.data.eval_split == "test"
    assert sentiment.model.name == "minilm"
    assert sarcasm.paths.pair == "sarcasm-tiny"


def test_params_yaml_overrides_conf_and_command_line_overrides_params(repo, tmp_path):
    project = copy_project(repo, tmp_path)
    (project / "params.yaml").write_text(
        "matrix: {task: [sarcasm], model: [tiny]}\ntrain: {learning_rate: 1.0e-3}\ndata: {max_length: 40}\n")
    from_params = compose(project, ["task=sarcasm"])
    assert from_params.train.learning_rate == 1e-3
    assert from_params.data.max_length == 40  # wins over the task preset's 64
    from_cli = compose(project, ["task=sarcasm", "train.learning_rate=3e-5"])
    assert from_cli.train.learning_rate == 3e-5


def test_null_in_params_keeps_the_default_and_unknown_keys_are_rejected(repo, tmp_path):
    from finetune.errors import FinetuneError

    project = copy_project(repo, tmp_path)
    (project / "params.yaml").write_text("train: {learning_rate: null, gradient_accumulation_steps: 2}\n")
    cfg = compose(project, ["task=sarcasm"])
    assert cfg.train.learning_rate == compose(repo, ["task=sarcasm"]).train.learning_rate
    assert cfg.train.gradient_accumulation_steps == 2  # any TrainingArguments field may be added
    (project / "params.yaml").write_text("data: {max_lenght: 12}\n")
    with pytest.raises(FinetuneError, match="'data.max_lenght' is not a config key"):
        compose(project, ["task=sarcasm"])


def test_output_paths_follow_workdir(repo, tmp_path):
    cfg = compose(repo, ["task=sarcasm", "model=tiny"], workdir=tmp_path)
    assert cfg.paths.model == f"{tmp_path}/models/sarcasm-tiny"
    assert cfg.paths.raw == f"{tmp_path}/data/raw/sarcasm"


def test_flatten_gives_dotted_keys():
    assert flatten({"train": {"seed": 1, "opt": {"lr": 2}}, "x": []}) == \
        {"train.seed": 1, "train.opt.lr": 2, "x": []}


@pytest.mark.parametrize(("override", "expected"), [
    ("task=nope", "unknown task 'nope' (known: "),
    ("model=gpt9", "unknown model 'gpt9' (known: "),
])
def test_unknown_task_or_model_is_one_line(repo, override, expected):
    result = subprocess.run([sys.executable, str(repo / "stages" / "download.py"), override],
                            capture_output=True, text=True, cwd=repo)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: {expected}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_credentials_never_reach_written_config_or_params(repo):
    from finetune.config_values import config_yaml, redacted_override
    from finetune.tracking import flat_params

    cfg = compose(repo, ["task=sarcasm", "model=tiny", "tracking.uri=http://alice:s3cret@mlflow.example:5000",
                         "+train.hub_token=hf_abc123"])
    written, params = config_yaml(cfg), flat_params(cfg)
    assert "s3cret" not in written and "hf_abc123" not in written and "alice" not in written
    assert params["tracking.uri"] == "http://***@mlflow.example:5000" and params["train.hub_token"] == "***"
    assert "s3cret" not in str(params) and "hf_abc123" not in str(params)
    assert redacted_override("tracking.uri=https://u:p@host/x") == "tracking.uri=https://***@host/x"
    assert redacted_override("train.learning_rate=1e-3") == "train.learning_rate=1e-3"


def test_training_arguments_fields_need_no_plus(repo):
    cfg = compose(repo, ["task=sarcasm", "model=tiny", "train.max_steps=3", "train.lr_scheduler_type=constant"])
    assert cfg.train.max_steps == 3 and cfg.train.lr_scheduler_type == "constant"


def write_preset(folder: Path, name: str, body: str) -> Path:
    (folder / "task").mkdir(parents=True, exist_ok=True)
    path = folder / "task" / f"{name}.yaml"
    path.write_text("# @package _global_\ndefaults:\n  - /family/classification\n  - _self_\n" + body)
    return path


def test_a_preset_outside_the_repository_with_config_dir(repo, tmp_path):
    presets = tmp_path / "presets"
    write_preset(presets, "reviews", "task:\n  name: reviews\n  labels: null\n")
    done = subprocess.run([sys.executable, str(repo / "stages" / "download.py"), "--config-dir", str(presets),
                           "task=reviewz"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == (
        f"error: unknown task 'reviewz' (known: goemotions, mrpc, ner, qa, reviews, sarcasm, sentiment, stsb); "
        f"add conf/task/reviewz.yaml or {presets}/task/reviewz.yaml to define it\n")
    done = subprocess.run([sys.executable, str(repo / "stages" / "download.py"), "--config-dir", str(tmp_path / "no"),
                           "task=reviews"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == f"error: --config-dir: folder not found: {tmp_path / 'no'}\n"
