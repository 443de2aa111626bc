"""The MLflow registry: each export is a new version of `<task>-<model>`; a promotion gate moves
the alias `champion` only to a version that beats the current one on the same eval split: by a
paired bootstrap on the same examples (`significant`, the default) or by any margin (`better`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.intervals import clearly_better

ALIAS = "champion"
POLICIES = ("significant", "better", "always", "never")


def log_model(export_dir: Path, name: str, family_fields: tuple[str, ...]) -> Any:
    """Log the export folder as a pyfunc model of the active run and register it as `name`."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    import finetune
    from finetune.export.mlflow_model import ARTIFACT, ExportedModel

    signature = ModelSignature(inputs=Schema([ColSpec("string", field) for field in family_fields]))
    return mlflow.pyfunc.log_model(
        name="model", python_model=ExportedModel(), artifacts={ARTIFACT: str(export_dir)},
        code_paths=[str(Path(finetune.__file__).parent)], signature=signature, registered_model_name=name,
        pip_requirements=_requirements())


def register(request: dict[str, Any]) -> dict[str, Any]:
    """Log `request["export"]` as a new version of `request["name"]` and decide its promotion
    (the other keys are `promote`'s); the export stage's request, or one the offline sync replays."""
    export = Path(request["export"])
    if not export.is_dir():
        raise FinetuneError(f"{export}: the export folder to register is gone "
                            f"(run `dvc repro export@{request['name']}`)")
    info = log_model(export, request["name"], tuple(request["fields"]))
    decision = {key: request[key] for key in ("metric", "value", "split", "greater_is_better", "policy",
                                              "beats_baseline", "comparison")}
    return promote(request["name"], info.registered_model_version, **decision)


def summary(name: str, decision: dict[str, Any]) -> str:
    """The one line a registration prints."""
    return (f"registry: {name} v{decision['version']} "
            f"{'is now champion' if decision['promoted'] else 'stays out of champion'}: {decision['reason']}")


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for package in ("torch", "transformers", "tokenizers", "datasets", "onnxruntime", "mlflow", "omegaconf",
                    "numpy", "pandas"):
        try:
            pinned.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pinned


def champion(name: str) -> Any:
    """The model version the alias `champion` points to, or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def promote(name: str, version: str, metric: str, value: float, split: str, greater_is_better: bool,
            policy: str = "significant", beats_baseline: bool | None = None,
            comparison: dict[str, float] | None = None) -> dict[str, Any]:
    """Decide whether `version` becomes `champion`; record the decision on the version.

    A champion scored on another split is not comparable and stays. significant: only when the
    paired `comparison` with the champion on the same examples (candidate minus champion: its
    difference, interval and p-value) lies wholly on the better side of zero; better: when `value`
    beats the champion's by any margin (a tie keeps the old one); always / never: as named. A model
    that does not beat its trivial baseline significantly (`beats_baseline` False) never becomes
    champion.
    """
    from mlflow import MlflowClient

    if policy not in POLICIES:
        raise FinetuneError(f"export.promotion='{policy}': use one of {', '.join(POLICIES)}")
    client = MlflowClient()
    current = champion(name)
    old_value = old_split = None
    if current is not None:
        old_split = current.tags.get("eval_split")
        old_value = float(current.tags["eval_value"]) if "eval_value" in current.tags else None
    if beats_baseline is False:
        promoted, reason = False, "it does not beat the trivial baseline significantly (metrics: baseline)"
    elif policy in ("always", "never"):
        promoted, reason = policy == "always", f"export.promotion={policy}"
    elif current is None or old_value is None:
        promoted, reason = True, "no champion yet"
    elif old_split != split:
        promoted, reason = False, f"champion v{current.version} was scored on '{old_split}', not '{split}'"
    elif policy == "significant":
        promoted, reason = significant(metric, value, old_value, current.version, comparison, greater_is_better)
    else:
        better = value > old_value if greater_is_better else value < old_value
        promoted = better
        word = "beats" if better else ("ties" if value == old_value else "does not beat")
        reason = f"{metric} {value:.4f} {word} champion v{current.version}'s {old_value:.4f}"
    decision = {"version": str(version), "promoted": promoted, "reason": reason, "metric": metric,
                "comparison": comparison, "value": value, "split": split,
                "champion_before": str(current.version) if current else None, "champion_value": old_value}
    for key, tag in (("eval_metric", metric), ("eval_value", repr(float(value))), ("eval_split", split),
                     ("promotion", "promoted" if promoted else "kept out"), ("promotion_reason", reason),
                     *([("beats_baseline", str(beats_baseline).lower())] if beats_baseline is not None else []),
                     *[(f"champion_{key}", repr(float(v))) for key, v in (comparison or {}).items()]):
        client.set_model_version_tag(name, str(version), key, tag)
    if promoted:
        client.set_registered_model_alias(name, ALIAS, str(version))
    return decision


def significant(metric: str, value: float, old_value: float, old_version: str, comparison: dict[str, float] | None,
                greater_is_better: bool) -> tuple[bool, str]:
    """(promoted, reason) of the `significant` rule: the paired interval wholly on the better side."""
    if comparison is None:
        return False, f"no paired comparison with champion v{old_version} on the same examples"
    low, high = comparison["difference_ci_low"], comparison["difference_ci_high"]
    promoted = clearly_better(comparison, greater_is_better)
    return promoted, (f"{metric} {value:.4f} against champion v{old_version}'s {old_value:.4f} on the same examples: "
                      f"difference {comparison['difference']:+.4f}, interval [{low:+.4f}, {high:+.4f}], "
                      f"p = {comparison['p_value']:.3f}: {'significant' if promoted else 'not significant'}")
