"""The exported folder as an MLflow pyfunc model: its predictions are `finetune-predict`'s.

`mlflow models serve -m models:/<task>-<model>@champion --env-manager local` answers
`POST /invocations` with `{"dataframe_records": [{"text": ...}]}` (QA: question + context).
The server's environment tunes it:

- FINETUNE_BACKEND: auto (the default: the fastest the export holds, measured per batch shape),
  torch, onnx or onnx-int8;
- FINETUNE_BATCH_WAIT_MS: concurrent requests are answered by one model call (finetune.batching):
  how long the first waits for others to join it (default 2; 0: only the requests that queued while
  the model ran; bench/results/serving.md measures both);
- FINETUNE_MAX_BATCH: the most texts one call takes (default 64; 0 answers each request on its own).
"""

from __future__ import annotations

import os
from typing import Any

import mlflow.pyfunc

from finetune.inference import ARTIFACT


class ExportedModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from finetune.batching import Batcher
        from finetune.inference import Predictor

        self.predictor = Predictor(context.artifacts[ARTIFACT], backend=os.environ.get("FINETUNE_BACKEND", "auto"))
        largest = int(os.environ.get("FINETUNE_MAX_BATCH", "64"))
        wait_s = float(os.environ.get("FINETUNE_BATCH_WAIT_MS", "2")) / 1000
        self.answer = (Batcher(self.predictor.predict_inputs, wait_s=wait_s, max_items=largest) if largest > 0
                       else self.predictor.predict_inputs)

    # No type hints here: MLflow would read them as a schema of its own instead of the logged signature.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from finetune.errors import FinetuneError

        records = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        try:  # each request's records are checked on their own, before they join a batch
            inputs = self.predictor.codec.inputs(records, "request")
        except FinetuneError as error:  # a bad record: HTTP 400 with our one line, not a stack trace
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
        return self.answer(inputs)
