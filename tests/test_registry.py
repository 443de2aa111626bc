"""The MLflow registry: every export a version linked to its run; `champion` moves only to a
better model; the champion is served over real HTTP and predicted from by name."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from finetune.export import registry
from tests.conftest import build_export


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gate_store(tmp_path, monkeypatch) -> None:
    """A store of this test's own, also as MLflow's process-wide URI: an in-process stage run earlier
    in this worker set that, and it would win over the environment."""
    from finetune import tracking

    uri = f"sqlite:///{tmp_path / 'gate.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking.connect(uri)


def test_better_keeps_worse_and_tied_models_out(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    gate_store(tmp_path, monkeypatch)
    client = MlflowClient()
    client.create_registered_model("t-m")
    versions = [client.create_model_version("t-m", str(tmp_path)).version for _ in range(5)]
    first = registry.promote("t-m", versions[0], "f1", 0.80, "test", True, "better")
    assert first["promoted"] and first["reason"] == "no champion yet"
    worse = registry.promote("t-m", versions[1], "f1", 0.70, "test", True, "better")
    tie = registry.promote("t-m", versions[2], "f1", 0.80, "test", True, "better")
    other_split = registry.promote("t-m", versions[3], "f1", 0.99, "validation", True, "better")
    assert not worse["promoted"] and "does not beat champion v1's 0.8000" in worse["reason"]
    assert not tie["promoted"] and "ties" in tie["reason"]
    assert not other_split["promoted"] and "scored on 'test', not 'validation'" in other_split["reason"]
    assert client.get_model_version_by_alias("t-m", "champion").version == versions[0]
    better = registry.promote("t-m", versions[4], "f1", 0.85, "test", True, "better")
    assert better["promoted"] and better["champion_before"] == str(versions[0]) and better["champion_value"] == 0.8
    assert client.get_model_version_by_alias("t-m", "champion").version == versions[4]
    tags = client.get_model_version("t-m", versions[1]).tags
    assert tags["promotion"] == "kept out" and tags["eval_value"] == "0.7" and tags["eval_metric"] == "f1"
    lower_is_better = registry.promote("t-m", versions[1], "mse", 0.9, "test", False, "better")
    assert not lower_is_better["promoted"]  # 0.9 vs the champion's 0.85: higher mse is worse


def test_significant_needs_the_paired_interval_above_zero(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    gate_store(tmp_path, monkeypatch)
    client = MlflowClient()
    client.create_registered_model("t-m")
    versions = [client.create_model_version("t-m", str(tmp_path)).version for _ in range(4)]
    assert registry.promote("t-m", versions[0], "f1", 0.80, "test", True)["reason"] == "no champion yet"
    noise = {"difference": 0.01, "difference_ci_low": -0.02, "difference_ci_high": 0.04, "p_value": 0.4}
    higher = registry.promote("t-m", versions[1], "f1", 0.81, "test", True, comparison=noise)
    assert not higher["promoted"] and higher["reason"].endswith("p = 0.400: not significant"), "higher, but noise"
    unscored = registry.promote("t-m", versions[2], "f1", 0.95, "test", True)
    assert not unscored["promoted"] and "no paired comparison" in unscored["reason"]
    clear = {"difference": 0.05, "difference_ci_low": 0.02, "difference_ci_high": 0.08, "p_value": 0.002}
    better = registry.promote("t-m", versions[3], "f1", 0.85, "test", True, comparison=clear)
    assert better["promoted"] and "difference +0.0500, interval [+0.0200, +0.0800]" in better["reason"]
    assert client.get_model_version("t-m", versions[3]).tags["champion_difference_ci_low"] == "0.02"


def test_a_model_not_beating_its_trivial_baseline_is_never_champion(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    gate_store(tmp_path, monkeypatch)
    client = MlflowClient()
    client.create_registered_model("t-m")
    version = client.create_model_version("t-m", str(tmp_path)).version
    for policy in ("significant", "better", "always"):
        decision = registry.promote("t-m", version, "f1", 0.5, "test", True, policy, beats_baseline=False)
        assert not decision["promoted"] and "trivial baseline" in decision["reason"]
    assert client.get_model_version("t-m", version).tags["beats_baseline"] == "false"
    assert not client.get_registered_model("t-m").aliases, "no champion at all: there was none to keep"


def test_worse_retrain_stays_out_of_champion(tmp_path, monkeypatch, capsys):
    """Two real exports of one pair: the second, trained to be worse, is registered but not promoted."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    good = build_export(tmp_path / "w", "sarcasm", "export.onnx=false")
    first = json.loads(Path(good.paths.metrics).read_text())["validation"]["accuracy"]
    worse = build_export(tmp_path / "w", "sarcasm", "export.onnx=false", "train.learning_rate=1e-9",
                         "train.num_train_epochs=1")
    scored = json.loads(Path(worse.paths.metrics).read_text())["validation"]  # the gate reads validation
    second = scored["accuracy"]
    assert second < first
    out = capsys.readouterr().out
    assert "registry: sarcasm-tiny v1 is now champion: no champion yet" in out
    why = ("it does not beat the trivial baseline significantly" if not scored["beats_baseline"]
           else f"accuracy {second:.4f} against champion v1's")
    assert f"registry: sarcasm-tiny v2 stays out of champion: {why}" in out
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("sarcasm-tiny", "champion").version) == "1"
    v2 = client.get_model_version("sarcasm-tiny", "2")
    assert v2.tags["promotion"] == "kept out" and float(v2.tags["eval_value"]) == second
    assert v2.run_id == json.loads((Path(worse.paths.model) / "run.json").read_text())["run_id"]


def test_a_clearly_better_retrain_is_champion_by_a_paired_comparison(tmp_path, monkeypatch, capsys):
    """A weak champion (its alias set by hand: the registry itself would never promote a model at
    its baseline), then a good model: the export stage scores both on the same examples, and the
    paired interval above zero promotes the second."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    build_export(tmp_path / "w", "sarcasm", "export.onnx=false", "train.learning_rate=1e-9")
    MlflowClient().set_registered_model_alias("sarcasm-tiny", registry.ALIAS, "1")
    good = build_export(tmp_path / "w", "sarcasm", "export.onnx=false")
    out = capsys.readouterr().out
    assert "registry: sarcasm-tiny v2 is now champion: accuracy" in out and ": significant" in out, out
    version = MlflowClient().get_model_version("sarcasm-tiny", "2")
    assert float(version.tags["champion_difference_ci_low"]) > 0
    assert json.loads(Path(good.paths.metrics).read_text())["validation"]["beats_baseline"] is True


def test_predict_from_the_registry_by_alias(tiny_exports, monkeypatch, capsys):
    from finetune.predict import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tiny_exports.store("sarcasm"))
    assert main(["models:/sarcasm-tiny@champion", "totally local man"]) == 0
    by_alias = json.loads(capsys.readouterr().out)
    assert main([str(tiny_exports["sarcasm"].paths.export), "totally local man"]) == 0
    assert json.loads(capsys.readouterr().out) == by_alias
    assert main(["models:/sarcasm-tiny@nobody", "hi"]) == 1
    assert capsys.readouterr().err.startswith("error: models:/sarcasm-tiny@nobody: ")


@pytest.mark.slow
def test_rest_server_answers_with_the_cli_predictions(tiny_exports, tmp_path):
    """`mlflow models serve` on models:/<pair>@champion, real HTTP requests, stopped by its PID."""
    from finetune.inference import Predictor

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tiny_exports.store("ner")}
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([mlflow_cli, "models", "serve", "-m", "models:/ner-tiny@champion", "--env-manager",
                               "local", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "server did not start in 120 s"
            time.sleep(1)
        texts = ["patient takes aspirin 100 mg daily", "patient takes warfarin 5 mg"]
        body = json.dumps({"dataframe_records": [{"text": t} for t in texts]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = json.loads(response.read())["predictions"]
        expected = Predictor(tiny_exports["ner"].paths.export).predict([{"text": t} for t in texts], source="request")
        assert [p["tags"] for p in served] == [p["tags"] for p in expected]
        assert [[e["text"] for e in p["entities"]] for p in served] == \
            [[e["text"] for e in p["entities"]] for p in expected]
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                     data=json.dumps({"dataframe_records": [{"text": ""}]}).encode(),
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(bad, timeout=60)
        answer = json.loads(error.value.read())
        assert error.value.code == 400 and answer["message"].endswith("request, row 1, field 'text': empty text")
        assert "Traceback" not in json.dumps(answer)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
