"""finetune.adapters: `train.peft: lora` trains adapters on a frozen encoder and a full head, for
every family; the export holds the adapter alone and the merged model, and both predict alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from finetune.adapters import ADAPTER
from finetune.config import compose
from finetune.errors import FinetuneError
from finetune.inference import Predictor
from finetune.schema import validate
from tests.conftest import REPO, build_export


@pytest.mark.parametrize("task", ["sarcasm", "ner", "qa"])
def test_adapters_train_on_a_frozen_encoder_and_export_beside_the_merged_model(task, tmp_path):
    import transformers
    from peft import PeftModel

    from finetune.models import load_model
    from finetune.tasks import recipe

    cfg = build_export(tmp_path, task, "train.peft=lora", "train.num_train_epochs=1", "export.quantize=false",
                       "tracking=none")
    export = Path(cfg.paths.export)
    spec = json.loads((export / "finetune.json").read_text())
    summary = json.loads((Path(cfg.paths.model) / "train_summary.json").read_text())
    assert spec["adapter"]["folder"] == ADAPTER and 0 < spec["adapter"]["size_mb"] < 1
    assert (export / ADAPTER / "adapter_config.json").exists() and summary["peft"] == "lora"

    family = recipe(cfg)
    labels = json.loads((export / "finetune.json").read_text())["labels"]
    base = load_model(cfg.model, family.codec.auto_model, int(cfg.train.seed),
                      **family.with_labels(labels).model_kwargs())
    base.save_pretrained(tmp_path / "base")  # before peft puts its layers into it below
    assert summary["trainable_parameters"] < sum(p.numel() for p in base.parameters()) / 20
    merged = getattr(transformers, family.codec.auto_model).from_pretrained(str(export))
    frozen = dict(base.named_parameters())
    for name, weight in merged.named_parameters():  # the encoder's own weights are the base's, untouched
        if "embeddings" in name or ".key." in name or "intermediate" in name:
            assert torch.equal(weight, frozen[name]), name

    # the adapter alone, put on the base, predicts what the merged model predicts
    adapted = PeftModel.from_pretrained(base, str(export / ADAPTER)).eval()
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    with torch.inference_mode():
        expected = merged.eval()(input_ids=ids).logits if task != "qa" else merged.eval()(input_ids=ids).start_logits
        got = adapted(input_ids=ids).logits if task != "qa" else adapted(input_ids=ids).start_logits
    assert torch.allclose(got, expected, atol=1e-5)

    # finetune-predict takes either: the export (merged model) or its adapter folder on the base model
    records = ([{"text": "officially local man"}] if task != "qa" else
               [{"question": "What was the boat named?", "context": "A boat named Dana sailed."}])
    config = export / ADAPTER / "adapter_config.json"
    with pytest.raises(FinetuneError, match="base_model_name_or_path None is no folder here"):
        Predictor(export / ADAPTER).predict(records)  # a random model has no folder to name
    config.write_text(json.dumps(json.loads(config.read_text()) | {"base_model_name_or_path": str(tmp_path / "base")}))
    merged_side = Predictor(export, precision="fp32").predict(records)
    adapter_side = Predictor(export / ADAPTER, precision="fp32").predict(records)
    key = {"sarcasm": "probabilities", "ner": "tags", "qa": "answer"}[task]
    assert adapter_side[0][key] == (pytest.approx(merged_side[0][key], abs=1e-5) if task == "sarcasm"
                                    else merged_side[0][key])
    assert Predictor(export, backend="onnx").predict(records)


@pytest.mark.parametrize(("override", "message"), [
    ("train.peft=bitfit", "train.peft: expected"),
    ("train.lora.r=0", "train.lora.r: expected"),
    ("train.lora.dropout=1.5", "train.lora.dropout: expected"),
    ("train.lora.target_modules=[]", "train.lora.target_modules: an empty list"),
])
def test_bad_adapter_settings_are_one_line(override, message):
    with pytest.raises(FinetuneError, match=message):
        validate(compose(REPO, ["task=sarcasm", "model=tiny", override]), REPO / "conf")
