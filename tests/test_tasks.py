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


# -- long inputs: windows ----------------------------------------------------------------------

@pytest.mark.parametrize(("total", "room", "stride"), [(5, 8, 2), (8, 8, 2), (9, 8, 2), (100, 8, 0), (100, 8, 7),
                                                       (37, 10, 3)])
def test_windows_cover_every_position_and_overlap_by_the_stride(total, room, stride):
    from finetune.tasks.interface import window_spans

    spans = window_spans(total, room, stride)
    covered = sorted({i for start, end in spans for i in range(start, end)})
    assert covered == list(range(total)), "every position in some window"
    assert all(end - start <= room for start, end in spans) and spans[-1][1] == total
    assert all(end - start == min(room, total) for start, end in spans), "every window full"
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end - start >= stride, "neighbours share at least the stride"
    assert len(spans) == 1 or len(spans) == -(-(total - room) // (room - stride)) + 1, "no needless window"


def test_cut_windows_keep_the_special_tokens_of_each_window():
    from finetune.tasks.interface import cut_windows

    row = {"input_ids": [101, *range(1, 21), 102], "mask": [1] * 22}
    windows = cut_windows(row, (1, 1), 8, 2)
    assert all(w["input_ids"][0] == 101 and w["input_ids"][-1] == 102 and len(w["input_ids"]) == 8 for w in windows)
    assert sorted({t for w in windows for t in w["input_ids"][1:-1]}) == list(range(1, 21))
    assert all(len(w["mask"]) == len(w["input_ids"]) for w in windows)
