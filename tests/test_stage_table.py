"""The stage table: dvc.yaml generated from it, each stage given only the sections it reads."""

from __future__ import annotations

import pytest
from omegaconf.errors import ConfigAttributeError

from finetune.config import compose
from finetune.pipeline.stage_table import BY_NAME, PRODUCERS, STAGES, dvc_yaml, markdown_table, stage_config
from tests.conftest import REPO


def test_dvc_yaml_is_the_one_the_stage_table_generates():
    assert (REPO / "dvc.yaml").read_text() == dvc_yaml(REPO), \
        "dvc.yaml differs from the stage table: run `python -m finetune.pipeline.stage_table > dvc.yaml`"


def test_the_readme_shows_the_stage_table():
    assert markdown_table() in (REPO / "README.md").read_text()


def test_every_input_is_an_earlier_stages_output():
    made: set[str] = set()
    for stage in STAGES:
        assert set(stage.inputs) <= made, stage.name
        made |= set(stage.writes)
    assert PRODUCERS["metrics"] == "evaluate" and PRODUCERS["raw"] == "download"


def test_a_stage_is_given_only_the_sections_it_reads():
    cfg = compose(REPO, ["task=sarcasm", "model=tiny"])
    train = stage_config(cfg, BY_NAME["train"])
    assert set(train) == {"paths", "pipeline", "model", "task", "tracking", "train"}
    assert train.paths.tokenized == cfg.paths.tokenized  # resolved before the sections it names go
    with pytest.raises(ConfigAttributeError):
        train.data.eval_split  # noqa: B018 - reading an undeclared section fails, it never goes stale
