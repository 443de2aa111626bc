"""Train runs killed for real resume from their last checkpoint in the same MLflow run, two runs
of one pair never share checkpoints, and SIGTERM ends a run KILLED in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, headline_rows, tokenized_headlines, write_jsonl

PAIR = "sarcasm-tiny"


def args(work: Path) -> list[str]:
    return ["task=sarcasm", "model=tiny", f"data.files.train={work / 'headlines.jsonl'}", "data.split.first_n=760",
            "data.max_length=32", "train.num_train_epochs=4", "train.per_device_train_batch_size=8",
            "train.learning_rate=3e-3", "train.disable_tqdm=true", "train.logging_steps=25",
            "train.save_total_limit=2", "train.torch_threads=1", f"paths.inputs={work}"]


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("resume")
    return tokenized_headlines(work, 900, args(work))


def start(work: Path, uri: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    return subprocess.Popen([sys.executable, str(REPO / "stages" / "train.py"), *args(work), *extra], cwd=work,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(work: Path, process: subprocess.Popen, timeout: float = 300) -> Path:
    """The first whole checkpoint (its trainer_state.json written last), once it exists."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sorted((work / ".checkpoints" / PAIR).glob("checkpoint-*/trainer_state.json"))
        if found:
            return found[0].parent
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def training_copy(tokenized: Path, tmp_path: Path) -> tuple[Path, str, subprocess.Popen, Path]:
    """A copy of the tokenized workspace, a train run started in it, and its first whole checkpoint."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(tokenized, work)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    process = start(work, uri)
    return work, uri, process, wait_for_checkpoint(work, process)


def summary(work: Path) -> dict:
    from finetune.io import read_json

    return read_json(work / "models" / PAIR / "train_summary.json")


def runs(uri: str) -> list:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=["sarcasm"], output_format="list")


@pytest.fixture(scope="module")
def reference(tokenized: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted run of the same config and seed."""
    work = tmp_path_factory.mktemp("reference")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    done = start(tokenized, uri, f"hydra.run.dir={work}")
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err[-3000:]
    return summary(work) | {"weights": (work / "models" / PAIR / "model.safetensors").read_bytes()}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_run_resumes_from_its_checkpoint_in_the_same_mlflow_run(tokenized, reference, tmp_path, sig):
    work, uri, first, checkpoint = training_copy(tokenized, tmp_path)
    first.send_signal(sig)
    out, err = first.communicate(timeout=120)
    assert first.returncode == (-9 if sig == signal.SIGKILL else 143)
    [run] = runs(uri)
    if sig == signal.SIGTERM:
        assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)" and "Traceback" not in err
        assert run.info.status == "KILLED"
    else:
        assert run.info.status == "RUNNING"  # nobody could end it
    assert not (work / "models" / PAIR).exists()  # no output from a killed run

    second = start(work, uri)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    assert f"resuming {PAIR} from" in out + err and checkpoint.name in out + err
    [resumed] = runs(uri)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    result = summary(work)
    assert result["global_step"] == reference["global_step"]
    assert result["best_step"] == reference["best_step"]
    assert result["best_metric"] == reference["best_metric"]  # exactly: the same batches, RNG states and steps
    assert (work / "models" / PAIR / "model.safetensors").read_bytes() == reference["weights"]
    assert not (work / ".checkpoints" / PAIR).exists()  # scratch goes with success


def test_a_second_run_of_the_pair_fails_at_once_naming_the_first(tokenized, tmp_path):
    work, uri, first, _ = training_copy(tokenized, tmp_path)
    second = start(work, uri)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 1
    errors = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]  # data keys: not train's
    assert errors == [f"error: {work / '.checkpoints' / PAIR} is in use by another train run of "
                                        f"this pair (pid {first.pid}, since {err.split('since ')[1].split(')')[0]}); "
                                        "wait for it to end, or stop it"]
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]


def claimed(scratch: Path, before: dict, since: float) -> bool:
    """Whether a new run has claimed the scratch folder (a resume.json other than `before`) and saved
    a checkpoint there after `since`."""
    from finetune.io import read_json

    try:
        return read_json(scratch / "resume.json") != before and any(
            p.stat().st_mtime > since for p in scratch.glob("checkpoint-*/trainer_state.json"))
    except (OSError, ValueError):  # being deleted or written right now
        return False


def test_checkpoints_of_another_config_are_never_resumed(tokenized, tmp_path):
    from finetune.io import read_json

    work, uri, first, _ = training_copy(tokenized, tmp_path)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    scratch = work / ".checkpoints" / PAIR
    before = read_json(scratch / "resume.json")
    started = time.time()
    second = start(work, uri, "train.learning_rate=1e-3")
    # The decision is made before the first step: once the new run has saved a checkpoint of its own
    # (newer than its start, in a scratch folder it claimed), it has decided; it need not train on.
    while not claimed(scratch, before, started):
        assert second.poll() is None and time.time() < started + 300, second.communicate()
        time.sleep(0.05)
    second.send_signal(signal.SIGTERM)
    out, err = second.communicate(timeout=120)
    assert "resuming" not in out + err and "Traceback" not in err, err[-3000:]
    assert read_json(scratch / "resume.json")["fingerprint"] != before["fingerprint"]
    assert len(runs(uri)) == 2


def test_a_repro_killed_mid_training_leaves_no_output_and_the_next_one_completes(tmp_path):
    """SIGKILL to `dvc repro` and its stage while train writes checkpoints: no half output is ever
    served, and the next `dvc repro` resumes training and completes."""
    import yaml

    from tests.conftest import make_project, ran_stages, sh

    data = write_jsonl(tmp_path / "headlines.jsonl", headline_rows(900))
    project = make_project(tmp_path / "repo", data, export={"onnx": False}, weight_decay=0.0)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["split"] = {"first_n": 800}
    params["train"].update(num_train_epochs=3, per_device_train_batch_size=8)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "commit", "-qam", "a longer training", cwd=project)
    repro = subprocess.Popen(["dvc", "repro"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    checkpoints = project / ".checkpoints" / "sarcasm-tiny"
    deadline = time.time() + 300
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
        assert repro.poll() is None and time.time() < deadline, repro.communicate()[0][-3000:]
        time.sleep(0.05)
    os.killpg(repro.pid, signal.SIGKILL)  # dvc and the stage it runs
    repro.wait(timeout=60)
    assert not (project / "models" / "sarcasm-tiny").exists()
    again = sh("dvc", "repro", cwd=project)
    assert "resuming sarcasm-tiny from" in again.stdout + again.stderr
    assert ran_stages(again.stdout)[-3:] == ["train@sarcasm-tiny", "evaluate@sarcasm-tiny", "export@sarcasm-tiny"]
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=project).stdout
    assert not checkpoints.exists()


def test_an_unreadable_newest_checkpoint_resumes_from_the_one_before(tmp_path):
    """A crash while the newest trainer_state.json was written leaves it cut: the older whole
    checkpoint is resumed from, not every checkpoint deleted."""
    from finetune.checkpoints import RESUME, STATE, scratch
    from finetune.io import write_json

    folder = tmp_path / ".checkpoints" / "pair"
    for step in (4, 8):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"weights")
    write_json(folder / RESUME, {"fingerprint": "f1", "run_id": "r1"})
    write_json(folder / "checkpoint-4" / STATE, {"log_history": [{"step": 4, "loss": 0.5}]})
    (folder / "checkpoint-8" / STATE).write_text('{"log_history": [{"step": 4, "lo')  # cut mid-write
    with scratch(folder, "f1") as work:
        assert work.resume_from == folder / "checkpoint-4" and work.run_id == "r1"
        assert work.log_history == [{"step": 4, "loss": 0.5}]
        assert not (folder / "checkpoint-8").exists() and (folder / "checkpoint-4" / "model.safetensors").exists()
