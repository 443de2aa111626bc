"""hydra/sweeper=optuna: the search space, a seeded study that resumes, best params on the parent run."""

from __future__ import annotations

import mlflow
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from finetune.config import compose
from hydra_plugins.finetune_optuna import search_space
from tests.conftest import REPO, run_stage, sweep_data


def test_sweep_syntax_becomes_optuna_distributions():
    space, fixed = search_space(["train.learning_rate=tag(log, interval(1e-5, 1e-3))", "a=choice(16, 32)",
                                 "b=range(1, 4)", "c=interval(0, 0.1)", "d=tag(int, interval(8, 64))", "e=1,2",
                                 "model=tiny", "train.seed=3"])
    assert space == {"train.learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
                     "a": CategoricalDistribution([16, 32]), "b": IntDistribution(1, 3),
                     "c": FloatDistribution(0.0, 0.1), "d": IntDistribution(8, 64),
                     "e": CategoricalDistribution([1, 2])}
    assert fixed == ["model=tiny", "train.seed=3"]


def test_the_sentiment_search_preset_composes(monkeypatch):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    monkeypatch.setenv("FINETUNE_ROOT", str(REPO))
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = hydra_compose("config", overrides=["hparams_search=sentiment", "model=tiny"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.finetune_optuna.OptunaSweeper"
    assert (sweeper.study_name, sweeper.n_trials, sweeper.direction) == ("sentiment-tiny", 8, "maximize")
    assert sweeper.storage == f"sqlite:///{REPO}/optuna.db"
    space, _ = search_space([f"{k}={v}" for k, v in sweeper.params.items()])
    assert space["train.learning_rate"].log
    assert compose(REPO, ["hparams_search=sentiment"]).task.name == "sentiment"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """3 trials, then the same command resumed to 5 with 2 trials at a time in parallel."""
    work = tmp_path_factory.mktemp("optuna")
    uri, storage = f"sqlite:///{work / 'mlflow.db'}", f"sqlite:///{work / 'optuna.db'}"
    command = ["-m", *sweep_data(work), "model=tiny", "train.num_train_epochs=2", "hydra/sweeper=optuna",
               f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=headlines",
               "train.learning_rate=tag(log, interval(1e-4, 1e-2))", "train.weight_decay=choice(0.0, 0.1)"]
    first = run_stage("pipeline.py", *command, "hydra.sweeper.n_trials=3", cwd=work, uri=uri)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_stage("pipeline.py", *command, "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2",
                        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=work, uri=uri)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"work": work, "uri": uri, "storage": storage, "first": first, "resumed": resumed}


def test_an_interrupted_study_resumes_to_its_total(study):
    trials = optuna.load_study(study_name="headlines", storage=study["storage"]).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5
    assert "3 of 5 trials done" in study["resumed"].stderr + study["resumed"].stdout
    points = [(t.params["train.learning_rate"], t.params["train.weight_decay"]) for t in trials]
    assert len(set(points)) == 5  # the resumed sampler does not draw the first points again


def test_the_study_is_one_parent_run_with_the_best_params(study):
    mlflow.set_tracking_uri(study["uri"])
    runs = mlflow.search_runs(search_all_experiments=True)
    parents = runs[runs["tags.sweep_role"] == "parent"]
    assert len(parents) == 1, "the resumed study reuses its parent run"
    parent = parents.iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert len(children) == 5 and set(children["status"]) == {"FINISHED"}
    assert parent["status"] == "FINISHED" and parent["tags.sweep_id"] == "headlines"
    best = optuna.load_study(study_name="headlines", storage=study["storage"]).best_trial
    assert float(parent["tags.optuna.best.train.learning_rate"]) == pytest.approx(best.params["train.learning_rate"])
    assert parent["metrics.optuna_best_value"] == pytest.approx(best.value)
    # each trial returned its run's best validation value, which Optuna recorded
    values = sorted(optuna.load_study(study_name="headlines", storage=study["storage"]).trials,
                    key=lambda t: t.number)
    assert sorted(t.value for t in values) == pytest.approx(sorted(children["metrics.best_metric"]))
    names = set(children["tags.mlflow.runName"])
    assert names == {f"sarcasm-tiny-{n}" for n in range(5)}  # run names follow the trial numbers


def test_a_search_without_a_space_is_one_line(tmp_path):
    done = run_stage("pipeline.py", "-m", *sweep_data(tmp_path), "model=tiny", "hydra/sweeper=optuna",
                     cwd=tmp_path, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert done.returncode == 1
    assert "hydra/sweeper=optuna needs a search space" in done.stderr


def test_trials_an_interrupted_sweep_left_running_are_marked_failed(tmp_path):
    from hydra_plugins.finetune_optuna import completed, fail_interrupted

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = optuna.create_study(study_name="s", storage=storage)
    first.tell(first.ask({"x": FloatDistribution(0, 1)}), 0.5)
    first.ask({"x": FloatDistribution(0, 1)})  # the sweep was killed while this trial ran
    resumed = optuna.load_study(study_name="s", storage=storage)
    fail_interrupted(resumed)
    assert [t.state.name for t in resumed.trials] == ["COMPLETE", "FAIL"]
    assert completed(resumed) == 1
