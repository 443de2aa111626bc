"""The comparison report: `python stages/report.py [experiment=NAME] [sweep=ID] [top=5] [out=reports]`;
`python stages/report.py compare=RUN_A,RUN_B`: two runs by a paired bootstrap on the same examples.

Reads every run of the tracking store (DAG pairs, sweep jobs, DVC experiments alike) and writes,
under `reports/`: a leaderboard per task as Markdown (`leaderboard.md`) and as one self-contained
HTML page (`index.html`, plots embedded), and the plots: the primary metric by model (the spread
across runs that differ only in their seed), the top runs' learning curves overlaid, and for each
sweep its metric against each swept parameter and its optimisation history. The report is logged
to a run named `report` in the experiment `reports`.

Runs are ranked by the validation value of the task's primary metric (`best_metric`: what the best
checkpoint, the sweepers and early stopping use); the value on the reported split (`eval_split`
tag: the test split) is shown beside it with its interval, never used to choose. Values the
evaluate stage fitted on validation (temperature, thresholds) have their own columns, and each
pair's label issues (out-of-fold from `stages/kfold.py`, else from validation) their own table.
"""

from __future__ import annotations

import base64
import html
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune import plots
from finetune.errors import FinetuneError
from finetune.intervals import t_interval
from finetune.io import atomic_dir
from finetune.tracking import NOT_RECIPE, differing_params

REPORT_EXPERIMENT = "reports"
SEED_KEYS = ("train.seed", "train.data_seed", "data.sample_seed")
KEY_PARAMS = ("train.learning_rate", "train.num_train_epochs", "train.per_device_train_batch_size",
              "data.max_train_samples")
NOT_SECONDARY = ("eval_runtime", "n_eval", "bf16")
FITTED = ("temperature", "threshold", "null_score_diff_threshold")  # decoding values fitted on validation
PARTS = {"HasAns_f1": "HasAns F1", "NoAns_f1": "NoAns F1"}  # QA v2.0: answerable and unanswerable questions
ISSUES_SHOWN = 8  # label issues per pair shown in the report
SHORT = {"train.learning_rate": "lr", "train.num_train_epochs": "epochs", "train.per_device_train_batch_size": "batch",
         "data.max_train_samples": "train samples", "train.weight_decay": "weight decay",
         "train.warmup_steps": "warmup"}


@dataclass
class Run:
    """One trained (task, model) run as the report sees it."""

    run_id: str
    experiment_id: str
    name: str
    status: str
    start_time: int
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.tags.get("task", "?")

    @property
    def model(self) -> str:
        return self.tags.get("model", "?")

    @property
    def primary(self) -> str:
        return self.tags.get("primary_metric", "")

    @property
    def greater_is_better(self) -> bool:
        return self.tags.get("greater_is_better", "true") == "true"

    @property
    def label(self) -> str:
        """The run's name and its sweep (or id): names repeat across sweeps."""
        return f"{self.name} ({self.tags.get('sweep_id') or self.run_id[:8]})"

    @property
    def validation(self) -> float | None:
        return self.metrics.get("best_metric")

    def evaluated(self, key: str) -> float | None:
        """The evaluate stage's `key` on the reported split (`eval_split` tag)."""
        split = self.tags.get("eval_split")
        return self.metrics.get(f"{split}_{key}") if split else None

    @property
    def evaluation(self) -> float | None:
        return self.evaluated(self.primary)

    @property
    def interval(self) -> tuple[float, float] | None:
        """The evaluate stage's 95% interval on the primary metric (absent from older runs)."""
        low, high = (self.evaluated(f"{self.primary}_ci_{end}") for end in ("low", "high"))
        return (low, high) if low is not None and high is not None else None

    def secondary(self, limit: int = 3) -> dict[str, float]:
        split = self.tags.get("eval_split")
        if not split:
            return {}
        prefix = f"{split}_"
        names = sorted(key[len(prefix):] for key in self.metrics if key.startswith(prefix) and "." not in key)
        found = [name for name in names if name not in (self.primary, *NOT_SECONDARY, *PARTS)
                 and not name.endswith(("_ci_low", "_ci_high", "_total", "_words"))
                 and not name.startswith(("HasAns_", "NoAns_", "n_"))]  # counts are not scores
        return {name: self.metrics[prefix + name] for name in found[:limit]}


def collect(experiment: str | None = None, sweep: str | None = None) -> tuple[list[Run], list[Run]]:
    """(trained runs, sweep parent runs) of the active tracking store, optionally filtered."""
    from mlflow import MlflowClient

    from finetune.tracking import retrying

    client = MlflowClient()
    experiments = [e for e in retrying(client.search_experiments) if e.name != REPORT_EXPERIMENT]
    if experiment is not None:
        experiments = [e for e in experiments if e.name == experiment]
        if not experiments:
            raise FinetuneError(f"experiment={experiment}: no such experiment in {_store()}")
    query = f"tags.sweep_id = '{sweep}'" if sweep else ""
    found = retrying(client.search_runs, [e.experiment_id for e in experiments], query, max_results=50000)
    runs, parents = [], []
    for info, data in ((r.info, r.data) for r in found):
        run = Run(info.run_id, info.experiment_id, info.run_name or info.run_id[:8], info.status,
                  info.start_time or 0, dict(data.params), dict(data.metrics), dict(data.tags))
        if run.tags.get("sweep_role") == "parent":
            parents.append(run)
        elif run.validation is not None or run.evaluation is not None:
            runs.append(run)
    return runs, parents


def _store() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def rank(runs: list[Run]) -> list[Run]:
    """Best first by the validation value of the primary metric (the evaluation split's value where
    a run has no validation split); unfinished runs last."""
    def key(run: Run) -> tuple[int, float]:
        value = run.validation if run.validation is not None else run.evaluation
        if value is None or math.isnan(value) or run.status != "FINISHED":
            return (1, 0.0)
        return (0, -value if run.greater_is_better else value)

    return sorted(runs, key=key)


def by_task(runs: list[Run]) -> dict[str, list[Run]]:
    tasks: dict[str, list[Run]] = {}
    for run in runs:
        tasks.setdefault(run.task, []).append(run)
    return {task: rank(members) for task, members in sorted(tasks.items())}


def varied_params(runs: list[Run]) -> list[str]:
    """The params that differ between `runs`, but the model's name: it has its own column and colour."""
    return [key for key in differing_params([run.params for run in runs]) if key != "model.name"]


def shown_params(runs: list[Run]) -> list[str]:
    varied = varied_params(runs)
    return [k for k in KEY_PARAMS if k not in varied] + varied[:8]


def run_link(run: Run, ui: str) -> str:
    return f"{ui.rstrip('/')}/#/experiments/{run.experiment_id}/runs/{run.run_id}"


def leaderboard_rows(runs: list[Run], ui: str) -> tuple[list[str], list[list[str]], list[str | None]]:
    """(header, rows, links) of one task's leaderboard, best first."""
    params = shown_params(runs)
    primary = runs[0].primary if runs else ""
    secondary = list(runs[0].secondary()) if runs else []
    fitted = [key for key in FITTED if any(key in run.metrics for run in runs)]
    parts = [key for key in PARTS if any(run.evaluated(key) is not None for run in runs)]
    header = (["#", "run", "model", "sweep / DVC exp"] + [SHORT.get(p, p.split(".", 1)[-1]) for p in params]
              + [f"best validation {primary} (training)",
                 f"{runs[0].tags.get('eval_split', 'eval')} {primary} (evaluate)" if runs else "evaluate",
                 "95% interval", f"{runs[0].tags.get('eval_split', 'eval')} units" if runs else "units"]
              + secondary + [PARTS[key] for key in parts] + [f"{key} (fitted on validation)" for key in fitted]
              + ["train s", "samples/s", "status", "commit"])
    rows, links = [], []
    for place, run in enumerate(runs, 1):
        extra = run.secondary()
        rows.append([str(place), run.name, run.model, run.tags.get("sweep_id") or run.tags.get("dvc_exp") or ""]
                    + [_short(run.params.get(p, "")) for p in params]
                    + [_number(run.validation), _number(run.evaluation), _interval(run.interval),
                       _count(run.evaluated("ci.units"))]
                    + [_number(extra.get(k)) for k in secondary] + [_number(run.evaluated(k)) for k in parts]
                    + [_number(run.metrics.get(k)) for k in fitted]
                    + [_number(run.metrics.get("train_runtime"), 1),
                       _number(run.metrics.get("train_samples_per_second"), 1), status(run),
                       run.tags.get("git_commit", "")[:12]])
        links.append(run_link(run, ui))
    return header, rows, links


def _short(text: str) -> str:
    """A param value as people read it: 0.0012562887007755699 -> 0.001256."""
    try:
        number = float(text)
    except ValueError:
        return text
    return text if number.is_integer() and "e" not in text.lower() else f"{number:.4g}"


def status(run: Run) -> str:
    """The run's status, marked where the evaluate stage found it no better than its trivial baseline."""
    return run.status + (" (not above the trivial baseline)" if run.tags.get("beats_baseline") == "false" else "")


def _interval(bounds: tuple[float, float] | None) -> str:
    return f"[{_number(bounds[0])}, {_number(bounds[1])}]" if bounds else ""


def _count(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{int(value):,}"


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def seed_groups(runs: list[Run]) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[Run]]:
    """Runs with the same model and params except their seeds."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[Run]] = {}
    for run in runs:
        config = tuple(sorted((k, v) for k, v in run.params.items()
                              if k not in SEED_KEYS + NOT_RECIPE and not k.startswith("tracking.")))
        groups.setdefault((run.model, config), []).append(run)
    return groups


def seed_rows(runs: list[Run]) -> tuple[list[str], list[list[str]], list[str | None]] | None:
    """One row per configuration run over two or more seeds, best first: the mean ± standard
    deviation across its seeds of both values and the 95% t-interval of the evaluated mean."""
    groups = [members for members in seed_groups(runs).values() if len(members) >= 2]
    if not groups:
        return None
    primary, split = runs[0].primary, runs[0].tags.get("eval_split", "eval")
    varied = [key for key in varied_params([g[0] for g in groups]) if key not in SEED_KEYS]
    sign = 1 if runs[0].greater_is_better else -1
    summaries = []
    for members in groups:
        evaluated = [r.evaluation for r in members if r.evaluation is not None and not math.isnan(r.evaluation)]
        validated = [r.validation for r in members if r.validation is not None and not math.isnan(r.validation)]
        config = ", ".join(f"{SHORT.get(k, k.split('.', 1)[-1])}={_short(members[0].params.get(k, ''))}"
                           for k in varied) or "the one configuration"
        summaries.append((sign * statistics.mean(evaluated) if evaluated else -math.inf, config, members, evaluated,
                          validated))
    header = ["#", "configuration", "model", "seeds", f"best validation {primary} (training), mean ± sd",
              f"{split} {primary} (evaluate), mean ± sd", "95% interval of the mean (t)"]
    rows = []
    for place, (_, config, members, evaluated, validated) in enumerate(sorted(summaries, key=lambda s: -s[0]), 1):
        rows.append([str(place), config, members[0].model, str(len(members)), _spread(validated),
                     _spread(evaluated), _interval(t_interval(evaluated))])
    return header, rows, [None] * len(rows)


def _spread(values: list[float]) -> str:
    if not values:
        return ""
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 \
        else f"{values[0]:.4f}"


def by_model(runs: list[Run]) -> dict[str, list[float]]:
    """Per model, the values of its best configuration across seeds (best = highest mean)."""
    best: dict[str, list[float]] = {}
    for (model, _), members in seed_groups(runs).items():
        values = [r.validation if r.validation is not None else r.evaluation for r in members]
        values = [v for v in values if v is not None and not math.isnan(v)]
        if not values:
            continue
        sign = 1 if members[0].greater_is_better else -1
        if model not in best or sign * statistics.mean(values) > sign * statistics.mean(best[model]):
            best[model] = values
    return best


def load_histories(runs: list[Run], keys: tuple[str, ...]) -> None:
    from mlflow import MlflowClient

    from finetune.tracking import retrying

    client = MlflowClient()
    for run in runs:
        for key in keys:
            points = retrying(client.get_metric_history, run.run_id, key)
            run.history[key] = sorted((p.step, p.value) for p in points)


def label_issue_rows(task: str, models: list[str], workspace: Path,
                     folder: Path) -> list[tuple[str, tuple[list[str], list[list[str]], list[str | None]]]]:
    """Per pair of `task` with a label-issues file in `workspace` (k-fold's out-of-fold one, else the
    evaluate stage's from validation): a titled table of its top rows; the file is copied beside."""
    import shutil

    from finetune.kfold import OOF
    from finetune.label_issues import LABEL_ISSUES, read_label_issues

    found = []
    for model in sorted(set(models)):
        pair = f"{task}-{model}"
        for source, kind in ((workspace / "kfold" / pair, "out-of-fold"), (workspace / "predictions" / pair,
                                                                             "validation split")):
            path = source / LABEL_ISSUES
            if not path.exists() or (kind == "out-of-fold" and not (source / OOF).exists()):
                continue
            issues = read_label_issues(path)
            (folder / pair).mkdir(exist_ok=True)
            shutil.copy2(path, folder / pair / LABEL_ISSUES)
            header = ["#", "id", "given label", "suggested", "confidence", "p(given)", "text"]
            rows = [[str(i), row["id"], row["given_label"], row["suggested_label"], row["confidence"],
                     row["given_probability"], row["text"][:120]] for i, row in enumerate(issues[:ISSUES_SHOWN], 1)]
            title = f"{pair}: the {min(len(issues), ISSUES_SHOWN)} surest of {len(issues)} label issues ({kind}; " \
                    f"all in {pair}/{LABEL_ISSUES})"
            found.append((title, (header, rows, [None] * len(rows))))
            break
    return found


def write(out: str | Path, runs: list[Run], parents: list[Run], *, top: int = 5, ui: str = "http://127.0.0.1:5000",
          title: str = "Runs compared", workspace: Path | None = None) -> Path:
    """Write the report folder (atomically) and return it; label issues are read from `workspace`."""
    out = Path(out)
    tasks = by_task(runs)
    with atomic_dir(out) as folder:
        sections = []
        for task, members in tasks.items():
            primary = members[0].primary
            figures = []
            values = by_model(members)
            if values:
                figures.append(plots.metric_by_model(values, folder / f"{task}-by-model.png", f"validation {primary}",
                                                     title=f"{task}: validation {primary} by model"))
            leaders = [r for r in members if r.status == "FINISHED"][:top]
            load_histories(leaders, ("loss", f"eval_{primary}"))
            if any(r.history.get("loss") for r in leaders):
                figures.append(plots.overlaid_curves({r.label: r.history for r in leaders},
                                                     ("loss", f"eval_{primary}"), folder / f"{task}-curves.png",
                                                     title=f"{task}: the top {len(leaders)} runs"))
            sections.append((task, leaderboard_rows(members, ui), figures))
            seeds = seed_rows(members)
            if seeds:
                sections.append((f"{task} across seeds", seeds, []))
            if workspace is not None:
                sections += [(name, rows, []) for name, rows in
                             label_issue_rows(task, [r.model for r in members], workspace, folder)]
        sweeps = []
        for parent in sorted(parents, key=lambda r: -r.start_time):
            children = [r for r in runs if r.tags.get("mlflow.parentRunId") == parent.run_id]
            if not children:
                continue
            sweeps.append((parent, children, _sweep_figures(parent, children, folder)))
        (folder / "leaderboard.md").write_text(_markdown(title, sections, sweeps), encoding="utf-8")
        (folder / "index.html").write_text(_html(title, sections, sweeps, folder), encoding="utf-8")
    return out


def _sweep_figures(parent: Run, children: list[Run], folder: Path) -> list[Path]:
    name = _slug(parent.tags.get("sweep_id", parent.name))
    primary = children[0].primary
    figures = []
    scored = [c for c in children if c.validation is not None]
    for key in varied_params(scored):
        if key in SEED_KEYS:
            continue
        figures.append(plots.param_vs_metric([c.params.get(key, "") for c in scored], [c.validation for c in scored],
                                             [c.model for c in scored], key, f"validation {primary}",
                                             folder / f"sweep-{name}-{_slug(key)}.png",
                                             title=key))
    if any(k.startswith("optuna.") for k in parent.tags) or parent.metrics.get("optuna_best_value") is not None:
        ordered = sorted(scored, key=lambda c: c.start_time)
        figures.append(plots.optimization_history([c.validation for c in ordered], children[0].greater_is_better,
                                                  f"validation {primary}", folder / f"sweep-{name}-history.png",
                                                  title=f"{parent.name}: optimisation history"))
    return figures


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def _sweep_summary(parent: Run, children: list[Run]) -> list[str]:
    lines = [f"{len(children)} runs ({sum(c.status == 'FINISHED' for c in children)} finished); "
             f"overrides: `{parent.tags.get('sweep_overrides', '')}`"]
    best = {k.removeprefix("optuna.best."): v for k, v in parent.tags.items() if k.startswith("optuna.best.")}
    if not best:
        best = {k.removeprefix("best."): v for k, v in parent.tags.items() if k.startswith("best.")}
    best = {k: v for k, v in best.items() if k == "model.name" or not k.startswith("model.")}
    value = parent.metrics.get("optuna_best_value", parent.metrics.get("best_value"))
    if value is not None:
        lines.append(f"best validation {children[0].primary}: {value:.4f} with "
                     + ", ".join(f"{k}={v}" for k, v in sorted(best.items())))
    return lines


def _markdown(title: str, sections: list[Any], sweeps: list[Any]) -> str:
    lines = [f"# {title}", ""]
    for task, (header, rows, _), figures in sections:
        lines += [f"## {task}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += [""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]
    for parent, children, figures in sweeps:
        lines += [f"## sweep {parent.name}", ""] + [f"- {line}" for line in _sweep_summary(parent, children)]
        lines += [""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]
    return "\n".join(lines)


def _html(title: str, sections: list[Any], sweeps: list[Any], folder: Path) -> str:
    def image(path: Path) -> str:
        data = base64.b64encode((folder / path.name).read_bytes()).decode()
        return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'

    def table(header: list[str], rows: list[list[str]], links: list[str | None]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = []
        for row, link in zip(rows, links, strict=True):
            cells = [html.escape(c) for c in row]
            if link:
                cells[1] = f'<a href="{html.escape(link)}">{cells[1]}</a>'
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'

    parts = [f"<h1>{html.escape(title)}</h1>",
             "<p>Ranked by the validation value of each task's primary metric (validation chooses); the test "
             "split's value is reported beside it with its interval, never used to rank. Run names link to the "
             "MLflow UI.</p>"]
    for task, (header, rows, links), figures in sections:
        parts += [f"<h2>{html.escape(task)}</h2>", table(header, rows, links),
                  '<div class="plots">' + "".join(image(f) for f in figures) + "</div>"]
    for parent, children, figures in sweeps:
        parts += [f"<h2>sweep {html.escape(parent.name)}</h2>", "<ul>"
                  + "".join(f"<li>{html.escape(line)}</li>" for line in _sweep_summary(parent, children)) + "</ul>",
                  '<div class="plots">' + "".join(image(f) for f in figures) + "</div>"]
    style = ("body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:8px 0 16px}"
             "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}"
             "th{background:#f0f0f0}td:nth-child(-n+4),td:last-child{text-align:left}.wide{overflow-x:auto}"
             "tbody tr:first-child{background:#eaf5ea}.plots img{max-width:100%;margin:4px;border:1px solid #eee}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def as_list_override(arg: str, key: str) -> str:
    """`key=a,b` as `key=[a,b]`: Hydra reads a bare comma list as a sweep, and two run ids are one value."""
    prefix = f"{key}="
    value = arg[len(prefix):]
    return f"{prefix}[{value}]" if arg.startswith(prefix) and "," in value and not value.startswith(("[", "'", '"')) \
        else arg


def saved_predictions(client: Any, run_id: str, folder: Path) -> tuple[Any, dict[str, list[Any]], list[Any]]:
    """(recipe, gold examples, predictions) that run `run_id`'s evaluate stage logged."""
    from omegaconf import OmegaConf

    from finetune.io import read_json
    from finetune.pipeline.common import CODEC
    from finetune.tasks import load_codec, recipe
    from finetune.tracking import retrying

    folder.mkdir(parents=True)
    try:
        predictions = Path(retrying(client.download_artifacts, run_id, "predictions", str(folder)))
        config = Path(retrying(client.download_artifacts, run_id, "config/config.yaml", str(folder)))
    except Exception as error:  # noqa: BLE001 - a missing run or artifact is one line
        raise FinetuneError(f"compare: run {run_id} has no saved predictions and config (an evaluate stage of "
                            f"this version logs them): {str(error).splitlines()[0][:160]}") from None
    codec_file = predictions / CODEC
    if not codec_file.exists():
        raise FinetuneError(f"compare: run {run_id}'s predictions carry no {CODEC}: re-run its evaluate stage")
    codec = load_codec(read_json(codec_file), str(codec_file))
    family = recipe(OmegaConf.load(config), codec)
    return (family, *family.read_predictions(predictions))


def compare(cfg: Any) -> dict[str, Any]:
    """Run A minus run B on the same reported examples: the paired bootstrap of the primary metric."""
    import tempfile

    from mlflow import MlflowClient
    from omegaconf import OmegaConf

    from finetune.intervals import clearly_better, paired_difference
    from finetune.tracking import retrying

    given = cfg.compare if OmegaConf.is_list(cfg.compare) else str(cfg.compare).split(",")
    ids = [str(part).strip() for part in given]
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # errors stay one line
    if len(ids) != 2 or not all(ids):
        raise FinetuneError(f"compare={cfg.compare}: give two MLflow run ids, RUN_A,RUN_B")
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as scratch:
        (family, gold, ours), (other, theirs_gold, theirs) = (
            saved_predictions(client, run_id, Path(scratch) / str(side)) for side, run_id in enumerate(ids))
    runs = [retrying(client.get_run, run_id) for run_id in ids]
    splits = [run.data.tags.get("eval_split") for run in runs]
    if family.primary_metric != other.primary_metric or gold != theirs_gold or splits[0] != splits[1]:
        raise FinetuneError(f"compare: runs {ids[0]} and {ids[1]} were not scored on the same examples "
                            f"({splits[0]} of {runs[0].data.tags.get('task')} against {splits[1]} of "
                            f"{runs[1].data.tags.get('task')}, {len(gold['id'])} and {len(theirs_gold['id'])} units)")
    primary = family.primary_metric
    resampled = family.resampled(gold, ours)
    found = paired_difference(resampled, family.resampled(gold, theirs), primary,
                              resamples=int(cfg.bootstrap_resamples), level=float(cfg.confidence_level),
                              seed=int(cfg.bootstrap_seed))
    better = clearly_better(found, family.greater_is_better)
    names = [run.info.run_name or run.info.run_id[:8] for run in runs]
    low, high = found["difference_ci_low"], found["difference_ci_high"]
    line = (f"compare: {names[0]} minus {names[1]} on {splits[0]} ({resampled.size} {resampled.unit}): {primary} "
            f"{found['difference']:+.4f}, {float(cfg.confidence_level):.0%} interval [{low:+.4f}, {high:+.4f}], "
            f"p = {found['p_value']:.3f}: "
            + (f"{names[0]} is better" if better else "not a significant difference"))
    out = Path(str(cfg.out))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"compare-{ids[0][:8]}-{ids[1][:8]}.md").write_text(
        f"# {names[0]} against {names[1]}\n\n{line.removeprefix('compare: ')}.\n\nRuns `{ids[0]}` and `{ids[1]}`, "
        f"paired bootstrap over the same {resampled.size} {resampled.unit}, {cfg.bootstrap_resamples} resamples "
        f"(seed {cfg.bootstrap_seed}).\n", encoding="utf-8")
    print(line)
    return found | {"better": better, "split": splits[0], "units": resampled.size}


def report(cfg: Any) -> Path:
    """The report command (conf/report.yaml): read the store (MLFLOW_TRACKING_URI, else mlflow.db at
    the repository root), write the report, log it to the run `report` of the experiment `reports`."""
    import mlflow

    from finetune import tracking

    if isinstance(cfg.top, bool) or not isinstance(cfg.top, int) or cfg.top < 1:
        raise FinetuneError(f"top={cfg.top} is not a positive whole number")
    tracking.connect(tracking.store_uri(Path(cfg.root)))
    if cfg.compare:
        compare(cfg)
        return Path(str(cfg.out))
    runs, parents = collect(cfg.experiment, cfg.sweep)
    filters = {key: cfg[key] for key in ("experiment", "sweep") if cfg[key] is not None}
    if not runs:
        raise FinetuneError(f"no trained runs in {_store()}" + "".join(f" with {k}={v}" for k, v in filters.items()))
    scope = ", ".join(f"{k}={v}" for k, v in filters.items())
    out = write(str(cfg.out), runs, parents, top=int(cfg.top), ui=str(cfg.ui),
                title="Runs compared" + (f" ({scope})" if scope else ""), workspace=Path(cfg.workspace))
    tracking.experiment_id(REPORT_EXPERIMENT)
    mlflow.set_experiment(REPORT_EXPERIMENT)
    with mlflow.start_run(run_name="report", tags={"report_scope": scope or "all", "runs": str(len(runs))}):
        tracking.log_artifacts([out], "report")
    print(f"report: {len(runs)} runs, {len(parents)} sweeps -> {out / 'index.html'}")
    return out
