"""k-fold cross-validation of one pair (stages/kfold.py): every fold's chain, one MLflow parent run.

Fold k runs download, tokenize, train and evaluate with `data.split.strategy=kfold` and
`data.split.fold=k` in `kfold/<pair>/fold-<k>/`, as a child run of the cross-validation's parent.
Then `kfold/<pair>/` gets:

- `summary.json`: each fold's validation and test scores of the primary metric, and their mean,
  standard deviation and the 95% t-interval of the mean across folds;
- `oof.jsonl`: the out-of-fold prediction of every example of the pool (each predicted by the model
  that never trained on it), with its fold and gold;
- `label_issues.csv`: the pool's examples whose given label the out-of-fold probabilities most
  confidently contradict (finetune.label_issues), for families with such a rule: each fold's
  issues under its own model's class thresholds (a temperature fitted on a noisier fold makes all
  its probabilities less sure, so one threshold for every fold would hide that fold's issues), all
  ranked together by margin.
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from finetune.intervals import t_interval
from finetune.io import atomic_file, read_json, write_json
from finetune.label_issues import COLUMNS, LABEL_ISSUES, read_label_issues, write_label_issues

log = logging.getLogger("finetune")
SUMMARY = "summary.json"
OOF = "oof.jsonl"
STAGES = ["download", "tokenize", "train", "evaluate"]


def fold_config(cfg: DictConfig, fold: int, out: Path, parent: dict[str, str] | None) -> DictConfig:
    """`cfg` for fold `fold`: its split, its own output folder, its run a child of `parent`."""
    config = copy.deepcopy(cfg)
    with open_dict(config):
        config.data.split.strategy = "kfold"
        config.data.split.fold = fold
        config.paths.out = str(out)
        config.pipeline.stages = STAGES
        config.tracking.run_name = f"{cfg.paths.pair}-fold{fold}"
        if parent:
            config.tracking.parent_run_id = parent["run_id"]
            config.tracking.sweep_id = parent["sweep_id"]
    return config


def cross_validate(cfg: DictConfig) -> dict[str, Any]:
    from finetune.pipeline.chain import run_pipeline
    from finetune.pipeline.common import load_tokenized

    folds, pair = int(cfg.data.split.folds), cfg.paths.pair
    root = Path(str(cfg.paths.out)) / "kfold" / pair
    parent = start_parent(cfg, root)
    scores: list[dict[str, Any]] = []
    oof_rows: list[dict[str, Any]] = []
    issues: list[dict[str, Any]] | None = None
    family = None
    try:
        for fold in range(folds):
            log.info("kfold %s: fold %d of %d", pair, fold + 1, folds)
            config = fold_config(cfg, fold, root / f"fold-{fold}", parent)
            run_pipeline(config)
            paths = OmegaConf.to_container(config.paths, resolve=True)
            metrics = read_json(paths["metrics"])
            family = load_tokenized(config)[2]  # run_pipeline pointed its inputs at its outputs
            predictions = Path(paths["predictions"])
            oof_rows += [{"fold": fold, **json.loads(line)}
                         for line in (predictions / "validation" / "predictions.jsonl").read_text().splitlines()]
            if (predictions / LABEL_ISSUES).exists():
                found = read_label_issues(predictions / LABEL_ISSUES)
                issues = (issues or []) + [{**row, "fold": fold} for row in found]
            scores.append({"fold": fold, **{role: metrics[role].get(family.primary_metric)
                                            for role in ("validation", "test") if role in metrics}})
    except BaseException:
        end_parent(parent, "FAILED")
        raise
    summary = summarize(scores, family.primary_metric, len(oof_rows))
    with atomic_file(root / OOF, encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in oof_rows)
    if issues is not None:
        issues.sort(key=lambda row: (-float(row["margin"]), row["fold"], row["id"]))
        write_label_issues([{key: row[key] for key in COLUMNS} for row in issues], root / LABEL_ISSUES)
        summary["label_issues"] = len(issues)
    write_json(root / SUMMARY, summary)
    finish_parent(parent, summary, root)
    log.info("kfold %s: %s", pair, {key: summary[key] for key in summary if key.endswith(("_mean", "_sd"))})
    return summary


def summarize(scores: list[dict[str, Any]], primary: str, oof: int) -> dict[str, Any]:
    """Per fold the primary metric on validation and test; their mean, sd and 95% t-interval."""
    summary: dict[str, Any] = {"primary_metric": primary, "folds": scores, "out_of_fold_predictions": oof}
    for role in ("validation", "test"):
        values = [s[role] for s in scores if s.get(role) is not None]
        if len(values) < 2:
            continue
        low, high = t_interval(values)
        summary |= {f"{role}_{primary}_mean": statistics.mean(values), f"{role}_{primary}_sd": statistics.stdev(values),
                    f"{role}_{primary}_ci_low": low, f"{role}_{primary}_ci_high": high}
    return summary


def start_parent(cfg: DictConfig, root: Path) -> dict[str, str] | None:
    """The cross-validation's MLflow parent run (None without tracking)."""
    if not cfg.tracking.enabled:
        return None
    from finetune import tracking

    tracking.connect(tracking.tracking_uri(cfg))
    name = f"kfold-{cfg.paths.pair}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    run_id = tracking.parent_run(str(cfg.tracking.experiment), name, f"data.split.folds={cfg.data.split.folds}")
    return {"run_id": run_id, "sweep_id": name}


def finish_parent(parent: dict[str, str] | None, summary: dict[str, Any], root: Path) -> None:
    if parent is None:
        return
    from mlflow import MlflowClient

    from finetune import tracking

    client = MlflowClient()
    for key, value in summary.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            tracking.retrying(client.log_metric, parent["run_id"], key, float(value))
    for name in (SUMMARY, OOF, LABEL_ISSUES):
        if (root / name).exists():
            tracking.retrying(client.log_artifact, parent["run_id"], str(root / name), "kfold")
    end_parent(parent, "FINISHED")


def end_parent(parent: dict[str, str] | None, status: str) -> None:
    if parent is not None:
        from finetune import tracking

        tracking.end_parent(parent["run_id"], status)
