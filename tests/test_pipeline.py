"""The five stage functions end to end on user files, with the tiny model and a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.config import compose
from finetune.errors import DataError, MissingInputError
from finetune.io import read_json
from finetune.pipeline.download import download
from finetune.pipeline.evaluate import evaluate
from finetune.pipeline.export import export
from finetune.pipeline.tokenize import tokenize
from finetune.pipeline.train import train
from tests.conftest import REPO, headline_rows, write_jsonl


def user_cfg(repo: Path, work: Path, *extra: str):
    train_file = write_jsonl(work / "headlines.jsonl", headline_rows(160))
    return compose(repo, ["task=sarcasm", "model=tiny", f"data.files.train={train_file}",
                          "data.split.first_n=120",
                          "data.split.validation_fraction=0.25", "train.num_train_epochs=6", "train.learning_rate=3e-3",
                          "train.per_device_train_batch_size=8",
                          "train.logging_steps=2", *extra], workdir=work)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One full run shared by the tests below (the slow part: ~20 s)."""
    work = tmp_path_factory.mktemp("work")
    import os

    os.umask(0o022)  # the common default; the test below checks outputs follow it
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    cfg = user_cfg(REPO, work)
    results = {"download": download(cfg), "tokenize": tokenize(cfg), "train": train(cfg),
               "evaluate": evaluate(cfg), "export": export(cfg)}
    return cfg, results


def test_stage_outputs(trained):
    cfg, results = trained
    manifest = read_json(Path(cfg.paths.raw) / "manifest.json")
    assert manifest["rows"] == {"train": 90, "validation": 30, "test": 40}
    assert manifest["source"] == "files" and len(manifest["files"][0]["sha256"]) == 64
    model_config = read_json(Path(cfg.paths.model) / "config.json")
    assert model_config["id2label"] == {"0": "not_sarcastic", "1": "sarcastic"}
    assert model_config["problem_type"] == "single_label_classification"
    saved = read_json(cfg.paths.metrics)
    assert saved["split"] == "test" and {"validation", "test"} <= set(saved), "each number names its role"
    assert saved["validation"]["n_eval"] == 30 and saved["tuned"]["temperature"] > 0
    metrics = saved["test"]
    assert {"accuracy", "f1", "per_class", "n_eval"} <= set(metrics)
    assert metrics["n_eval"] == 40 and set(metrics["per_class"]) == {"not_sarcastic", "sarcastic"}
    assert metrics["accuracy"] >= 0.9, "one marker word decides the label: a tiny model learns it"
    assert metrics["accuracy_ci_low"] <= metrics["accuracy"] <= metrics["accuracy_ci_high"] <= 1
    assert metrics["ci"] == {"level": 0.95, "resamples": 1000, "seed": 0, "unit": "examples", "units": 40}
    assert metrics["beats_baseline"] is True and metrics["baseline"]["name"].startswith("majority class (")
    assert metrics["baseline"]["difference_ci_low"] > 0
    lines = (Path(cfg.paths.predictions) / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 40 and set(json.loads(lines[0])) == {"id", "gold", "label", "score", "probabilities"}
    assert len((Path(cfg.paths.predictions) / "validation" / "predictions.jsonl").read_text().splitlines()) == 30
    calibration = metrics["calibration"]
    assert calibration["temperature"] == saved["tuned"]["temperature"] and calibration["units"] == 40
    assert 0 <= calibration["calibrated"]["ece"] <= 1 and calibration["raw"]["nll"] > 0
    assert (Path(cfg.paths.plots) / "eval" / "reliability.png").exists()
    assert (Path(cfg.paths.plots) / "eval" / "confusion_matrix.png").exists()
    assert (Path(cfg.paths.plots) / "train" / "learning_curves.png").exists()
    card = (Path(cfg.paths.export) / "README.md").read_text()
    assert "## Evaluation on `test` (40 examples)" in card and manifest["data_sha256"] in card
    assert f"divided by T = {calibration['temperature']:g}" in card
    assert json.loads((Path(cfg.paths.export) / "finetune.json").read_text())["settings"]["temperature"] == \
        calibration["temperature"], "the export applies the fitted temperature"
    assert f"| accuracy | {metrics['accuracy']:.4f} | [{metrics['accuracy_ci_low']:.4f}, " in card
    exported = {p.name for p in Path(cfg.paths.export).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "finetune.json", "model.onnx",
            "model.int8.onnx"} <= exported
    assert not [name for name in exported if name.endswith((".bin", ".pt", ".pkl"))], "safetensors only"
    assert not (Path(cfg.paths.export) / "run.json").exists()


def test_auto_switches_are_measured_once_and_do_not_change_the_training(trained, tmp_path):
    """The train summary says what `auto` chose and why; a second run with the same shape reads the
    cached choice and trains to the same loss (the measurement leaves the RNG where it was)."""
    cfg, results = trained
    summary = read_json(Path(cfg.paths.model) / "train_summary.json")
    assert summary["bf16_choice"] and summary["compile_choice"] and summary["bf16_fp32_tokens_per_s"] > 0
    assert summary["compile"] is False and "not priced" in summary["compile_choice"], "a run of seconds"
    again = user_cfg(REPO, tmp_path)
    download(again)
    tokenize(again)
    second = train(again)
    assert second["bf16_choice"].endswith("(cached)") and second["compile_choice"] == summary["compile_choice"]
    assert second["train_loss"] == results["train"]["train_loss"] and second["bf16"] == results["train"]["bf16"]


def test_best_checkpoint_is_kept_not_the_last(trained):
    cfg, results = trained
    history = (Path(cfg.paths.plots) / "train" / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    evals = [dict(zip(header, row.split(","), strict=True)) for row in history[1:]]
    accuracies = [float(r["eval_accuracy"]) for r in evals if r.get("eval_accuracy")]
    assert results["train"]["best_metric"] == pytest.approx(max(accuracies))


def test_mlflow_run_has_params_metrics_tags_artifacts(trained):
    import mlflow
    from mlflow.tracking import MlflowClient

    cfg, results = trained
    run_id = read_json(Path(cfg.paths.model) / "run.json")["run_id"]
    client = MlflowClient(tracking_uri=f"sqlite:///{Path(cfg.paths.root) / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    experiment = client.get_experiment_by_name("sarcasm")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "train creates the run, evaluate and export reopen it"
    assert all(r.info.status == "FINISHED" for r in runs)
    params = run.data.params
    assert params["train.learning_rate"] == "0.003" and params["model.name"] == "tiny"
    assert params["data.split.first_n"] == "120"
    assert all(len(v) <= 6000 for v in params.values())
    tags = run.data.tags
    assert tags["task"] == "sarcasm" and tags["model"] == "tiny"
    assert len(tags["data_sha256"]) == 64 and tags["git_commit"]
    loss = client.get_metric_history(run_id, "loss")
    assert len(loss) >= 5 and len({m.step for m in loss}) == len(loss)
    assert len(client.get_metric_history(run_id, "learning_rate")) == len(loss)
    saved = read_json(cfg.paths.metrics)
    assert run.data.metrics["test_accuracy"] == saved["test"]["accuracy"]
    assert run.data.metrics["validation_accuracy"] == saved["validation"]["accuracy"]
    assert run.data.metrics["temperature"] == saved["tuned"]["temperature"]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config", "metrics", "predictions", "eval", "train"} <= artifacts
    [version] = client.search_model_versions("name='sarcasm-tiny'")
    assert version.run_id == run_id, "the registered version links to the run that trained it"
    assert client.get_model_version_by_alias("sarcasm-tiny", "champion").version == version.version
    assert version.tags["promotion"] == "promoted" and version.tags["eval_split"].startswith("validation (data ")
    nested = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert "eval/confusion_matrix.png" in nested
    for switch in ("bf16", "compile", "eval_bf16"):  # `auto` by default: measured, and why is logged
        assert tags[switch] in ("true", "false") and tags[f"{switch}_choice"]
    assert run.data.metrics["bf16_fp32_tokens_per_s"] > 0 and run.data.metrics["eval_bf16_fp32_tokens_per_s"] > 0
    assert mlflow.active_run() is None


def test_missing_input_names_the_command(repo, tmp_path):
    cfg = compose(repo, ["task=sarcasm", "model=tiny"], workdir=tmp_path)
    with pytest.raises(MissingInputError) as error:
        train(cfg)
    assert "dvc repro tokenize@sarcasm-tiny" in str(error.value)
    assert "python stages/tokenize_data.py task=sarcasm model=tiny" in str(error.value)


def test_bad_input_leaves_previous_output_untouched(repo, tmp_path):
    cfg = user_cfg(repo, tmp_path)
    download(cfg)
    before = read_json(Path(cfg.paths.raw) / "manifest.json")
    bad = tmp_path / "bad.jsonl"
    rows = headline_rows(160)
    rows[57]["is_sarcastic"] = 7
    write_jsonl(bad, rows)
    bad_cfg = user_cfg(repo, tmp_path, f"data.files.train={bad}")
    with pytest.raises(DataError, match=r"bad.jsonl, line 58, field 'is_sarcastic': label 7 is not in the label set"):
        download(bad_cfg)
    assert read_json(Path(cfg.paths.raw) / "manifest.json") == before
    leftovers = [p.name for p in Path(cfg.paths.raw).parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_outputs_follow_the_umask(trained):
    """Private temporary folders become what the umask allows, so a teammate can read an export."""
    import stat

    cfg, _ = trained
    for folder in (Path(cfg.paths.export), Path(cfg.paths.model), Path(cfg.paths.tokenized)):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
        for path in folder.rglob("*"):
            assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path
    assert stat.S_IMODE(Path(cfg.paths.metrics).stat().st_mode) == 0o644


def test_the_test_split_has_its_own_cap(repo, tmp_path):
    """data.max_test_samples sizes the reported split apart from the validation run every epoch."""
    cfg = user_cfg(repo, tmp_path, "data.max_eval_samples=10", "data.max_test_samples=25")
    download(cfg)
    stats = tokenize(cfg)
    assert (stats["validation"]["examples"], stats["test"]["examples"]) == (10, 25)
    unset = user_cfg(repo, tmp_path, "data.max_eval_samples=10")
    assert tokenize(unset)["test"]["examples"] == 10
