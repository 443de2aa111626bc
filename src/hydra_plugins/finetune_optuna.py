"""`hydra/sweeper=optuna`: hyper-parameter search with Optuna, trials launched by Hydra's launcher.

The search space uses Hydra's sweep syntax, in `hydra.sweeper.params` (conf/hparams_search/) or on
the command line: `interval(1e-5, 1e-3)`, `tag(log, interval(...))`, `tag(int, interval(8, 64))`,
`range(1, 5)`, `choice(16, 32)`; any other value is fixed for every trial.

- `n_trials` is the study's total of completed trials: run the same command again and an
  interrupted study (an Optuna storage such as `sqlite:///optuna.db`) resumes where it stopped.
  Trials left running by the interrupted sweep are marked failed; the sampler's seed is offset
  by the trials already in the study, so a resumed study does not draw its first points again.
- `n_jobs` trials are asked at a time and launched together (`hydra/launcher=joblib` runs them in
  parallel); each job returns the value to optimise (stages/pipeline.py: the best validation value
  of the task's primary metric).
- The best params and value are written to `optimization_results.yaml` in the sweep folder, which
  finetune.sweep puts on the sweep's parent run.

This is a small sweeper of our own rather than the hydra-optuna-sweeper package: that package pins
optuna < 3, whose database storage fails on SQLAlchemy 2 (which MLflow installs), so its studies
could not be stored and resumed.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
RESULTS_FILE = "optimization_results.yaml"
SAMPLERS = ("tpe", "random")


class OptunaSweeper(Sweeper):
    def __init__(self, direction: str = "maximize", study_name: str | None = None, storage: str | None = None,
                 n_trials: int = 20, n_jobs: int = 1, sampler: str = "tpe", seed: int | None = None,
                 max_failure_rate: float = 0.0, params: dict[str, Any] | None = None) -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"hydra.sweeper.direction must be maximize or minimize, not '{direction}'")
        if sampler not in SAMPLERS:
            raise ValueError(f"hydra.sweeper.sampler must be one of {', '.join(SAMPLERS)}, not '{sampler}'")
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs, self.sampler, self.seed = int(n_trials), max(1, int(n_jobs)), sampler, seed
        self.max_failure_rate = float(max_failure_rate)
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> dict[str, Any]:
        import optuna

        assert self.config is not None
        space, fixed = search_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        if not space:
            raise ValueError("hydra/sweeper=optuna needs a search space: hydra.sweeper.params or a sweep "
                             "override such as train.learning_rate='tag(log, interval(1e-5, 1e-3))'")
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, direction=self.direction,
                                    load_if_exists=True)
        fail_interrupted(study)
        done = completed(study)
        study.sampler = make_sampler(self.sampler, None if self.seed is None else int(self.seed) + len(study.trials))
        self.job_idx = len(study.trials)  # job numbers (and run names) follow the trial numbers
        log.info("study %s: %d of %d trials done; storage %s", study.study_name, done, self.n_trials, self.storage)
        while done < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            batch = [fixed + [f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
                              for key, value in trial.params.items()] for trial in trials]
            try:
                returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
            except BaseException:
                for trial in trials:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            self.job_idx += len(returns)
            failures = [ret for trial, ret in zip(trials, returns, strict=True) if not tell(study, trial, ret)]
            done = completed(study)
            if failures and len(failures) / len(returns) > self.max_failure_rate:
                failures[0].return_value  # re-raises the job's own error  # noqa: B018
        best = study.best_trial
        results = {"name": "optuna", "study_name": study.study_name, "storage": self.storage,
                   "direction": self.direction, "best_params": best.params, "best_value": best.value,
                   "best_trial": best.number, "n_trials": done}
        OmegaConf.save(OmegaConf.create(results), Path(self.config.hydra.sweep.dir) / RESULTS_FILE)
        log.info("study %s: best value %s with %s", study.study_name, best.value, best.params)
        return results


def search_space(overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Optuna distributions for the sweep overrides; the other overrides as fixed strings."""
    space, fixed = {}, []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def distribution(override: Override) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if "int" in value.tags:
            return IntDistribution(int(value.start), int(value.end), log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{override.input_line}: not a search space Optuna can sample")


def make_sampler(name: str, seed: int | None) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed) if name == "random" else optuna.samplers.TPESampler(seed=seed)


def completed(study: Any) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def fail_interrupted(study: Any) -> None:
    """Mark trials an interrupted sweep left RUNNING as failed (one sweep runs a study at a time)."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        log.warning("study %s: trial %d was interrupted; marked failed", study.study_name, trial.number)


def tell(study: Any, trial: Any, ret: Any) -> bool:
    """Record a job's outcome; False if it failed or returned no number."""
    import optuna
    from hydra.core.utils import JobStatus

    value = ret.return_value if ret.status == JobStatus.COMPLETED else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d failed%s", trial.number, "" if ret.status != JobStatus.COMPLETED
                    else f": the job returned {value!r}, not a number")
        return False
    study.tell(trial, number)
    return True
