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
