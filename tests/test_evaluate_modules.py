"""finetune.evaluate_modules: each family's scoring opened by `evaluate.load` in a process without a
network gives the evaluate stage's numbers on the stage's own predictions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finetune import evaluate_modules
from finetune.metrics import reported, scalar_metrics
from finetune.tasks import recipe

# task of the tiny exports -> the module that scores its family
MODULES = {"sarcasm": "classification", "mrpc": "classification", "goemotions": "multi_label",
           "stsb": "regression", "ner": "token_classification", "qa": "question_answering"}

SCORE = """
import json, sys
import evaluate
from finetune import evaluate_modules
results = {}
for task, job in json.load(open(sys.argv[1])).items():
    metric = evaluate.load(evaluate_modules.path(job.pop("module")))
    results[task] = metric.compute(**job)
print(json.dumps(results))
"""


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def conll_tags(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) word tags of predictions.conll, one list per sentence."""
    gold, predicted = [], []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [line.rsplit(" ", 2) for line in block.splitlines() if line]
        if lines:
            gold.append([g for _, g, _ in lines])
            predicted.append([p for _, _, p in lines])
    return gold, predicted


def module_inputs(task: str, cfg, metrics: dict) -> dict:
    """What a user holding the stage's prediction files would pass to `compute`."""
    out = Path(cfg.paths.predictions)
    if task in ("sarcasm", "mrpc"):
        written = rows(out / "predictions.jsonl")
        return {"predictions": [r["label"] for r in written], "references": [r["gold"] for r in written],
                "labels": list(metrics["per_class"])}
    if task == "goemotions":
        written = rows(out / "predictions.jsonl")
        return {"predictions": [r["labels"] for r in written], "references": [r["gold"] for r in written],
                "labels": list(metrics["per_label"])}
    if task == "stsb":
        written = rows(out / "predictions.jsonl")
        return {"predictions": [r["value"] for r in written], "references": [r["gold"] for r in written]}
    if task == "ner":
        gold, predicted = conll_tags(out / "predictions.conll")
        return {"predictions": predicted, "references": gold}
    from finetune.pipeline.common import load_tokenized

    examples = load_tokenized(cfg)[0][cfg.data.eval_split]
    answers = json.loads((out / "predictions.json").read_text())
    return {"predictions": [{"id": i, "prediction_text": a} for i, a in answers.items()],
            "references": [{"id": i, "answers": {"text": list(a["text"]), "answer_start": list(a["answer_start"])}}
                           for i, a in zip(examples["id"], examples["answers"], strict=True)]}


def no_network(command: list[str]) -> list[str]:
    """`command` in a network namespace of its own (loopback only) where the system allows one."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n", *command]
    pytest.skip("cannot make a process without network here (unshare -n is not permitted)")


def test_evaluate_load_offline_matches_the_evaluate_stage(tiny_exports, tmp_path):
    jobs, expected = {}, {}
    for task, module in MODULES.items():
        cfg = tiny_exports[task]
        metrics = reported(json.loads(Path(cfg.paths.metrics).read_text()))
        jobs[task] = {"module": module, **module_inputs(task, cfg, metrics)}
        expected[task] = (metrics, recipe(cfg).primary_metric)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"))  # an empty module cache: nothing to fall back on
    done = subprocess.run(no_network([sys.executable, "-c", SCORE, str(tmp_path / "jobs.json")]),
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    for task, (metrics, primary) in expected.items():
        stage, module = scalar_metrics(metrics), scalar_metrics(results[task])
        shared = set(stage) & set(module)
        assert primary in shared, (task, sorted(module))
        for key in shared:
            # predictions files round their values to 6 digits
            assert module[key] == pytest.approx(stage[key], rel=1e-4, abs=1e-5), (task, key)


def test_every_module_is_a_folder_evaluate_can_open():
    for name in evaluate_modules.NAMES:
        assert (Path(evaluate_modules.path(name)) / f"{name}.py").is_file()
    with pytest.raises(ValueError, match="no evaluate module 'seqeval'"):
        evaluate_modules.path("seqeval")


def test_label_lists_need_their_names(tmp_path):
    import evaluate

    metric = evaluate.load(evaluate_modules.path("multi_label"))
    with pytest.raises(ValueError, match="labels: the label names are needed"):
        metric.compute(predictions=[["joy"]], references=[["joy"]])
    result = metric.compute(predictions=[["joy"], []], references=[["joy"], ["anger"]], labels=["joy", "anger"])
    assert result["micro_f1"] == pytest.approx(2 / 3) and result["per_label"]["anger"]["support"] == 1
