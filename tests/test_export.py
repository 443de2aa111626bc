"""The export folder: self-contained, loads in `transformers.pipeline` without this project, a
Hugging Face model card, safetensors only, ONNX parity recorded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finetune.errors import FinetuneError
from finetune.metrics import reported

# Runs in a fresh interpreter where importing finetune fails: the folder must not need it.
PIPELINE_SCRIPT = """
import json, sys
sys.modules["finetune"] = None
task, folder = sys.argv[1], sys.argv[2]
if task == "question-answering":  # transformers 5 has no extractive-QA pipeline: the Auto classes
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForQuestionAnswering.from_pretrained(folder)
    context = "In the year 1901 a small boat named Bela sailed from the harbour to the island."
    inputs = tokenizer("What was the boat named?", context, return_tensors="pt")
    with torch.no_grad():
        output = model(**inputs)
    start, end = int(output.start_logits.argmax()), int(output.end_logits.argmax())
    out = {"answer": tokenizer.decode(inputs["input_ids"][0][start:end + 1]), "start": start, "end": end}
else:
    from transformers import pipeline
    text = json.loads(sys.argv[3]) if sys.argv[3].startswith("{") else sys.argv[3]  # a pair: text + text_pair
    call = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}  # e.g. top_k=None: every label's score
    out = pipeline(task, model=folder)(text, **call)
print(json.dumps(out, default=float))
"""


@pytest.mark.parametrize(("task", "pipeline_tag", "text"), [
    ("sarcasm", "text-classification", "totally local man"),
    ("ner", "token-classification", "patient takes aspirin 100 mg daily"),
    ("qa", "question-answering", ""),
    ("mrpc", "text-classification", '{"text": "the bank said", "text_pair": "indeed the bank said"}'),
    ("stsb", "text-classification", '{"text": "a dog is running", "text_pair": "likewise a dog is running"}'),
    ("goemotions", "text-classification", "the game was glad and furious today"),
])
def test_loads_in_transformers_pipeline_without_the_project(tiny_exports, tmp_path, task, pipeline_tag, text):
    folder = tmp_path / "moved"
    shutil.copytree(tiny_exports[task].paths.export, folder)  # not where it was made: no repo around it
    call = ['{"top_k": null}'] if task == "goemotions" else []
    done = subprocess.run([sys.executable, "-c", PIPELINE_SCRIPT, pipeline_tag, str(folder), text, *call],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if task == "sarcasm":
        assert out[0]["label"] in {"sarcastic", "not_sarcastic"}
    elif task == "mrpc":
        top = out[0] if isinstance(out, list) else out  # a single pair comes back as one dict
        assert top["label"] == "equivalent", "the marker word of the second sentence decides"
    elif task == "stsb":  # the raw value (problem_type regression), not squashed through a sigmoid
        assert out["label"] == "similarity" and out["score"] > 2
    elif task == "goemotions":  # one sigmoid per label: both marked emotions are likely at once
        scores = {row["label"]: row["score"] for row in out}
        assert set(scores) == {"joy", "sadness", "anger"} and scores["joy"] > 0.5 and scores["anger"] > 0.5
    elif task == "ner":
        assert all(entity["entity"].split("-")[-1] in {"DRUG", "DOSE", "O"} for entity in out)
    else:
        assert "answer" in out and out["start"] >= 0


def test_folder_holds_what_predicting_needs(tiny_exports):
    cfg = tiny_exports["qa"]
    folder = Path(cfg.paths.export)
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "finetune.json",
            "README.md", "model.onnx", "model.int8.onnx"} <= names
    assert not {n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))}
    spec = json.loads((folder / "finetune.json").read_text())
    assert spec["family"] == "question_answering" and spec["primary_metric"] == "f1"
    assert spec["settings"] == {"task": "qa", "max_length": 384, "doc_stride": 128, "max_query_length": 64,
                                "n_best_size": 20, "max_answer_length": 30, "version_2_with_negative": False,
                                "null_score_diff_threshold": 0.0}
    metrics = reported(json.loads(Path(cfg.paths.metrics).read_text()))
    assert spec["eval"] == {"split": "test", "n_eval": 9, "f1": metrics["f1"]}
    ner = json.loads((Path(tiny_exports["ner"].paths.export) / "config.json").read_text())
    assert ner["id2label"] == {"0": "O", "1": "B-DOSE", "2": "I-DOSE", "3": "B-DRUG", "4": "I-DRUG"}


def test_model_card_front_matter(tiny_exports):
    cfg = tiny_exports["sarcasm"]
    card = (Path(cfg.paths.export) / "README.md").read_text()
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["pipeline_tag"] == "text-classification" and meta["library_name"] == "transformers"
    assert "base_model" not in meta, "a random tiny config has no base model"
    [result] = meta["model-index"][0]["results"]
    metrics = reported(json.loads(Path(cfg.paths.metrics).read_text()))
    assert result["dataset"]["split"] == "test"
    assert result["metrics"][0] == {"type": "accuracy", "value": round(metrics["accuracy"], 6)}
    manifest = json.loads((Path(cfg.paths.tokenized) / "manifest.json").read_text())
    assert manifest["data_sha256"] in card and "finetune-predict exports/sarcasm-tiny" in card
    assert "mlflow models serve -m models:/sarcasm-tiny@champion" in card
    assert "max |Δlogits| against PyTorch on" in card and "`model.int8.onnx` (dynamic int8 quantisation)" in card


def test_minilm_card_names_its_base_model(repo):
    from finetune.config import compose
    from finetune.export.card import front_matter

    cfg = compose(repo, ["task=sentiment", "model=minilm"])
    meta = front_matter(cfg, "text-classification", {"accuracy": 0.9, "f1": 0.8, "split": "test"}, "accuracy")
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["datasets"] == ["stanfordnlp/imdb"]
    assert [m["type"] for m in meta["model-index"][0]["results"][0]["metrics"]] == ["accuracy", "f1"]


def test_pickle_weights_are_never_exported(tiny_exports, tmp_path):
    import torch

    from finetune.export import write_export
    from finetune.tasks import recipe

    cfg = tiny_exports["sarcasm"]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(Path(cfg.paths.model) / "config.json", model_dir / "config.json")
    torch.save({}, model_dir / "pytorch_model.bin")
    before = sorted(p.name for p in Path(cfg.paths.export).iterdir())
    with pytest.raises(FinetuneError, match=r"no model.safetensors \(found pytorch_model.bin: pickle weights"):
        write_export(cfg, recipe(cfg), model_dir, {}, {}, (None, None))
    assert sorted(p.name for p in Path(cfg.paths.export).iterdir()) == before, "the good export stays"


def test_onnx_parity_failure_fails_the_export(tiny_exports, tmp_path):
    """The check passes far below the tolerance; a tolerance below fp32 rounding fails, naming the difference."""
    import transformers

    from finetune.export.onnx import export_onnx
    from finetune.models import load_tokenizer
    from finetune.pipeline.common import load_saved
    from finetune.tasks import recipe

    cfg = tiny_exports["ner"]
    codec = recipe(cfg).codec
    model = transformers.AutoModelForTokenClassification.from_pretrained(cfg.paths.model)
    features = load_saved(Path(cfg.paths.tokenized) / "features")["validation"]
    pad = load_tokenizer(cfg.model).pad_token_id
    report = export_onnx(model, codec, features, tmp_path, pad_id=pad, tolerance=1e-3)
    assert 0 <= report["max_abs_delta"] < 1e-4 and report["parity_inputs"] == 12
    assert report["max_abs_delta"] > 0, "ONNX Runtime's kernels round differently from PyTorch's"
    with pytest.raises(FinetuneError, match=r"ONNX outputs differ from PyTorch by .* \(export.onnx_tolerance=0.0\)"):
        export_onnx(model, codec, features, tmp_path, pad_id=pad, tolerance=0.0)
