"""stages/pipeline.py's chain: every stage in one process; over several seeds, their mean."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import open_dict

from finetune.config import compose
from finetune.io import read_json
from finetune.pipeline.chain import run_pipeline
from tests.conftest import REPO, headline_rows, write_jsonl


def test_seeds_run_apart_and_return_their_mean_validation_value(tmp_path):
    train = write_jsonl(tmp_path / "headlines.jsonl", headline_rows(120))
    cfg = compose(REPO, ["task=sarcasm", "model=tiny", f"data.files.train={train}", "data.split.first_n=90",
                         "data.split.validation_fraction=0.3", "data.max_length=32", "train.num_train_epochs=1",
                         "train.learning_rate=1e-3", "train.per_device_train_batch_size=8", "train.bf16=false",
                         "train.compile=false", "train.disable_tqdm=true", "tracking.enabled=false",
                         "pipeline.seeds=[1,2]"], workdir=tmp_path)
    with open_dict(cfg):
        cfg.paths.out = str(tmp_path)
    value = run_pipeline(cfg)
    best = [read_json(tmp_path / f"seed-{seed}" / "models" / "sarcasm-tiny" / "train_summary.json")["best_metric"]
            for seed in (1, 2)]
    assert value == pytest.approx(sum(best) / 2)
    configs = [(tmp_path / f"seed-{seed}" / "models" / "sarcasm-tiny" / "config.yaml").read_text() for seed in (1, 2)]
    assert "seed: 1\n" in configs[0] and "seed: 2\n" in configs[1]
    assert not Path(tmp_path / "models").exists(), "each seed writes below its own folder"


def test_own_data_is_one_preset_file_and_one_command(tmp_path):
    """A user's set: one file of `LABEL text` lines, one preset outside the repository, one command."""
    from tests.conftest import run_stage

    lines = tmp_path / "headlines.label"
    lines.write_text("".join(f"{'sarcastic' if row['is_sarcastic'] else 'plain'} {row['headline']}\n"
                             for row in headline_rows(160)))
    presets = tmp_path / "presets" / "task"
    presets.mkdir(parents=True)
    (presets / "headlines.yaml").write_text(f"""\
# @package _global_
defaults:
  - /family/classification
  - _self_
task:
  name: headlines
  labels: null
data:
  files: {{train: {lines}}}
  format: csv
  delimiter: space
  maxsplit: 1
  columns: [label, text]
  split: {{strategy: random_fraction, validation_fraction: 0.2, test_fraction: 0.2}}
  max_length: 32
train:
  num_train_epochs: 3
  learning_rate: 1.0e-3
  per_device_train_batch_size: 8
  disable_tqdm: true
""")
    done = run_stage("pipeline.py", "--config-dir", str(tmp_path / "presets"), "task=headlines", "model=tiny",
                     "tracking.enabled=false", "train.max_steps=30", cwd=tmp_path, uri="file:///nowhere")
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_json(tmp_path / "models" / "headlines-tiny" / "train_summary.json")["global_step"] == 30
    metrics = read_json(tmp_path / "metrics" / "headlines-tiny.json")
    raw = read_json(tmp_path / "data" / "raw" / "headlines" / "manifest.json")
    assert raw["labels"] == ["plain", "sarcastic"] and raw["rows"] == {"train": 102, "test": 32, "validation": 26}
    assert metrics["test"]["n_eval"] == 32 and 0 <= metrics["test"]["accuracy"] <= 1
    predicted = (tmp_path / "predictions" / "headlines-tiny" / "predictions.jsonl").read_text().splitlines()
    assert len(predicted) == 32
