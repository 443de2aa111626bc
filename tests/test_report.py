"""The comparison report on a real store: leaderboards, plots, a self-contained page, the report run."""

from __future__ import annotations

import re
import shutil

import mlflow
import pytest

from finetune.report import Run, by_model, rank
from tests.conftest import run_stage


@pytest.fixture(scope="module")
def report(tiny_sweep, tmp_path_factory):
    work = tmp_path_factory.mktemp("report")
    shutil.copy(tiny_sweep["work"] / "mlflow.db", work / "mlflow.db")  # the report logs a run: copy the store
    uri = f"sqlite:///{work / 'mlflow.db'}"
    issues = work / "predictions" / "sarcasm-tiny"
    issues.mkdir(parents=True)
    (issues / "label_issues.csv").write_text(
        "id,text,given_label,suggested_label,confidence,given_probability,margin\n"
        "17,totally local man finds plan,not_sarcastic,sarcastic,0.97,0.03,0.94\n", encoding="utf-8")
    done = run_stage("report.py", f"out={work / 'reports'}", f"workspace={work}", cwd=work, uri=uri)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"dir": work / "reports", "uri": uri, "stdout": done.stdout}


def test_report_files(report):
    names = sorted(p.name for p in report["dir"].iterdir())
    assert {"index.html", "leaderboard.md", "sarcasm-by-model.png", "sarcasm-curves.png",
            } <= set(names)
    assert any(re.fullmatch(r"sweep-pipeline-.*-train_learning_rate\.png", n) for n in names)
    assert not any(n.endswith("-history.png") for n in names)  # a grid, not an Optuna study
    assert "report: 4 runs, 1 sweeps" in report["stdout"]


def test_leaderboard_is_best_first_with_key_params_and_links(report):
    text = (report["dir"] / "leaderboard.md").read_text()
    lines = text.split("\n## ", 2)[1].splitlines()  # the first task's section: its leaderboard
    header = next(line for line in lines if line.startswith("| # |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert {"lr", "sweep / DVC exp", "best validation accuracy (training)", "test accuracy (evaluate)",
            "95% interval", "test units", "temperature (fitted on validation)", "train s", "samples/s",
            "commit"} <= set(columns)
    assert not [c for c in columns if c.startswith("n_")], "counts are not secondary scores"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if re.match(r"\| \d+ \|", line)]
    assert len(rows) == 4
    values = [float(row[columns.index("best validation accuracy (training)")]) for row in rows]
    assert values == sorted(values, reverse=True)
    assert {row[columns.index("model")] for row in rows} == {"tiny", "minilm"}
    evaluated = columns.index("test accuracy (evaluate)")
    assert {row[columns.index("test units")] for row in rows} == {"40"}, "a count, as a whole number"
    for row in rows:  # the evaluate stage's interval brackets the value it reports
        low, high = map(float, row[columns.index("95% interval")].strip("[]").split(", "))
        assert low <= float(row[evaluated]) <= high
    html = (report["dir"] / "index.html").read_text()
    assert html.count('<img alt="') >= 3 and not re.search(r'<img[^>]+src="(?!data:image/png;base64,)', html)
    assert len(re.findall(r'href="http://127\.0\.0\.1:5000/#/experiments/\d+/runs/[0-9a-f]{32}"', html)) == 4


def test_label_issues_are_shown_and_copied(report):
    page = (report["dir"] / "index.html").read_text()
    assert "sarcasm-tiny: the 1 surest of 1 label issues (validation split" in page
    assert "totally local man finds plan" in page
    assert (report["dir"] / "sarcasm-tiny" / "label_issues.csv").read_text().startswith("id,text,given_label")


def test_the_report_is_logged_to_a_report_run(report):
    mlflow.set_tracking_uri(report["uri"])
    experiment = mlflow.get_experiment_by_name("reports")
    runs = mlflow.search_runs([experiment.experiment_id])
    assert list(runs["tags.mlflow.runName"]) == ["report"] and list(runs["status"]) == ["FINISHED"]
    files = {f.path for f in mlflow.MlflowClient().list_artifacts(runs.iloc[0]["run_id"], "report")}
    assert {"report/index.html", "report/leaderboard.md"} <= files


def test_filters_and_bad_arguments_are_one_line(report, tmp_path):
    done = run_stage("report.py", "experiment=nope", f"out={tmp_path / 'r'}", cwd=tmp_path, uri=report["uri"])
    assert done.returncode == 1 and done.stderr.strip() == (
        f"error: experiment=nope: no such experiment in {report['uri']}")
    assert not (tmp_path / "r").exists()
    done = run_stage("report.py", "sweeps=x", cwd=tmp_path, uri=report["uri"])
    assert done.returncode == 2 and done.stderr.strip().startswith("error: 'sweeps' is not a config key")
    done = run_stage("report.py", "top=0", cwd=tmp_path, uri=report["uri"])
    assert done.returncode == 1 and done.stderr.strip() == "error: top=0 is not a positive whole number"


def test_two_runs_compared_by_a_paired_bootstrap_on_the_same_examples(report, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=report["uri"])
    runs = client.search_runs([client.get_experiment_by_name("sarcasm").experiment_id],
                              order_by=["attributes.start_time"])
    a, b = [run.info.run_id for run in runs if run.data.tags.get("sweep_role") != "parent"][:2]
    done = run_stage("report.py", f"compare={a},{b}", f"out={tmp_path}", cwd=tmp_path, uri=report["uri"])
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"compare: \S+ minus \S+ on test \(\d+ examples\): accuracy [+-]\d\.\d{4}, 95% interval "
                        r"\[[+-]\d\.\d{4}, [+-]\d\.\d{4}\], p = \d\.\d{3}: .+", line), line
    assert (tmp_path / f"compare-{a[:8]}-{b[:8]}.md").exists()
    itself = run_stage("report.py", f"compare={a},{a}", f"out={tmp_path}", cwd=tmp_path, uri=report["uri"])
    assert "accuracy +0.0000, 95% interval [+0.0000, +0.0000]" in itself.stdout
    assert itself.stdout.strip().endswith("not a significant difference")
    missing = run_stage("report.py", f"compare={a},{'0' * 32}", f"out={tmp_path}", cwd=tmp_path, uri=report["uri"])
    assert missing.returncode == 1 and missing.stderr.startswith(f"error: compare: run {'0' * 32} has no saved")
    assert len(missing.stderr.strip().splitlines()) == 1


def _run(name: str, value: float | None, *, greater: bool = True, status: str = "FINISHED", model: str = "m",
         seed: str = "1", lr: str = "0.1") -> Run:
    return Run(name, "0", name, status, 0, {"train.seed": seed, "train.learning_rate": lr},
               {} if value is None else {"best_metric": value},
               {"model": model, "primary_metric": "mse", "greater_is_better": str(greater).lower()})


def test_rank_follows_the_metric_direction_and_puts_unfinished_runs_last():
    runs = [_run("a", 0.3, greater=False), _run("b", 0.1, greater=False),
            _run("c", 0.05, greater=False, status="FAILED"), _run("d", None, greater=False)]
    assert [r.name for r in rank(runs)] == ["b", "a", "c", "d"]


def test_by_model_keeps_the_best_configuration_across_its_seeds():
    runs = [_run("a", 0.8, seed="1"), _run("b", 0.6, seed="2"), _run("c", 0.75, seed="1", lr="0.2"),
            _run("d", 0.74, seed="2", lr="0.2"), _run("e", 0.5, model="other")]
    assert by_model(runs) == {"m": [0.75, 0.74], "other": [0.5]}


def test_a_configuration_over_seeds_is_one_row_with_its_spread_and_interval():
    from finetune.report import seed_rows

    def evaluated(name, value, seed, lr="0.1"):
        run = _run(name, value - 0.01, seed=seed, lr=lr)
        run.tags |= {"eval_split": "test", "primary_metric": "accuracy", "greater_is_better": "true"}
        run.metrics["test_accuracy"] = value
        return run

    runs = [evaluated("a", 0.80, "1"), evaluated("b", 0.84, "2"), evaluated("c", 0.82, "3"),
            evaluated("d", 0.70, "1", lr="0.2"), evaluated("e", 0.72, "2", lr="0.2"), evaluated("f", 0.9, "1", lr="1")]
    header, rows, _ = seed_rows(runs)
    assert header[3:6] == ["seeds", "best validation accuracy (training), mean ± sd",
                           "test accuracy (evaluate), mean ± sd"]
    assert [row[1:4] for row in rows] == [["lr=0.1", "m", "3"], ["lr=0.2", "m", "2"]], "a single seed is no row"
    assert rows[0][5] == "0.8200 ± 0.0200"
    low, high = map(float, rows[0][6].strip("[]").split(", "))
    assert (low, high) == pytest.approx((0.82 - 4.303 * 0.02 / 3 ** 0.5, 0.82 + 4.303 * 0.02 / 3 ** 0.5), abs=1e-3)
    assert seed_rows(runs[:1]) is None
