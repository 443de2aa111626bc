"""The config check: unknown keys with a suggestion, types and ranges, before any stage work."""

from __future__ import annotations

import pytest

from finetune.config import compose
from finetune.errors import FinetuneError
from finetune.schema import RULES, known_keys


def test_every_key_of_every_preset_is_known(repo):
    known = known_keys(str(repo / "conf"))
    assert {"data.max_length", "data.encoding", "task.n_best_size", "data.doc_stride", "model.path",
            "model.hub_id", "tracking.parent_run_id", "export.promotion"} <= known
    assert not [key for key in RULES if key not in known and not key.startswith("train.")]


@pytest.mark.parametrize("task", ["sentiment", "sarcasm", "ner", "qa", "mrpc", "stsb", "goemotions"])
def test_every_preset_passes_the_check(repo, task):
    compose(repo, [f"task={task}", "model=tiny"])  # raises on any key or value the check refuses


@pytest.mark.parametrize(("override", "message"), [
    ("+data.max_lenght=64", "'data.max_lenght' is not a config key: no stage reads it (did you mean 'data.max_length'"),
    ("+export.quantise=false", "did you mean 'export.quantize'?"),
    ("train.num_train_epochs=true", "train.num_train_epochs: expected a number > 0, got True"),
    ("train.per_device_train_batch_size=2.5", "expected an integer >= 1, got 2.5"),
    ("data.max_train_samples=all", None),
    ("task.label_map={B-MISC: O}", None),
])
def test_keys_and_values(repo, override, message):
    if message is None:
        compose(repo, ["task=ner", "model=tiny", override])
        return
    with pytest.raises(FinetuneError) as error:
        compose(repo, ["task=ner", "model=tiny", override])
    assert message in str(error.value)
