#!/usr/bin/env bash
# The CUDA path's checks in one go, for a machine with NVIDIA GPUs:  bash bench/gpu_checks.sh
#   1. the fast path's CUDA choices: bf16 auto -> on (where the GPU has bf16), pad_to_multiple_of auto -> 8
#   2. the train stage on one GPU (tiny random model, learnable headlines written here): bf16, learns
#   3. the same under torchrun with NCCL, one process per visible GPU: one run, rank 0 writes
#   4. comparison 5 of bench/ (bert-base-sized encoder, bf16 MFU), if the IMDB mirror is there
# Outputs and logs go to $OUT (default bench/work/gpu-checks); the last line says PASS or FAIL.
# Needs the package installed (pip install -e .) with a CUDA build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=${OUT:-bench/work/gpu-checks}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpus.csv"
GPUS=$(python -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.cuda.device_count())")
python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"

echo "== 1. CUDA choices"
python - <<'EOF'
from finetune.calibration import bf16_matmul_ratio
from finetune.training import pad_multiple
assert pad_multiple("auto") == 8, pad_multiple("auto")
print("pad_to_multiple_of auto = 8; a bf16 matmul takes", round(bf16_matmul_ratio(4096), 2), "x an fp32 one")
EOF

echo "== 2-3. train stage: one process, then torchrun --nproc_per_node=$GPUS (NCCL)"
python - "$OUT" <<'EOF'
import sys
from pathlib import Path
from tests.conftest import headline_rows, write_jsonl
write_jsonl(Path(sys.argv[1]) / "headlines.jsonl", headline_rows(2400))
EOF
ARGS=(task=sarcasm model=tiny "data.files.train=$OUT/headlines.jsonl" data.split.first_n=2000 data.max_length=32
      train.num_train_epochs=2 train.per_device_train_batch_size=32 train.learning_rate=3e-3 train.disable_tqdm=true
      tracking=none "paths.inputs=$OUT")
(cd "$OUT" && python "$REPO/stages/download.py" "${ARGS[@]}" >"$OUT/download.log" 2>&1 &&
   python "$REPO/stages/tokenize_data.py" "${ARGS[@]}" >"$OUT/tokenize.log" 2>&1) || { echo FAIL; exit 1; }
for side in single ddp; do
  work="$OUT/$side"
  rm -rf "$work" && mkdir -p "$work"
  launcher=(python) extra=()
  if [[ $side == ddp ]]; then
    launcher=(python -m torch.distributed.run --standalone "--nproc_per_node=$GPUS")
    extra=("+train.ddp_backend=${BACKEND:-nccl}")
  fi
  (cd "$work" && "${launcher[@]}" "$REPO/stages/train.py" "${ARGS[@]}" "${extra[@]}" \
     >"$work/train.log" 2>&1) || { tail -30 "$work/train.log"; echo FAIL; exit 1; }
done
python - "$OUT" "$GPUS" <<'EOF'
import json, sys
from pathlib import Path
out, gpus = Path(sys.argv[1]), int(sys.argv[2])
for side, processes in (("single", 1), ("ddp", gpus)):
    summary = json.loads((out / side / "models" / "sarcasm-tiny" / "train_summary.json").read_text())
    print(side, {k: summary[k] for k in ("best_metric", "train_loss", "train_runtime", "processes", "bf16",
                                         "bf16_choice", "compile", "compile_choice")})
    assert summary["processes"] == processes and summary["bf16_choice"] and summary["compile_choice"]
    assert summary["best_metric"] > 0.8, "the model learned the headlines"
    assert not list((out / side).glob("outputs")) and not list((out / side).glob("multirun")), "stray Hydra folders"
EOF

echo "== 4. comparison 5"
if [[ -d "${FINETUNE_DATA_DIR:-../shared/data}/imdb" ]]; then
  python bench/run.py --only gpu
else
  echo "skipped: no IMDB mirror (set FINETUNE_DATA_DIR)"
fi
echo PASS
