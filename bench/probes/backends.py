"""The inference backends of one export on this machine: speed, distance to PyTorch fp32, ONNX
Runtime's transformer fusion, and what `--backend auto` picks.

    python bench/probes/backends.py                       # writes bench/results/backends.{json,md}
    python bench/probes/backends.py --export exports/ner-minilm --rounds 3 --out /tmp

Two shapes, each 8 batches of 32 rows: short texts (sarcasm headlines) and 128 real tokens (IMDB
reviews cut). Every backend predicts all batches once per round, the order rotating each round;
the figure is the median round. `onnx-fused` is `model.onnx` after
`onnxruntime.transformers.optimizer.optimize_model` (attention, layer-norm and GELU fusion),
`onnx-fused-int8` its dynamic int8 quantisation. Then `Predictor(backend="auto")` with an empty
calibration cache (it measures) and again (it reads the cache), timed from construction to the
first prediction.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = Path(os.environ.get("FINETUNE_DATA_DIR", REPO.parent / "shared" / "data"))
sys.path[:0] = [str(HERE.parent / "helpers"), str(REPO / "src")]
from common import provenance, provenance_text, table  # noqa: E402

ROWS, BATCHES = 32, 8


def texts() -> dict[str, list[str]]:
    with open(DATA / "sarcasm" / "Sarcasm_Headlines_Dataset.json", encoding="utf-8") as handle:
        short = [json.loads(line)["headline"] for _, line in zip(range(ROWS * BATCHES), handle, strict=False)]
    with gzip.open(DATA / "imdb" / "imdb.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        long = [row["text"] for _, row in zip(range(ROWS * BATCHES), csv.DictReader(handle), strict=False)]
    return {"short": short, "128 tokens": long}


def batches(tokenizer, texts_: list[str], length: int | None) -> list[dict]:  # noqa: ANN001
    import numpy as np

    out = []
    for start in range(0, len(texts_), ROWS):
        encoded = tokenizer(texts_[start:start + ROWS], truncation=length is not None, max_length=length,
                            padding="max_length" if length else "longest", return_tensors="np")
        out.append({name: np.asarray(encoded[name], dtype=np.int64)
                    for name in ("input_ids", "attention_mask", "token_type_ids")})
    return out


def fused(export: Path, scratch: Path) -> dict[str, Path]:
    """model.onnx with ONNX Runtime's transformer fusion, and that graph quantised to int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(export))
    model = optimize_model(str(export / "model.onnx"), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size)
    paths = {"onnx-fused": scratch / "model.fused.onnx", "onnx-fused-int8": scratch / "model.fused.int8.onnx"}
    model.save_model_to_file(str(paths["onnx-fused"]))
    import onnx

    # fused ops (com.microsoft domain) lack shape inference: say the activations are fp32
    quantize_dynamic(str(paths["onnx-fused"]), str(paths["onnx-fused-int8"]), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return paths | {"fused_ops": {k: v for k, v in model.get_fused_operator_statistics().items() if v}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, default=REPO / "exports" / "sentiment-minilm")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from finetune.inference import AutoBackend, OnnxBackend, Predictor, TorchBackend

    export = args.export.resolve()
    tokenizer = AutoTokenizer.from_pretrained(str(export))
    model = AutoModelForSequenceClassification.from_pretrained(str(export))
    with tempfile.TemporaryDirectory(prefix="backends-") as tmp:
        scratch = Path(tmp)
        extra = fused(export, scratch)
        fused_ops = extra.pop("fused_ops")
        backends = {"torch-fp32": TorchBackend(model, ("logits",), "fp32"),
                    "torch-bf16": TorchBackend(model, ("logits",), "bf16"),
                    "onnx": OnnxBackend(export / "model.onnx"), "onnx-int8": OnnxBackend(export / "model.int8.onnx"),
                    **{name: OnnxBackend(path) for name, path in extra.items()}}
        shapes = {}
        for shape, given in texts().items():
            data = batches(tokenizer, given, 128 if shape != "short" else None)
            reference = [backends["torch-fp32"](batch)[0] for batch in data]
            rounds: dict[str, list[float]] = {name: [] for name in backends}
            distance = {}
            for name, run in backends.items():
                outputs = [run(batch)[0] for batch in data]  # also the warm-up
                distance[name] = float(np.linalg.norm(np.concatenate(outputs) - np.concatenate(reference))
                                       / np.linalg.norm(np.concatenate(reference)))
            order = list(backends)
            for r in range(args.rounds):
                for name in order[r % len(order):] + order[:r % len(order)]:
                    start = time.perf_counter()
                    for batch in data:
                        backends[name](batch)
                    rounds[name].append(time.perf_counter() - start)
            tokens = int(sum(batch["attention_mask"].sum() for batch in data))
            shapes[shape] = {name: {"median_s": statistics.median(times),
                                    "texts_per_s": len(given) / statistics.median(times),
                                    "tokens_per_s": tokens / statistics.median(times), "distance": distance[name],
                                    "rounds_s": times} for name, times in rounds.items()}
            print(shape, {name: round(v["texts_per_s"], 1) for name, v in shapes[shape].items()}, flush=True)
        auto = {}
        with tempfile.TemporaryDirectory(prefix="calibration-") as cache:
            os.environ["FINETUNE_CACHE"] = cache
            sample = [{"text": text} for text in texts()["short"][:ROWS]]
            for attempt in ("measured", "cached"):
                start = time.perf_counter()
                predictor = Predictor(export, backend="auto")
                predictor.predict(sample)
                assert isinstance(predictor.backend, AutoBackend)
                choice = predictor.backend.choice
                auto[attempt] = {"seconds": round(time.perf_counter() - start, 2), "pick": choice.pick,
                                 "reason": choice.reason}
                print(attempt, auto[attempt], flush=True)
    result = {"export": os.path.relpath(export, REPO), "measured": provenance(),
              "torch_threads": torch.get_num_threads(), "fused_ops": fused_ops, "shapes": shapes, "auto": auto}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backends.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "backends.md").write_text(render(result))
    print(render(result))


def render(result: dict) -> str:
    rows = []
    for shape, backends in result["shapes"].items():
        base = backends["torch-fp32"]["median_s"]
        for name, v in backends.items():
            rows.append([shape, name, f"{v['texts_per_s']:.0f}", f"{base / v['median_s']:.2f}x",
                         f"{v['distance']:.2g}"])
    auto = result["auto"]
    return "\n".join([
        "# Inference backends", "",
        f"`{result['export']}`, {provenance_text(result['measured'])}, {result['torch_threads']} threads. "
        "Command: `python bench/probes/backends.py`. Speed: median of the rounds over 8 batches of 32 rows; "
        "distance: ||outputs - PyTorch fp32's|| / ||PyTorch fp32's|| over the same batches.", "",
        table(["shape", "backend", "texts/s", "vs torch-fp32", "distance"], rows), "",
        f"ONNX Runtime's transformer fusion fused: {', '.join(f'{k} x{v}' for k, v in result['fused_ops'].items())}.",
        "",
        f"`--backend auto` picked **{auto['measured']['pick']}** here: {auto['measured']['reason']}. "
        f"Construction to first prediction: {auto['measured']['seconds']} s measuring, "
        f"{auto['cached']['seconds']} s with the decision cached.", ""])


if __name__ == "__main__":
    main()
