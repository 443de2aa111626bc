"""The family registry and interface: each family's keys live in its conf/family file, are all read,
and a codec saved as a spec comes back the same."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from finetune.config import compose
from finetune.config_values import flatten
from finetune.errors import FinetuneError
from finetune.tasks import FAMILIES, family_module, load_codec, recipe
from finetune.tasks.interface import config_keys
from tests.conftest import REPO

PRESET = {"classification": "sarcasm", "token_classification": "ner", "question_answering": "qa"}
READ_ELSEWHERE = {"task.family", "data.format"}  # the registry and the source readers read these


def family_keys(name: str) -> set[str]:
    module = family_module(name, "test")
    keys = set(config_keys(module.Settings))
    for cls in module.recipes():
        keys |= set(config_keys(cls.Sources)) | set(config_keys(cls.Options))
    return keys


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_key_of_a_family_file_is_read_by_the_family(name):
    written = set(flatten(OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "family" / f"{name}.yaml"))))
    assert written - READ_ELSEWHERE <= family_keys(name)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_preset_of_each_family_gives_every_key_it_reads(name):
    family = recipe(compose(REPO, [f"task={PRESET[name]}", "model=tiny"]))
    assert family.codec.family == name and family.sources is not None


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_codec_spec_rebuilds_the_same_codec(name):
    codec = recipe(compose(REPO, [f"task={PRESET[name]}", "model=tiny"])).with_labels(["a", "b"]).codec
    again = load_codec(codec.spec(), "spec")
    assert type(again) is type(codec) and again.settings == codec.settings and again.labels == ["a", "b"]


def test_unknown_family_and_unfit_settings_are_one_line():
    with pytest.raises(FinetuneError, match=r"unknown task family 'parsing' in spec \(known: classification, "):
        load_codec({"family": "parsing", "settings": {}, "labels": None}, "spec")
    with pytest.raises(FinetuneError, match=r"spec: settings do not fit the question_answering family"):
        load_codec({"family": "question_answering", "settings": {"task": "qa"}, "labels": None}, "spec")


def test_a_codec_saved_before_the_primary_metric_left_the_settings_still_loads():
    codec = recipe(compose(REPO, ["task=sarcasm", "model=tiny"])).with_labels(["a", "b"]).codec
    old = codec.spec() | {"settings": codec.spec()["settings"] | {"metric": "accuracy"}}
    assert load_codec(old, "exports/old/finetune.json").settings == codec.settings
