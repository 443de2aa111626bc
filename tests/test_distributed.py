"""A train stage under `torchrun` with 2 CPU processes (gloo): the Trainer's DDP trains (with
micro-batches accumulated on each process), the main process alone writes outputs and the one
MLflow run, and the logged loss is the batch mean."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from finetune import distributed
from finetune.metrics import reported
from tests.conftest import REPO, run_stage, tokenized_headlines

PAIR = "sarcasm-tiny"


def args(work: Path) -> list[str]:
    return ["task=sarcasm", "model=tiny", f"data.files.train={work / 'headlines.jsonl'}", "data.split.first_n=444",
            "data.split.validation_fraction=0.1",
            "data.max_length=32", "train.num_train_epochs=2", "train.per_device_train_batch_size=8",
            "train.learning_rate=3e-3", "train.disable_tqdm=true", "train.logging_steps=5",
            "train.class_weights=balanced", "train.max_batch_tokens=128", f"paths.inputs={work}"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("ddp")
    tokenized_headlines(work, 560, args(work))
    before = {path.name for path in work.iterdir()}
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                           str(REPO / "stages" / "train.py"), *args(work)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"work": work, "uri": uri, "before": before, "output": done.stdout + done.stderr}


def test_the_main_process_alone_writes_outputs_and_the_mlflow_run(trained):
    import mlflow

    from finetune.io import read_json

    work = trained["work"]
    summary = read_json(work / "models" / PAIR / "train_summary.json")
    assert summary["processes"] == 2 and summary["train_examples"] == 400
    # micro-batches of 4 rows (128 tokens / length 32), 2 accumulated per step on each process
    assert summary["global_step"] == 2 * math.ceil(400 / (2 * 8)), "2 epochs of global batches of 2 x 8"
    created = {path.name for path in work.iterdir()} - trained["before"]
    assert created <= {"models", "plots", ".checkpoints", "mlflow.db", "mlflow.db.lock", "mlruns"}, \
        "no Hydra output, run or multirun folder from any process"
    assert list((work / ".checkpoints").iterdir()) == [work / ".checkpoints" / f"{PAIR}.lock"]
    mlflow.set_tracking_uri(trained["uri"])
    runs = mlflow.search_runs(experiment_names=["sarcasm"], output_format="list")
    assert [run.info.status for run in runs] == ["FINISHED"], "one run, from the main process"
    assert runs[0].data.params["train.class_weights"] == "balanced"
    assert trained["output"].count(f"trained {PAIR}") == 1, "one copy of each log line"


def test_the_logged_loss_is_the_batch_mean_not_multiplied_by_the_processes(trained):
    import mlflow

    # A fresh 2-label head predicts ~uniformly: its first loss is ln 2. The Trainer's default
    # (average_tokens_across_devices) would report 2 ln 2 with a family loss on 2 processes.
    mlflow.set_tracking_uri(trained["uri"])
    (run,) = mlflow.search_runs(experiment_names=["sarcasm"], output_format="list")
    history = mlflow.MlflowClient(trained["uri"]).get_metric_history(run.info.run_id, "loss")
    first = min(history, key=lambda point: point.step)
    assert first.step == 1 and abs(first.value - math.log(2)) < 0.1, first.value


def test_validation_during_ddp_training_scores_examples_in_their_order(trained):
    """The Trainer gathers each process's eval batches; decoding maps outputs to examples by
    position. The evaluate stage (one process, the same best model) must agree."""
    from finetune.io import read_json

    work = trained["work"]
    done = run_stage("evaluate_model.py", *args(work), "data.eval_split=validation", cwd=work, uri=trained["uri"])
    assert done.returncode == 0, done.stderr[-2000:]
    best = read_json(work / "models" / PAIR / "train_summary.json")["best_metric"]
    evaluated = reported(read_json(work / "metrics" / f"{PAIR}.json"))
    assert best > 0.7, "the model learned: a shuffled order would score near chance"
    assert evaluated["split"] == "validation" and abs(evaluated["accuracy"] - best) <= 1 / 44 + 1e-9, best


def test_rank_and_world_size_come_from_the_launcher(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (1, 2, False)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert distributed.is_main() and distributed.shared("value") == "value"
