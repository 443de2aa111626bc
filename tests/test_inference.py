"""finetune.inference: the Predictor on export folders reproduces what the evaluate stage scored,
on every backend, and a broken folder is one clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finetune.errors import DataError, FinetuneError
from finetune.inference import Predictor
from finetune.pipeline.common import load_saved


def eval_records(cfg) -> tuple[list[dict], list]:
    """The evaluated split's examples as a user would give them (no gold), and the examples."""
    examples = load_saved(Path(cfg.paths.tokenized) / "examples")[cfg.data.eval_split]
    if cfg.task.name == "qa":
        records = [{"id": e["id"], "question": e["question"], "context": e["context"]} for e in examples]
    elif cfg.task.name == "ner":
        records = [{"id": e["id"], "tokens": e["tokens"]} for e in examples]
    elif cfg.task.name == "mrpc":
        records = [{"id": e["id"], "text": e["text"], "text_pair": e["text_pair"]} for e in examples]
    else:
        records = [{"id": e["id"], "text": e["text"]} for e in examples]
    return records, examples


def evaluated(cfg) -> list:
    """What the evaluate stage wrote, per example, in the examples' order."""
    out = Path(cfg.paths.predictions)
    if cfg.task.name == "qa":
        return list(json.loads((out / "predictions.json").read_text()).values())
    if cfg.task.name == "ner":
        blocks = (out / "predictions.conll").read_text().strip("\n").split("\n\n")
        return [[line.split(" ")[2] for line in block.split("\n")] for block in blocks]
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("task", ["sarcasm", "ner", "qa", "mrpc"])
def test_predictor_gives_what_evaluate_scored(tiny_exports, task):
    cfg = tiny_exports[task]
    records, _ = eval_records(cfg)
    # The precision the evaluate stage's `auto` chose for its batches (the predictor's are smaller).
    precision = "bf16" if json.loads(Path(cfg.paths.metrics).read_text())["bf16"] else "fp32"
    predictions = Predictor(cfg.paths.export, precision=precision).predict(records)
    scored = evaluated(cfg)
    assert len(predictions) == len(scored) == len(records)
    if task == "qa":
        assert [p["answer"] for p in predictions] == scored
        for p, record in zip(predictions, records, strict=True):
            assert record["context"][p["start"]:p["end"]] == p["answer"] and 0 < p["score"] <= 1
    elif task == "ner":
        assert [p["tags"] for p in predictions] == scored
    else:
        assert [p["label"] for p in predictions] == [s["label"] for s in scored]
        for p, s in zip(predictions, scored, strict=True):
            assert p["probabilities"] == pytest.approx(s["probabilities"], abs=1e-5)


def test_auto_backend_measures_each_shape_once_within_tolerance(tiny_exports, tmp_path, monkeypatch):
    from finetune import calibration
    from finetune.inference import AutoBackend

    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))
    export = tiny_exports["sarcasm"].paths.export
    measured = []
    measure = calibration.inference_backend
    monkeypatch.setattr(calibration, "inference_backend", lambda *a, **k: measured.append(a[2]["input_ids"].shape)
                        or measure(*a, **k))
    auto = Predictor(export, backend="auto")
    assert isinstance(auto.backend, AutoBackend)
    assert set(auto.backend.backends) == {"torch-fp32", "torch-bf16", "onnx", "onnx-int8"}
    one, many = [{"text": "totally local man"}], [{"text": f"officially area report {i}"} for i in range(8)]
    for records in (one, many, one, many):
        predicted = auto.predict(records)
    assert len(measured) == 2 and [shape[0] for shape in measured] == [1, 8], "each shape measured once"
    assert auto.backend.choice.pick in auto.backend.backends and "tolerance 0.05" in auto.backend.choice.reason
    reference = Predictor(export, backend="torch", precision="fp32").predict(many)
    assert [p["label"] for p in predicted] == [p["label"] for p in reference]
    for p, q in zip(predicted, reference, strict=True):
        assert p["probabilities"] == pytest.approx(q["probabilities"], abs=0.05)
    cached = Predictor(export, backend="auto")
    cached.predict(one)
    assert cached.backend.choice.reason.endswith("(cached)")


@pytest.mark.parametrize("task", ["sarcasm", "ner", "qa"])
def test_onnx_backends_match_torch(tiny_exports, task):
    cfg = tiny_exports[task]
    records, _ = eval_records(cfg)
    torch_side = Predictor(cfg.paths.export, precision="fp32").predict(records)
    onnx_side = Predictor(cfg.paths.export, backend="onnx").predict(records)
    if task == "sarcasm":
        for a, b in zip(torch_side, onnx_side, strict=True):
            assert a["label"] == b["label"]
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
    else:
        key = "tags" if task == "ner" else "answer"
        assert [p[key] for p in torch_side] == [p[key] for p in onnx_side]
    int8 = Predictor(cfg.paths.export, backend="onnx-int8").predict(records)
    assert len(int8) == len(records)
    spec = json.loads((Path(cfg.paths.export) / "finetune.json").read_text())
    assert spec["onnx"]["max_abs_delta"] <= spec["onnx"]["tolerance"] == 1e-3
    assert spec["onnx"]["int8"][spec["primary_metric"]] >= 0


def test_long_text_is_truncated_and_said(tiny_exports):
    cfg = tiny_exports["sarcasm"]
    long = " ".join(["totally"] + ["word"] * 500)
    short, cut = Predictor(cfg.paths.export).predict([{"text": "officially local man"}, {"text": long}])
    assert cut["truncated"] is True and "truncated" not in short
    words = " ".join(["patient takes aspirin 100 mg daily"] * 40)  # 240 words, over data.max_length=128 tokens
    [ner] = Predictor(tiny_exports["ner"].paths.export).predict([{"text": words}])
    assert ner["truncated"] is True and ner["unpredicted_words"] > 0
    assert len(ner["tags"]) == 240 and ner["tags"][-ner["unpredicted_words"]:] == ["O"] * ner["unpredicted_words"]


def test_long_context_is_windowed(tiny_exports):
    cfg = tiny_exports["qa"]
    filler = " ".join(f"word{i}" for i in range(600))
    context = f"{filler} In the year 1903 a small boat named Dana sailed from the harbour. {filler}"
    [prediction] = Predictor(cfg.paths.export).predict([{"question": "What was the boat named?", "context": context}])
    assert context[prediction["start"]:prediction["end"]] == prediction["answer"]


def test_bad_inputs_name_the_row_and_field(tiny_exports):
    predictor = Predictor(tiny_exports["sarcasm"].paths.export)
    with pytest.raises(DataError, match=r"req, row 2, field 'text': empty text"):
        predictor.predict([{"text": "fine"}, {"text": ""}], source="req")
    qa = Predictor(tiny_exports["qa"].paths.export)
    with pytest.raises(DataError, match=r"req, row 1, field 'context': missing field"):
        qa.predict([{"question": "who?"}], source="req")


def test_broken_export_folders_are_one_line(tiny_exports, tmp_path):
    source = Path(tiny_exports["sarcasm"].paths.export)
    with pytest.raises(FinetuneError, match=r"no such export folder"):
        Predictor(tmp_path / "nowhere")
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    (copy / "config.json").write_text("{not json")
    with pytest.raises(FinetuneError, match=rf"{copy}: cannot load the (tokenizer|model): .*config.json"):
        Predictor(copy)
    shutil.copy(source / "config.json", copy / "config.json")
    (copy / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(FinetuneError, match=rf"{copy}: cannot load the model"):
        Predictor(copy)
    (copy / "finetune.json").write_text("[]")
    with pytest.raises(FinetuneError, match=r"finetune.json: missing key 'family'"):
        Predictor(copy)
    (copy / "finetune.json").unlink()
    with pytest.raises(FinetuneError, match=r"not an export folder of this pipeline"):
        Predictor(copy)
    (copy / "model.onnx").unlink()
    shutil.copy(source / "finetune.json", copy / "finetune.json")
    with pytest.raises(FinetuneError, match=r"model.onnx is missing"):
        Predictor(copy, backend="onnx")


@pytest.mark.parametrize("select", [None, [3, 0, 2]], ids=["whole", "selected"])
def test_run_model_pads_every_feature_in_place(select):
    """Each feature reaches the backend whole and padded, and its output comes back to its own row
    (also through a `select`, which reads the rows through an indices mapping)."""
    import numpy as np
    from datasets import Dataset

    from finetune.inference import run_model

    ids = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]]
    features = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]})
    if select:
        features, ids = features.select(select), [ids[i] for i in select]
    seen = []

    def backend(batch):
        seen.append(batch["input_ids"].shape)
        mask = batch["attention_mask"]
        assert ((batch["input_ids"] == 0) == (mask == 0)).all(), "padding where the mask says"
        return [np.stack([(batch["input_ids"] * mask).sum(1), mask.sum(1)], axis=1).astype(np.float32)]

    (outputs,) = run_model(backend, features, pad_id=0, batch_size=2, token_outputs=False)
    assert outputs.tolist() == [[sum(i), len(i)] for i in ids]
    assert seen[0][1] == max(len(i) for i in ids), "the longest features go first"


@pytest.mark.parametrize("task", ["sarcasm", "ner"])
def test_long_text_is_read_whole_in_windows_by_every_backend(task, tmp_path):
    from tests.conftest import build_export

    cfg = build_export(tmp_path, task, "data.long_inputs=windows", "data.max_length=32", "data.doc_stride=8",
                       "train.num_train_epochs=1", "export.quantize=false")
    words = " ".join(["patient takes aspirin in Paris daily"] * 40)  # 240 words, many windows of 32 tokens
    records = [{"text": "officially local man"}, {"text": words}]
    torch_side = Predictor(cfg.paths.export, precision="fp32").predict(records)
    onnx_side = Predictor(cfg.paths.export, backend="onnx").predict(records)
    short, long = torch_side
    assert long["windows"] > 5 and "truncated" not in long and "windows" not in short
    if task == "ner":
        assert len(long["tags"]) == 240 and long["unpredicted_words"] == 0
        assert [p["tags"] for p in onnx_side] == [p["tags"] for p in torch_side]
    else:
        assert [p["label"] for p in onnx_side] == [p["label"] for p in torch_side]
        assert onnx_side[1]["probabilities"] == pytest.approx(long["probabilities"], abs=1e-4)
        assert onnx_side[1]["windows"] == long["windows"]
