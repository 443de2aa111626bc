"""The stage table: dvc.yaml generated from it, each stage given only the sections it reads."""

from __future__ import annotations

import pytest
from omegaconf.errors import ConfigAttributeError

from finetune.config import compose
from finetune.pipeline.stage_table import (
    BY_NAME,
    PRODUCERS,
    STAGES,
    acting_stages,
    dvc_yaml,
    markdown_table,
    stage_config,
    unheard,
)
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


@pytest.mark.parametrize(("key", "stages"), [
    ("data.max_eval_samples", ("tokenize",)),
    ("data.files.train", ("download",)),
    ("data.text_column", ("download",)),          # a family's source option
    ("data.text_pair_column", ("download", "tokenize")),  # a codec setting, fixed at tokenize
    ("task.metric", ("train", "evaluate", "export")),
    ("task.name", ("download", "tokenize", "train", "evaluate", "export")),
    ("train.learning_rate", ("train",)),
    ("train.per_device_eval_batch_size", ("train", "evaluate", "export")),
    ("export.onnx", ("export",)),
    ("model.path", ("tokenize", "train", "evaluate", "export")),
])
def test_the_stages_acting_on_a_key(key, stages):
    assert acting_stages(key) == stages


def test_an_override_a_stage_does_not_act_on_warns_with_the_stage_that_does():
    assert unheard(["data.max_eval_samples", "train.seed", "paths.out"], ["evaluate"], chained=False) == [
        "warning: data.max_eval_samples has no effect here: tokenize reads it, not evaluate (give it to that stage, "
        "or run them all with stages/pipeline.py)",
        "warning: train.seed has no effect here: train reads it, not evaluate (give it to that stage, or run them "
        "all with stages/pipeline.py)"]
    assert unheard(["data.max_eval_samples", "export.onnx"], ["download", "tokenize", "train", "evaluate"],
                   chained=True) == ["warning: export.onnx has no effect here: export reads it, and pipeline.stages "
                                     "does not run it"]


def test_a_stage_process_warns_and_still_runs(tmp_path):
    """The overrides a user repeats on every stage: the download stage runs and says which it ignored."""
    from tests.conftest import headline_rows, run_stage, write_jsonl

    train = write_jsonl(tmp_path / "headlines.jsonl", headline_rows(40))
    done = run_stage("download.py", "task=sarcasm", f"data.files.train={train}", "data.split.first_n=30",
                     "data.max_eval_samples=5", "train.learning_rate=1e-3", cwd=tmp_path, uri="file:///nowhere")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: data.max_eval_samples has no effect here: tokenize reads it, not download (give it to that stage, "
        "or run them all with stages/pipeline.py)",
        "warning: train.learning_rate has no effect here: train reads it, not download (give it to that stage, or "
        "run them all with stages/pipeline.py)"]
    assert (tmp_path / "data" / "raw" / "sarcasm" / "manifest.json").exists()
