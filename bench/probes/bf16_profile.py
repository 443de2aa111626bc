"""Where a CPU training step spends its time, fp32 vs bf16 autocast, op by op (torch.profiler).

    python bench/probes/bf16_profile.py [--steps 20] [--out bench/results/bf16_profile.json]

The step of our train stage on MiniLM (sequence classification, fused AdamW, attention dropout 0,
the harness's threads): forward + loss under `torch.autocast("cpu", bfloat16)` or not, backward,
optimizer step; and a third mode, bf16 with the attention kernel kept in fp32 as the train stage
runs it (finetune.precision.keep_cpu_attention_fp32). Two batch shapes: a fixed
16 x 128, and 32 rows whose length changes every step (12-70 tokens, as length-grouped headline
batches do). Each mode is warmed up on every shape it will see, then profiled; the table is self
CPU time per op name, per step, the modes side by side, plus the step time outside the profiler.
Prints Markdown; writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))  # also when run by hand
from measure import attention_in_bf16, set_threads  # noqa: E402

LENGTHS = (12, 21, 33, 46, 58, 70)


def model_and_optimizer(seed: int = 0) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification

    from finetune.config import compose
    from finetune.models import resolve_source

    torch.manual_seed(seed)
    source = resolve_source(compose(Path(__file__).resolve().parents[2], ["model=minilm"]).model)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2, attention_probs_dropout_prob=0.0)
    model.train()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)


def batches(shape: str, steps: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    sizes = [(16, 128)] * steps if shape == "fixed" else [(32, LENGTHS[i % len(LENGTHS)]) for i in range(steps)]
    return [{"input_ids": torch.randint(1000, 20000, size, generator=generator),
             "attention_mask": torch.ones(size, dtype=torch.long),
             "labels": torch.randint(0, 2, (size[0],), generator=generator)} for size in sizes]


MODES = {"fp32": (False, False), "bf16": (True, False), "bf16_attn_fp32": (True, True)}


def step(model: Any, optimizer: Any, batch: dict[str, torch.Tensor], bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure(shape: str, mode: str, steps: int) -> dict[str, Any]:
    bf16, attn_fp32 = MODES[mode]
    with contextlib.nullcontext() if attn_fp32 else attention_in_bf16():
        return _measure(shape, bf16, steps)


def _measure(shape: str, bf16: bool, steps: int) -> dict[str, Any]:
    model, optimizer = model_and_optimizer()
    work = batches(shape, steps)
    for batch in work[:len(LENGTHS)]:  # every shape once: kernel set-up is not what we time
        step(model, optimizer, batch, bf16)
    times = []
    for batch in work:
        start = time.perf_counter()
        step(model, optimizer, batch, bf16)
        times.append(time.perf_counter() - start)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for batch in work:
            step(model, optimizer, batch, bf16)
    ops = {event.key: event.self_cpu_time_total / 1e3 / steps for event in profiler.key_averages()}
    tokens = sum(int(b["attention_mask"].sum()) for b in work) / steps
    return {"step_ms": 1e3 * statistics.median(times), "tokens_per_step": tokens, "ops_ms": ops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=18)
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "results" / "bf16_profile.json")
    args = parser.parse_args()
    set_threads()
    from finetune.calibration import cpu_name
    from finetune.precision import keep_cpu_attention_fp32

    keep_cpu_attention_fp32()  # the train stage's fix; the plain bf16 mode sets it aside

    result: dict[str, Any] = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                              "steps": args.steps, "shapes": {}}
    for shape in ("fixed", "varying"):
        result["shapes"][shape] = {mode: measure(shape, mode, args.steps) for mode in MODES}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result, args.top))


def render(result: dict[str, Any], top: int) -> str:
    lines = [f"CPU: {result['cpu']}; {result['threads']} threads; torch {result['torch']}; "
             f"{result['steps']} profiled steps per mode", ""]
    for shape, modes in result["shapes"].items():
        fp32, bf16, mixed = modes["fp32"], modes["bf16"], modes["bf16_attn_fp32"]
        label = "16 x 128" if shape == "fixed" else f"32 x {'/'.join(map(str, LENGTHS))} (changing every step)"
        lines += [f"### {label}: step {fp32['step_ms']:.0f} ms fp32, {bf16['step_ms']:.0f} ms bf16 "
                  f"({fp32['step_ms'] / bf16['step_ms']:.2f}x), {mixed['step_ms']:.0f} ms bf16 with fp32 attention "
                  f"({fp32['step_ms'] / mixed['step_ms']:.2f}x)", "",
                  "| op | fp32 ms/step | bf16 ms/step | bf16 − fp32 | bf16, fp32 attention |", "|---|---|---|---|---|"]
        names = sorted(set(fp32["ops_ms"]) | set(bf16["ops_ms"]),
                       key=lambda n: -max(fp32["ops_ms"].get(n, 0), bf16["ops_ms"].get(n, 0)))
        for name in names[:top]:
            a, b = fp32["ops_ms"].get(name, 0.0), bf16["ops_ms"].get(name, 0.0)
            c = mixed["ops_ms"].get(name, 0.0)
            lines.append(f"| `{name}` | {a:.1f} | {b:.1f} | {b - a:+.1f} | {c:.1f} |")
        totals = [sum(mode["ops_ms"].values()) for mode in (fp32, bf16, mixed)]
        lines += [f"| all ops | {totals[0]:.1f} | {totals[1]:.1f} | {totals[1] - totals[0]:+.1f} | {totals[2]:.1f} |",
                  ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
