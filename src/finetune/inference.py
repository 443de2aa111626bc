"""Running a model over features and decoding its outputs: one path for the evaluate stage, the
predict command and the served MLflow model.

`Predictor` needs an export folder alone (weights, tokenizer, `finetune.json`): the family and its
settings come from that file, so predictions never depend on conf/, DVC state or the repository.
Backends: PyTorch (fp32, or bf16 autocast where it is measured faster), ONNX Runtime on `model.onnx`
or on the int8-quantised `model.int8.onnx`, or `auto`: the fastest of those the export holds,
timed here on the first batch of each shape, within the family's tolerance of PyTorch fp32.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from finetune.errors import FinetuneError
from finetune.precision import check_precision
from finetune.tasks import load_codec
from finetune.tasks.interface import Codec, Prediction

ARTIFACT = "export"  # the export folder's name among a registered MLflow model's artifacts
SPEC = "finetune.json"  # the export's decoding settings: family, labels, lengths, ...
ADAPTER_CONFIG = "adapter_config.json"  # marks a LoRA adapter folder (peft)
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
BACKENDS = ("auto", "torch", *ONNX_FILES)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PAD_LOGIT = -100.0  # value of the positions a shorter feature's token outputs are padded with


class TorchBackend:
    """A transformers model in eval mode, on the GPU when there is one, in fp32 or bf16 autocast.

    `precision="auto"`: bf16 where it is measurably faster on the first batch's shape and its
    outputs stay within `tolerance` of fp32's (finetune.calibration; cached per machine, model and
    shape); `bf16` / `fp32` force it. `choice` says what the measurement found.
    """

    def __init__(self, model: Any, names: tuple[str, ...], precision: str = "fp32", tolerance: float = 0.05):
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.names = model.eval().to(self.device), names
        self.precision, self.tolerance = check_precision(precision), tolerance
        self.bf16 = self.precision == "bf16"
        self.choice: Any = None
        self.inputs = model_inputs(model)

    def __call__(self, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        tensors = {name: torch.from_numpy(batch[name]).to(self.device) for name in self.inputs}
        if self.precision == "auto" and self.choice is None:
            from finetune.calibration import inference_bf16

            self.choice = inference_bf16(self.model, tensors, self.tolerance)
            self.bf16 = self.choice.use
        with torch.inference_mode(), torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
            output = self.model(**tensors)
        return [output[name].float().cpu().numpy() for name in self.names]


class OnnxBackend:
    """An ONNX Runtime session over an exported model."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, {name: batch[name] for name in self.inputs})


class AutoBackend:
    """Whichever of an export's backends runs fastest here on batches of this shape, within the
    family's tolerance of PyTorch fp32 (finetune.calibration.inference_backend): measured on the
    first batch of each shape (rows and length, rounded up to powers of two) and cached per
    machine, model and shape; the fastest for one text is not the fastest for 32. `choice` says
    what the latest measurement found."""

    def __init__(self, model: Any, backends: dict[str, Callable[[dict[str, np.ndarray]], list[np.ndarray]]],
                 tolerance: float):
        self.model, self.backends, self.tolerance = model, backends, tolerance
        self.choice: Any = None
        self.chosen: dict[tuple[int, int], Callable[[dict[str, np.ndarray]], list[np.ndarray]]] = {}

    def __call__(self, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        from finetune.calibration import bucket, inference_backend

        rows, length = batch["input_ids"].shape
        shape = (bucket(rows), bucket(length))
        if shape not in self.chosen:
            self.choice = inference_backend(self.model, self.backends, batch, self.tolerance)
            self.chosen[shape] = self.backends[self.choice.pick]
        return self.chosen[shape](batch)


def model_inputs(model: Any) -> list[str]:
    """Which of MODEL_INPUTS the model's forward takes (DistilBERT has no token_type_ids)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return [name for name in MODEL_INPUTS if name in accepted]


def run_model(backend: Callable[[dict[str, np.ndarray]], list[np.ndarray]], features: Any, *, pad_id: int,
              batch_size: int, token_outputs: bool, progress: bool = False) -> tuple[np.ndarray, ...]:
    """The backend's outputs on every feature, in the features' order.

    Features are batched by length (longest first), so a batch pads little; token-level outputs
    are padded across batches with PAD_LOGIT up to the longest feature.
    """
    columns = [name for name in MODEL_INPUTS if name in features.column_names]
    data = {name: _ragged(features, name) for name in columns}
    offsets = data["input_ids"][0]
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")
    longest = int(lengths.max()) if len(lengths) else 0
    results: list[np.ndarray] | None = None
    bar = _progress(len(order), progress)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = int(lengths[rows].max())
        inside = np.arange(width)[None, :] < lengths[rows][:, None]
        batch = {}
        for name in columns:
            starts, values = data[name][0][rows], data[name][1]
            array = np.full((len(rows), width), pad_id if name == "input_ids" else 0, dtype=np.int64)
            array[inside] = values[(starts[:, None] + np.arange(width)[None, :])[inside]]
            batch[name] = array
        if "attention_mask" not in batch:
            batch["attention_mask"] = inside.astype(np.int64)
        if "token_type_ids" not in batch:
            batch["token_type_ids"] = np.zeros_like(batch["input_ids"])
        outputs = backend(batch)
        if results is None:
            results = [np.full((len(order), longest, *o.shape[2:]) if token_outputs else (len(order), *o.shape[1:]),
                               PAD_LOGIT, dtype=np.float32) for o in outputs]
        for result, output in zip(results, outputs, strict=True):
            if token_outputs:
                result[rows, :width] = output
            else:
                result[rows] = output
        bar.update(len(rows))
    bar.close()
    return tuple(results or ())


def _ragged(features: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A list column as (offsets, flat values) arrays: row i is values[offsets[i]:offsets[i+1]].

    Read through Arrow: indexing a Dataset row by row costs more than the model's forward pass.
    """
    import pyarrow as pa

    column = features.with_format("arrow")[name]
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return column.offsets.to_numpy().astype(np.int64), column.values.to_numpy()


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="predict", unit="example", disable=not enabled, leave=False)


def export_of(folder: str | Path) -> Path:
    """The export folder of `folder`: itself, or the export holding it when it is the export's
    LoRA adapter (`adapter/`, finetune.adapters)."""
    folder = Path(folder)
    return folder.parent if (folder / ADAPTER_CONFIG).exists() and not (folder / SPEC).exists() else folder


def read_spec(folder: str | Path) -> dict[str, Any]:
    """An export folder's `finetune.json`, or one clear line saying what is wrong with the folder."""
    folder = export_of(folder)
    if not folder.is_dir():
        raise FinetuneError(f"{folder}: no such export folder (run `dvc repro export@<task>-<model>`)")
    path = folder / SPEC
    if not path.exists():
        raise FinetuneError(f"{folder}: not an export folder of this pipeline ({SPEC} is missing)")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FinetuneError(f"{path}: not valid JSON ({error})") from None
    for key in ("family", "settings", "labels"):
        if key not in spec:
            raise FinetuneError(f"{path}: missing key '{key}'")
    return spec


def codec_of(folder: str | Path) -> Codec:
    """The codec of an export folder: its family, saved settings and labels."""
    return load_codec(read_spec(folder), str(export_of(folder) / SPEC))


class Predictor:
    """Predictions on user records from an export folder."""

    def __init__(self, folder: str | Path, backend: str = "torch", precision: str = "auto",
                 batch_size: int = 32, threads: int | None = None):
        # an export's adapter folder predicts with the adapter put on its base model
        self.adapter = Path(folder) if export_of(folder) != Path(folder) else None
        self.folder = export_of(folder)
        self.codec = codec_of(self.folder)
        self.batch_size = batch_size
        if backend not in BACKENDS:
            raise FinetuneError(f"backend '{backend}': use one of {', '.join(BACKENDS)}")
        self.tokenizer = _load(self.folder, "tokenizer", lambda: _tokenizer(self.folder))
        if threads:
            import torch

            torch.set_num_threads(threads)
        tolerance = self.codec.bf16_tolerance
        if backend == "auto":
            model = self._torch_model()
            candidates = {"torch-fp32": TorchBackend(model, self.codec.outputs, "fp32")}
            if precision != "fp32":
                candidates["torch-bf16"] = TorchBackend(model, self.codec.outputs, "bf16")
            for name, file in ONNX_FILES.items():
                if (self.folder / file).exists():
                    candidates[name] = _load(self.folder, name, lambda file=file: OnnxBackend(self.folder / file,
                                                                                              threads))
            self.backend: Any = AutoBackend(model, candidates, tolerance)
        elif backend == "torch":
            self.backend = TorchBackend(self._torch_model(), self.codec.outputs, precision, tolerance)
        elif self.adapter:
            raise FinetuneError(f"{self.adapter}: an adapter predicts with --backend torch; the export's ONNX files "
                                f"hold the merged model: give the export folder {self.folder}")
        else:
            path = self.folder / ONNX_FILES[backend]
            if not path.exists():
                raise FinetuneError(f"{path} is missing: export with export.onnx=true"
                                    + (" and export.quantize=true" if backend == "onnx-int8" else ""))
            self.backend = _load(self.folder, backend, lambda: OnnxBackend(path, threads))

    def _torch_model(self) -> Any:
        import transformers

        auto = getattr(transformers, self.codec.auto_model)
        if self.adapter:
            return _load(self.adapter, "adapter", lambda: _adapted(auto, self.folder, self.adapter))
        return _load(self.folder, "model", lambda: auto.from_pretrained(str(self.folder), use_safetensors=True))

    def predict(self, records: list[dict[str, Any]], source: str = "<input>",
                progress: bool = False) -> list[Prediction]:
        """One prediction per record (`{"text": ...}`, or `{"question": ..., "context": ...}` for QA)."""
        return self.predict_inputs(self.codec.inputs(records, source), progress)

    def predict_inputs(self, examples: list[dict[str, Any]], progress: bool = False) -> list[Prediction]:
        """Predictions on checked inputs (`Codec.inputs`), in order; their ids need not be unique
        (a file's own ids, several requests batched together)."""
        from datasets import Dataset

        numbered = Dataset.from_list([{**example, "id": str(i)} for i, example in enumerate(examples)])
        predictions = self.predict_examples(numbered, progress)
        for prediction, example in zip(predictions, examples, strict=True):
            prediction["id"] = example["id"]
        return predictions

    def predict_examples(self, examples: Any, progress: bool = False) -> list[Prediction]:
        """Predictions on canonical examples (a Dataset, gold fields ignored)."""
        import datasets

        datasets.disable_progress_bars()
        features, _ = self.codec.tokenize(examples, self.tokenizer)
        outputs = run_model(self.backend, features, pad_id=self.tokenizer.pad_token_id or 0,
                            batch_size=self.batch_size, token_outputs=self.codec.token_outputs, progress=progress)
        return self.codec.decode(examples, features, outputs)


def _adapted(auto: Any, export: Path, adapter: Path) -> Any:
    """The adapter put on the base model it was trained from (named in its adapter_config.json),
    with the export's config (labels, head size), merged."""
    import transformers
    from peft import PeftModel

    base = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise FinetuneError(f"{adapter / ADAPTER_CONFIG}: base_model_name_or_path {base!r} is no folder here; "
                            f"set it to the base model's folder, or predict with the merged model in {export}")
    config = transformers.AutoConfig.from_pretrained(str(export))
    model = auto.from_pretrained(base, config=config)
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _load(folder: Path, what: str, action: Callable[[], Any]) -> Any:
    """Run a loader; a broken file in the export folder becomes one line naming the folder."""
    try:
        return action()
    except FinetuneError:
        raise
    except Exception as error:  # noqa: BLE001 - transformers/onnxruntime raise many kinds here
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise FinetuneError(f"{folder}: cannot load the {what}: {first}") from None


def resolve_source(source: str) -> tuple[Path, Any]:
    """An export folder for `source`: the folder itself, or a registered model's (`models:/...`)
    downloaded to a temporary folder (returned too, so it lives as long as the caller needs it)."""
    if not source.startswith("models:/"):
        return Path(source), None
    import mlflow
    from mlflow.exceptions import MlflowException

    scratch = tempfile.TemporaryDirectory(prefix="finetune-model-")
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=scratch.name)
    except MlflowException as error:
        raise FinetuneError(f"{source}: {str(error).splitlines()[0]} "
                            f"(tracking store: {mlflow.get_tracking_uri()})") from None
    import yaml

    spec = yaml.safe_load((Path(local) / "MLmodel").read_text())
    artifacts = spec.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    if ARTIFACT not in artifacts:
        raise FinetuneError(f"{source}: not a model logged by this pipeline's export stage")
    return Path(local) / artifacts[ARTIFACT]["path"], scratch
