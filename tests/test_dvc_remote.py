"""Sharing every stage's outputs through DVC remotes: an S3-compatible store (moto's server on
127.0.0.1, through dvc-s3) and a local directory. A fresh clone pulls them and has nothing to run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import copy_project, free_port, ran_stages

pytestmark = pytest.mark.slow

BUCKET = "finetune-dvc"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True, env=dict(os.environ, **CREDENTIALS))
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def s3_client(url: str):
    import boto3

    return boto3.client("s3", endpoint_url=url, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                        region_name=CREDENTIALS["AWS_DEFAULT_REGION"])


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory):
    """moto's S3 server on 127.0.0.1 with an empty bucket; stopped by its PID afterwards."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    s3_client(url).create_bucket(Bucket=BUCKET)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, reproduced_project: dict) -> dict:
    """A reproduced project, its lock file and metrics committed, its cache pushed to both remotes."""
    root = tmp_path_factory.mktemp("remote")
    project = copy_project(reproduced_project["project"], root / "repo")
    built = reproduced_project["ran"]
    assert ran_stages(dvc("repro", cwd=project).stdout) == [], "the copy is reproduced as it is"
    dvc("remote", "add", "-d", "s3", f"s3://{BUCKET}/cache", cwd=project)
    dvc("remote", "modify", "s3", "endpointurl", s3_endpoint, cwd=project)
    dvc("remote", "add", "shared", str(root / "shared-cache"), cwd=project)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "outputs and remotes"], cwd=project, check=True)
    pushes = {remote: dvc("push", "-r", remote, cwd=project).stdout for remote in ("s3", "shared")}
    return {"root": root, "project": project, "built": built, "pushes": pushes}


def test_push_sends_every_stage_output_to_both_remotes(pushed, s3_endpoint):
    assert pushed["built"] == ["download@sarcasm", "tokenize@sarcasm-tiny", "train@sarcasm-tiny",
                               "evaluate@sarcasm-tiny", "export@sarcasm-tiny"]
    for remote in ("s3", "shared"):
        assert "pushed" in pushed["pushes"][remote]
        assert f"Cache and remote '{remote}' are in sync" in dvc("status", "-c", "-r", remote,
                                                                 cwd=pushed["project"]).stdout
    stored = s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix="cache/")["KeyCount"]
    local = sum(1 for path in (pushed["root"] / "shared-cache").rglob("*") if path.is_file())
    assert stored == local > 20, "the same objects in both remotes: data, features, model, exports, plots"


@pytest.mark.parametrize("remote", ["s3", "shared"])
def test_a_fresh_clone_pulls_every_output_and_has_nothing_to_reproduce(pushed, remote, tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(pushed["project"]), str(clone)], check=True)
    assert not (clone / "models").exists() and not (clone / "data" / "raw").exists()
    dvc("pull", "-r", remote, cwd=clone)
    for output in ("data/raw/sarcasm", "data/tokenized/sarcasm-tiny", "models/sarcasm-tiny/model.safetensors",
                   "exports/sarcasm-tiny/model.onnx", "predictions/sarcasm-tiny", "plots/sarcasm-tiny/train"):
        assert (clone / output).exists(), output
    assert "Data and pipelines are up to date" in dvc("status", cwd=clone).stdout
    assert ran_stages(dvc("repro", cwd=clone).stdout) == [], "everything came from the remote"
    assert f"Cache and remote '{remote}' are in sync" in dvc("status", "-c", "-r", remote, cwd=clone).stdout
