"""The exported folder as an MLflow pyfunc model: its predictions are `finetune-predict`'s.

`mlflow models serve -m models:/<task>-<model>@champion --env-manager local` answers
`POST /invocations` with `{"dataframe_records": [{"text": ...}]}` (QA: question + context).
FINETUNE_BACKEND (torch, onnx, onnx-int8) picks the backend of a served model; torch by default.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow.pyfunc

from finetune.inference import ARTIFACT


class ExportedModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from finetune.inference import Predictor

        self.predictor = Predictor(context.artifacts[ARTIFACT], backend=os.environ.get("FINETUNE_BACKEND", "torch"))

    # No type hints here: MLflow would read them as a schema of its own instead of the logged signature.
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from finetune.errors import FinetuneError

        records = model_input.to_dict("records") if hasattr(model_input, "to_dict") else list(model_input)
        try:
            return self.predictor.predict(records, source="request")
        except FinetuneError as error:  # a bad record: HTTP 400 with our one line, not a stack trace
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
