"""Comparison 8: inference backends on the exported MiniLM models.

PyTorch fp32 eager, PyTorch bf16 autocast, ONNX Runtime fp32 (`model.onnx`) and ONNX Runtime with
dynamic int8 weights (`model.int8.onnx`), each in its own process with the harness's threads:
speed on batches of 32 IMDB test reviews cut to exactly 128 real tokens (texts/s, the sides
interleaved over the repetitions), and each backend's eval metric through the export's own decoder
on the sentiment (IMDB test, 500 reviews) and NER (CoNLL-2003 test) evaluation sets.

Needs the default matrix's exports (`dvc repro export@sentiment-minilm export@ner-minilm`).
Check: the fastest backend whose metrics stay within 0.5 pt of fp32 runs >= 2x fp32 eager.
"""

from __future__ import annotations

import json
from typing import Any

from common import PROBES, PYTHON, REPO, WORK, BenchError, Context, commands_block, fmt, median, table, verdict

NAME = "inference"
TITLE = "8. Inference backends (exported MiniLM)"
BACKENDS = ("torch-fp32", "torch-bf16", "onnx", "onnx-int8")
TASKS = {"sentiment": "test", "ner": "test"}
PROBE = PROBES / "inference_rate.py"
PLOT = "inference.png"
TOLERANCE_PT = 0.5
TARGET = 2.0


def run(ctx: Context) -> dict[str, Any]:
    exports = {task: REPO / "exports" / f"{task}-minilm" for task in TASKS}
    for task, folder in exports.items():
        if not (folder / "model.int8.onnx").exists():
            raise BenchError(f"{folder} has no ONNX files: run `dvc repro export@{task}-minilm` first")
    texts = WORK / NAME / "imdb_test_texts.json"
    texts.parent.mkdir(parents=True, exist_ok=True)
    _write_texts(texts, 400)
    reps, batches = (1, 2) if ctx.quick else (3, 10)
    speeds: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for rep in range(reps):
        for backend in BACKENDS:  # interleaved: a drift of the machine hits every side alike
            print(f"[{NAME}] speed {backend} rep {rep + 1}/{reps}", flush=True)
            out = _probe(ctx, [exports["sentiment"], backend, "--speed", texts, "--batches", str(batches)],
                         f"speed-{backend}-{rep}")
            speeds[backend].append(out["texts_per_s"])
    metrics: dict[str, dict[str, Any]] = {task: {} for task in TASKS}
    for task, split in TASKS.items():
        tokenized = REPO / "data" / "tokenized" / f"{task}-minilm"
        for backend in BACKENDS:
            print(f"[{NAME}] {task} metric {backend}", flush=True)
            metrics[task][backend] = _probe(ctx, [exports[task], backend, "--metric", tokenized, "--split", split],
                                            f"metric-{task}-{backend}")
    rates = {b: median(v) for b, v in speeds.items()}
    deltas = {b: {t: 100 * (metrics[t][b]["value"] - metrics[t]["torch-fp32"]["value"]) for t in TASKS}
              for b in BACKENDS}
    eligible = [b for b in BACKENDS if all(abs(d) <= TOLERANCE_PT for d in deltas[b].values())]
    fastest = max(eligible, key=rates.get)
    result = {"speeds": speeds, "texts_per_s": rates, "metrics": metrics, "delta_pt": deltas,
              "fastest_within_tolerance": fastest, "speedup": rates[fastest] / rates["torch-fp32"],
              "passed": rates[fastest] / rates["torch-fp32"] >= TARGET, "reps": reps, "batches": batches,
              "commands": ctx.commands}
    plot(result, ctx.results_dir / PLOT)
    return result


def plot(result: dict[str, Any], path) -> None:  # noqa: ANN001
    """Speed against fp32 eager (bars, each repetition a dot) beside each backend's metric change."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = result["texts_per_s"]["torch-fp32"]
    fig, (speed, quality) = plt.subplots(1, 2, figsize=(11, 4))
    positions = range(len(BACKENDS))
    ratios = [result["texts_per_s"][b] / base for b in BACKENDS]
    colors = ["tab:green" if b == result["fastest_within_tolerance"] else "tab:blue" for b in BACKENDS]
    speed.bar(positions, ratios, color=colors)
    for i, backend in enumerate(BACKENDS):
        speed.plot([i] * len(result["speeds"][backend]), [v / base for v in result["speeds"][backend]], "k.")
        speed.text(i, ratios[i] + 0.05, f"{result['texts_per_s'][backend]:.0f}/s", ha="center", fontsize=8)
    speed.axhline(TARGET, color="tab:red", linestyle="--", linewidth=1, label=f"target {TARGET:g}×")
    speed.set(xticks=list(positions), xticklabels=BACKENDS, ylabel="texts/s vs torch fp32 eager",
              title="speed, 32 × 128 real tokens")
    speed.legend(loc="upper right")
    width = 0.38
    for offset, task in ((-width / 2, "sentiment"), (width / 2, "ner")):
        quality.bar([i + offset for i in positions], [result["delta_pt"][b][task] for b in BACKENDS], width,
                    label="sentiment accuracy" if task == "sentiment" else "NER entity F1")
    quality.axhspan(-TOLERANCE_PT, TOLERANCE_PT, color="tab:gray", alpha=0.15, label=f"±{TOLERANCE_PT} pt")
    quality.axhline(0, color="black", linewidth=0.8)
    quality.set(xticks=list(positions), xticklabels=BACKENDS, ylabel="Δ vs torch fp32 (points)",
                title="metric change")
    quality.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _probe(ctx: Context, args: list[Any], tag: str) -> dict[str, Any]:
    log = WORK / NAME / f"{tag}.log"
    ctx.run([PYTHON, PROBE, *args], log=log)
    return json.loads(log.read_text().strip().splitlines()[-1])


def _write_texts(path, n: int) -> None:  # noqa: ANN001
    """The first `n` IMDB test reviews of the sentiment pair's tokenized examples."""
    import datasets

    examples = datasets.load_from_disk(str(REPO / "data" / "tokenized" / "sentiment-minilm" / "examples"))["test"]
    path.write_text(json.dumps(examples["text"][:n]))


def checks(inf: dict[str, Any]) -> list[list[str]]:
    """This comparison's targets: [target, measured, pass/fail] rows for BENCHMARKS.md's checks."""
    rows: list[list[str]] = []
    rows.append(["inference: fastest backend within 0.5 pt of fp32 ≥ 2× fp32 eager (32 × 128 real tokens)",
                 f"`{inf['fastest_within_tolerance']}` {inf['speedup']:.2f}×", verdict(inf["passed"])])
    return rows


def render(result: dict[str, Any]) -> str:
    base = result["texts_per_s"]["torch-fp32"]
    rows = []
    for backend in BACKENDS:
        m = {t: result["metrics"][t][backend] for t in TASKS}
        rate = result["texts_per_s"][backend]
        rows.append([f"`{backend}`", fmt(rate), f"{rate / base:.2f}×",
                     fmt(100 * m["sentiment"]["value"], 2), f"{result['delta_pt'][backend]['sentiment']:+.2f}",
                     fmt(100 * m["ner"]["value"], 2), f"{result['delta_pt'][backend]['ner']:+.2f}",
                     fmt(m["sentiment"]["seconds"]), fmt(m["ner"]["seconds"])])
    fastest = result["fastest_within_tolerance"]
    verdict = "pass" if result["passed"] else "FAIL"
    parts = [f"Speed: batches of 32 IMDB test reviews cut to exactly 128 real tokens, median of {result['reps']} "
             f"interleaved runs of {result['batches']} batches each (after 2 warm-up batches). Metrics: each backend "
             "through the export's own decoder (`finetune.inference.Predictor`) on the whole evaluation split, "
             "batched by length: sentiment accuracy on the 500 IMDB test reviews, NER entity F1 on CoNLL-2003 test "
             "(×100, Δ against fp32 eager).", "",
             table(["backend", "texts/s (32×128)", "vs fp32", "sentiment acc", "Δ pt", "NER F1", "Δ pt",
                    "sentiment eval s", "NER eval s"], rows), "",
             f"Fastest backend within {TOLERANCE_PT} pt of fp32 on both sets: **`{fastest}`**, "
             f"{result['speedup']:.2f}× fp32 eager (target ≥ {TARGET:g}×: {verdict}).", "",
             f"![inference backends: speed and metric change](bench/results/{PLOT})"]
    return "\n".join([*parts, "", commands_block(result.get("commands", []))])
