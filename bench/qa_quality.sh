#!/usr/bin/env bash
# SQuAD v1.1 quality of `minilm` on the full official dev set (10,570 questions), outside DVC.
#   bench/qa_quality.sh default   evaluate the model `dvc repro` trained (models/qa-minilm)
#   bench/qa_quality.sh N [k=v]   train on N train questions (one epoch, batch 16, lr 1e-4, no
#                                 per-epoch validation), then evaluate; extra Hydra overrides follow
# Outputs (metrics.json, predictions) land in bench/work/qa-quality/<name>/; the run is recorded in
# bench/results/qa/<name>.json and bench/results/qa_learning_curve.png is redrawn (bench/probes/qa_curve.py);
# the table in bench/results/qa_quality.md is written by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: bench/qa_quality.sh default | N [hydra overrides]}; shift
work=bench/work/qa-quality/$name
mkdir -p "$work"
out="paths.tokenized=$work/tokenized paths.metrics=$work/metrics.json paths.predictions=$work/predictions"
out="$out paths.plots=$work/plots"
if [ "$name" = default ]; then
  python stages/tokenize_data.py task=qa data.max_eval_samples=all $out
  python stages/evaluate_model.py task=qa data.max_eval_samples=all tracking=none $out
  python bench/probes/qa_curve.py record "$work" "$name" --model-dir models/qa-minilm
else
  out="$out paths.raw=$work/raw paths.model=$work/model paths.checkpoints=$work/checkpoints"
  sizes="data.max_train_samples=$name data.max_eval_samples=all"
  train="train.num_train_epochs=1 train.per_device_train_batch_size=16 train.learning_rate=1e-4"
  train="$train train.eval_strategy=no train.save_strategy=no train.load_best_model_at_end=false"
  python stages/download.py task=qa $out "$@"
  python stages/tokenize_data.py task=qa $sizes $out "$@"
  /usr/bin/time -f "train wall %e s" python stages/train.py task=qa $sizes $train tracking=none $out "$@"
  python stages/evaluate_model.py task=qa $sizes $train tracking=none $out "$@"
  python bench/probes/qa_curve.py record "$work" "$name"
fi
python bench/probes/qa_curve.py plot
cat "$work/metrics.json"
