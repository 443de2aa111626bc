"""What `bf16: auto` / `compile: auto` cost a train stage once their answers are cached, on a CPU
without bf16 units (simulated here by reporting bf16 matrix products 100x slower than fp32, as
such a CPU measures them), for this checkout's code and for `--before REV`'s.

    python bench/probes/auto_cost.py --before e2dd597      # writes bench/results/auto_cost.{json,md}

Each side runs in a fresh process: MiniLM, the train stage's own `measured_fast_path` on the first
micro-batches of 3,000 CoNLL-2003 sentences (batch 16), once to fill an empty calibration cache,
then three more times from the cache; the figure is the seconds each cached call takes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE.parent / "helpers")]
from common import provenance, provenance_text  # noqa: E402

CALLS = 3


def inner() -> None:
    """One side: measured_fast_path once (measures), then CALLS times from the cache."""
    import datasets
    from transformers.utils import logging as hf_logging

    from finetune import calibration
    from finetune.config import compose
    from finetune.models import load_model, load_tokenizer
    from finetune.tasks import recipe
    from finetune.training import measured_fast_path, training_arguments

    hf_logging.set_verbosity_error()
    calibration.bf16_matmul_ratio = lambda *_, **__: 100.0  # a CPU without bf16 units
    cfg = compose(REPO, ["task=ner", "model=minilm", "train.per_device_train_batch_size=16"], workdir=Path.cwd())
    family = recipe(cfg)
    sentences = []
    for line in (Path(cfg.data.dir) / cfg.data.mirror.train).read_text().split("\n\n")[1:3001]:
        words = [row.split()[0] for row in line.splitlines() if row.strip() and not row.startswith("-DOCSTART-")]
        if words:
            sentences.append(" ".join(words))
    tokenizer = load_tokenizer(cfg.model)
    encoded = tokenizer(sentences, truncation=True, max_length=128)
    features = datasets.Dataset.from_dict({**encoded, "labels": [[0] * len(ids) for ids in encoded["input_ids"]],
                                           "length": [len(ids) for ids in encoded["input_ids"]]})
    family = family.with_labels(["O", "B-PER", "I-PER"])
    model = load_model(cfg.model, family.codec.auto_model, 42, **family.model_kwargs())
    args = training_arguments(cfg.train, Path("checkpoints"), family.primary_metric, max_length=128)
    collator = family.collator(tokenizer, None)
    times = []
    for _ in range(CALLS + 1):
        start = time.perf_counter()
        choices = measured_fast_path(cfg.train, args, model, features, collator, family.codec.bf16_tolerance)
        times.append(time.perf_counter() - start)
    print(json.dumps({"first_s": times[0], "cached_s": times[1:],
                      "choices": {k: v.reason for k, v in choices.items()}}))


def side(src: Path, cache: Path) -> dict:
    data = os.environ.get("FINETUNE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    env = {**os.environ, "PYTHONPATH": str(src), "FINETUNE_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "FINETUNE_DATA_DIR": data}
    done = subprocess.run([sys.executable, __file__, "--inner"], cwd=cache, env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a commit whose code is measured beside this checkout's")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner()
        return
    with tempfile.TemporaryDirectory(prefix="auto-cost-") as tmp:
        scratch = Path(tmp)
        sources = {"this checkout": REPO / "src"}
        if args.before:
            archive = scratch / "code.tar"
            subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), args.before, "src"], check=True)
            with tarfile.open(archive) as bundle:
                bundle.extractall(scratch / "before", filter="data")
            sources = {f"before ({args.before})": scratch / "before" / "src", **sources}
        results = {}
        for name, src in sources.items():
            cache = scratch / ("cache-" + name.split()[0])
            cache.mkdir()
            results[name] = side(src, cache)
            print(name, results[name], flush=True)
    result = {"measured": provenance(), "sides": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "auto_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# What `auto` costs once its answer is cached", "",
             f"{provenance_text(result['measured'])}; a CPU without bf16 units simulated (bf16 products reported "
             "100x slower). Command: `python bench/probes/auto_cost.py --before REV`. The train stage's "
             "`measured_fast_path` (MiniLM, 3,000 CoNLL sentences, batch 16): the first call fills an empty cache, "
             "the next ones read it.",
             "", "| code | first call s | cached calls s | choices |", "|---|---|---|---|"]
    for name, r in results.items():
        cached = ", ".join(f"{t:.2f}" for t in r["cached_s"])
        choices = "; ".join(f"{k}: {v}" for k, v in r["choices"].items())
        lines.append(f"| {name} | {r['first_s']:.2f} | {cached} | {choices} |")
    (args.out / "auto_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
