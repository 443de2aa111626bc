"""Fast-path choices decided by measurement: bf16 autocast and torch.compile, timed on this machine.

`bf16: auto` and `compile: auto` (conf/train), the evaluate stage and `--precision auto`
(finetune-predict) time real steps of the actual model on batches of the actual shape, both ways,
side by side and alternating, and take the faster way only where it wins by more than the noise of
the measurement itself. bf16 must also pass the task family's quality check: its gradients (training)
or outputs (inference) within the codec's `bf16_tolerance` of fp32's, relative distance, on the same
weights and batch. CPU flags decide nothing: the same flags are fast on one machine and slow on another.

A decision is cached per machine + model + batch shape in `$FINETUNE_CACHE/calibration.json`
(default `~/.cache/finetune-pipeline`), so each shape is measured once, not in every stage. The
measurement runs on copies of the model with the global RNG state saved and restored: the training
that follows is the same whether the decision was measured or read from the cache.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from finetune.io import atomic_file

log = logging.getLogger("finetune")
VERSION = 2  # bump when what is measured changes: older cached decisions are then measured again
ROUNDS = 2  # timed rounds per side, after a warm-up (each pass costs real steps: keep them few)
INFERENCE_ROWS = 16  # inference is timed on the first batch's first rows: the per-row speed is what counts
MIN_ROUND_S = 0.1  # an inference backend's timed round repeats its batch to last about this long
LOSSLESS = 1e-4  # relative output distance of fp32 kernels that differ only in rounding (ONNX fp32: ~1e-7)
MIN_NOISE = 0.03  # a side must beat the other by at least this relative margin
HOPELESS = 2.0  # a side this many times slower than the baseline (plus SLACK_S in a warm-up) is not timed
SLACK_S = 1.0  # a warm-up's one-off set-up (new kernels) must not count a short side out
DECISIVE = 1.5  # after one round each, a side this much faster or slower is settled: larger than any
                # one-round spread of a side measured so far (bench/results/fastpath.json)
PRICING_SHARE = MIN_NOISE  # the most of a run's time `compile: auto` may spend pricing compilation
COMPILE_PRICE_GUESS_S = 60.0  # pricing torch.compile before a machine has done it once (bench/results/fastpath.json)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One measured (or cached) decision and what it rests on."""

    use: bool
    reason: str
    rates: dict[str, float] = dataclasses.field(default_factory=dict)  # real tokens/s per side
    cost_s: float | None = None  # a one-off cost of the candidate (compilation)
    measured_s: float = 0.0  # seconds the measurement took (0 when read from the cache)
    noise: float = MIN_NOISE  # the measurement's own relative spread
    pick: str | None = None  # a choice among several ways: the one taken (the inference backend)

    def summary(self, name: str) -> dict[str, Any]:
        """Flat fields for a run summary: `<name>`, `<name>_<side>_tokens_per_s`, `<name>_cost_s`."""
        cost = {} if self.cost_s is None else {f"{name}_cost_s": round(self.cost_s, 1)}
        return {name: self.use, **{f"{name}_{side}_tokens_per_s": round(rate, 1) for side, rate in self.rates.items()},
                **cost}


def cache_path() -> Path:
    root = os.environ.get("FINETUNE_CACHE") or Path.home() / ".cache" / "finetune-pipeline"
    return Path(root) / "calibration.json"


def machine_key() -> str:
    """What the speed of a kernel depends on: the processor, the threads torch uses, torch itself."""
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{cpu_name()} [{_isa()}]"
    return f"{device}|threads={torch.get_num_threads()}|torch={torch.__version__}"


def model_key(model: Any) -> str:
    """The architecture (not the weights or the label names) of a transformers model."""
    config = {k: v for k, v in model.config.to_dict().items()
              if k not in ("id2label", "label2id", "_name_or_path", "architectures", "transformers_version")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{type(model).__name__}:{digest}"


def cached(key: str, measure: Callable[[], Choice]) -> Choice:
    """The cached choice for `key`, else `measure()`'s, stored for next time (one measurer at a time)."""
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel stages of one sweep measure one after the other
        entries = _read(path)
        if (choice := _stored(entries.get(key))) is not None:
            return choice
        with _isolated():
            choice = measure()
        entries[key] = dataclasses.asdict(choice) | {"version": VERSION, "date": time.strftime("%Y-%m-%d %H:%M")}
        with atomic_file(path) as handle:
            json.dump(entries, handle, indent=1, sort_keys=True)
        return choice


def lookup(key: str) -> Choice | None:
    """The cached choice for `key`, or None: nothing is measured."""
    return _stored(_read(cache_path()).get(key))


def _stored(entry: dict[str, Any] | None) -> Choice | None:
    if not entry or entry.get("version") != VERSION:
        return None  # never measured, or by an older calibration
    return Choice(entry["use"], entry["reason"] + " (cached)", entry.get("rates", {}), entry.get("cost_s"),
                  noise=entry.get("noise", MIN_NOISE), pick=entry.get("pick"))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: measure again
    return data if isinstance(data, dict) else {}


# -- timing ----------------------------------------------------------------------------------

@dataclasses.dataclass
class Side:
    """One way of running a step: `step(batch)`; timed over the same batches as the other sides."""

    name: str
    step: Callable[[dict[str, Any]], None]
    warm_s: float = 0.0
    rounds_s: list[float] = dataclasses.field(default_factory=list)

    @property
    def round_s(self) -> float:
        return statistics.median(self.rounds_s) if self.rounds_s else self.warm_s


def time_sides(sides: list[Side], batches: list[dict[str, Any]], rounds: int = ROUNDS,
               give_up: float | None = HOPELESS, decisive: float | None = DECISIVE,
               warm_all: bool = False, rewarm: bool = False) -> float:
    """Time `rounds` rounds of every side over all batches, alternating the order of the sides,
    after a warm-up on the first (longest) batch, or on every batch with `warm_all` (compilation
    happens per shape). The first side's first round runs right after its warm-up, as the
    reference: a side whose warm-up passes `give_up` times the reference's first batch (plus
    SLACK_S) is stopped there and not timed further (None: never), and when after one round each
    every side is `decisive` times faster or slower than the first, no more rounds run (None: all
    rounds). `rewarm`: each round of a side starts with an untimed batch, so that rounds time the
    side's steady state, not its first batch after another side (ONNX Runtime's threads spin on
    for a while after a run, slowing whatever runs next on a small machine).
    Returns the noise: the relative spread of the first side's rounds (at least MIN_NOISE)."""
    warm = batches if warm_all else batches[:1]
    timed: list[Side] = []
    reference_s = 0.0  # the first side's first batch, in its first round
    for side in sides:
        limit = give_up * reference_s + SLACK_S if timed and give_up else None
        side.warm_s = _run(side, warm, limit)
        if not timed:  # its first round at once: the others' warm-ups are held against it
            reference_s = _run(side, batches[:1])
            side.rounds_s.append(reference_s + _run(side, batches[1:]))
        if limit is None or side.warm_s <= limit:
            timed.append(side)
    for r in range(rounds):
        for side in timed if r % 2 == 0 else reversed(timed):
            if len(side.rounds_s) <= r:
                if rewarm:
                    _run(side, batches[:1])
                side.rounds_s.append(_run(side, batches))
        if r == 0 and decisive and _settled(timed, decisive):
            break
    base = timed[0].rounds_s
    noise = (max(base) - min(base)) / statistics.median(base) if len(base) > 1 else 0.0
    return max(MIN_NOISE, noise)


def _settled(timed: list[Side], decisive: float) -> bool:
    """Whether one round each puts every side `decisive` times faster or slower than the first."""
    ratios = [side.rounds_s[0] / timed[0].rounds_s[0] for side in timed[1:]]
    return bool(ratios) and all(max(ratio, 1 / ratio) >= decisive for ratio in ratios)


def _run(side: Side, batches: list[dict[str, Any]], limit: float | None = None) -> float:
    """Seconds for one pass over the batches; a pass that passes `limit` stops after that batch."""
    start = time.perf_counter()
    for batch in batches:
        side.step(batch)
        if limit is not None and _synced() - start > limit:
            break
    return _synced() - start


def _synced() -> float:
    """The clock once the GPU, if any, has finished what it was given."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def bf16_matmul_ratio(size: int = 512, reps: int = 5) -> float:
    """How many times slower a bf16 matrix product runs than an fp32 one here (below 1: faster).

    A CPU without bf16 units emulates bf16 products orders of magnitude slower: measured in
    milliseconds, this spares timing whole training steps that cannot win."""
    import torch

    device = device_type()
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(size, size, device=device).to(dtype)
        torch.matmul(a, a)
        runs = []
        for _ in range(reps):
            started = time.perf_counter()
            torch.matmul(a, a)
            if device == "cuda":
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - started)
        times[dtype] = statistics.median(runs)
    return times[torch.bfloat16] / times[torch.float32]


def real_tokens(batches: list[dict[str, Any]]) -> int:
    return sum(int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel() for b in batches)


@contextlib.contextmanager
def _isolated() -> Iterator[None]:
    """The global RNG state as it was before, whatever the measurement drew."""
    import torch

    with torch.random.fork_rng(devices=[]):
        yield


# -- bf16 ------------------------------------------------------------------------------------

def device_type() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def twin(model: Any) -> Any:
    """A copy of the model to measure with, on the device training will use."""
    return copy.deepcopy(model).to(device_type())


def training_step(model: Any, bf16: bool) -> Callable[[dict[str, Any]], None]:
    """One optimizer step as the Trainer takes it: forward (+ loss) under autocast, backward, fused AdamW."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def step(batch: dict[str, Any]) -> None:
        loss = _loss(model, batch, bf16)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _loss(model: Any, batch: dict[str, Any], bf16: bool) -> Any:
    import torch

    with torch.autocast(device_type(), dtype=torch.bfloat16, enabled=bf16):
        output = model(**batch)
        loss = output.get("loss")
        return loss if loss is not None else output[0].float().pow(2).mean()  # a batch without labels


def gradient_distance(model: Any, batch: dict[str, Any]) -> float:
    """||g_bf16 - g_fp32|| / ||g_fp32|| of the loss on `batch` at the model's current weights
    (dropout off on both sides)."""
    import torch

    grads = []
    for bf16 in (False, True):
        copied = twin(model).eval()  # no dropout: both sides see the same network
        _loss(copied, batch, bf16).backward()
        grads.append(torch.cat([p.grad.float().flatten() for p in copied.parameters() if p.grad is not None]))
    return float((grads[1] - grads[0]).norm() / grads[0].norm().clamp_min(1e-12))


def output_distance(model: Any, batch: dict[str, Any]) -> float:
    """||o_bf16 - o_fp32|| / ||o_fp32|| of the model's first output on `batch`."""
    import torch

    outputs = []
    for bf16 in (False, True):
        with torch.inference_mode(), torch.autocast(device_type(), dtype=torch.bfloat16, enabled=bf16):
            outputs.append(model(**batch)[0].float())
    return float((outputs[1] - outputs[0]).norm() / outputs[0].norm().clamp_min(1e-12))


def decide(sides: list[Side], batches: list[dict[str, Any]], candidate: str, quality: float | None = None,
           tolerance: float | None = None, started: float | None = None) -> Choice:
    """Take `candidate` (the second side) where it beats the first by more than the noise and,
    when a quality distance is given, stays within `tolerance`."""
    noise = time_sides(sides, batches)
    base, other = sides
    tokens = real_tokens(batches)
    rates = {side.name: tokens / side.round_s for side in sides if side.rounds_s}
    speedup = base.round_s / other.round_s
    if not other.rounds_s:
        use, why = False, f"{candidate}'s first round took {other.warm_s / base.warm_s:.1f}x {base.name}'s"
    elif speedup <= 1 + noise:
        use, why = False, f"{candidate} {speedup:.2f}x {base.name}: not faster beyond the noise ({noise:.0%})"
    else:
        use, why = True, f"{candidate} {speedup:.2f}x {base.name} (noise {noise:.0%})"
    if use and quality is not None and tolerance is not None and quality > tolerance:
        use, why = False, f"{why}, but its distance to fp32 {quality:.3g} exceeds the family's {tolerance:g}"
    elif quality is not None:
        why += f"; distance to fp32 {quality:.3g} (tolerance {tolerance:g})"
    return Choice(use, why, rates, measured_s=time.perf_counter() - started if started else 0.0, noise=noise)


def training_bf16(model: Any, batches: list[dict[str, Any]], tolerance: float) -> Choice:
    """bf16 autocast for training this model on these batches: measured (or cached) decision."""
    from finetune.precision import keep_cpu_attention_fp32

    keep_cpu_attention_fp32()  # what the bf16 training will run

    def measure() -> Choice:
        started = time.perf_counter()
        if (ratio := bf16_matmul_ratio()) > HOPELESS:
            return Choice(False, f"a bf16 matrix product takes {ratio:.0f}x an fp32 one here (no bf16 units)")
        distance = gradient_distance(model, batches[0])
        sides = [Side("fp32", training_step(twin(model), False)), Side("bf16", training_step(twin(model), True))]
        return decide(sides, batches, "bf16", distance, tolerance, started)

    return _logged("bf16 (training)", cached(_key("train-bf16", model, batches, tolerance), measure))


def inference_bf16(model: Any, batch: dict[str, Any], tolerance: float) -> Choice:
    """bf16 autocast for inference with this model on batches like `batch`."""
    import torch

    def forward(bf16: bool) -> Callable[[dict[str, Any]], None]:
        def step(inputs: dict[str, Any]) -> None:
            with torch.inference_mode(), torch.autocast(device_type(), dtype=torch.bfloat16, enabled=bf16):
                model(**inputs)
        return step

    rows = {name: tensor[:INFERENCE_ROWS] for name, tensor in batch.items()}

    def measure() -> Choice:
        started = time.perf_counter()
        if (ratio := bf16_matmul_ratio()) > HOPELESS:
            return Choice(False, f"a bf16 matrix product takes {ratio:.0f}x an fp32 one here (no bf16 units)")
        return decide([Side("fp32", forward(False)), Side("bf16", forward(True))], [rows], "bf16",
                      output_distance(model, rows), tolerance, started)

    return _logged("bf16 (inference)", cached(_key("infer-bf16", model, [rows], tolerance), measure))


def inference_backend(model: Any, backends: dict[str, Callable[[dict[str, Any]], list[Any]]],
                      batch: dict[str, Any], tolerance: float) -> Choice:
    """The fastest of `backends` (name -> callable on numpy batches; the first is the PyTorch fp32
    reference) on batches like `batch` (timed on it whole), among those whose first output stays within `tolerance` of
    the reference's (relative distance); the reference unless another beats it beyond the noise."""
    import numpy as np

    rows = batch  # the whole batch: which backend is fastest changes with the rows (bf16 gains on larger products)
    names = list(backends)

    def measure() -> Choice:
        started = time.perf_counter()
        slow = [name for name, run in backends.items() if getattr(run, "bf16", False)]
        if slow and (ratio := bf16_matmul_ratio()) > HOPELESS:  # not worth a warm-up: bf16 is emulated here
            log.info("inference backend: %s left out: a bf16 matrix product takes %.0fx an fp32 one here",
                     ", ".join(slow), ratio)
            names[:] = [name for name in names if name not in slow]
        reference = backends[names[0]](rows)[0]
        scale = max(float(np.linalg.norm(reference)), 1e-12)
        distance = {name: float(np.linalg.norm(backends[name](rows)[0] - reference)) / scale for name in names[1:]}
        # a lossy backend is judged on at least INFERENCE_ROWS rows: one short text can sit close by luck
        lossless = LOSSLESS if len(reference) < INFERENCE_ROWS else tolerance
        within = [names[0], *[name for name in names[1:] if distance[name] <= min(tolerance, lossless)]]
        sides = [Side(name, lambda inputs, run=backends[name]: run(inputs)) for name in within]
        once = _run(sides[0], [rows])  # a small batch runs in milliseconds: time enough of them to see past noise
        batches = [rows] * max(1, min(50, round(MIN_ROUND_S / max(once, 1e-6))))
        noise = time_sides(sides, batches, rewarm=True) if len(sides) > 1 else MIN_NOISE
        tokens = int(rows["attention_mask"].sum()) * len(batches)
        rates = {side.name: tokens / side.round_s for side in sides if side.rounds_s}
        best = max(rates, key=rates.__getitem__)
        if best != names[0] and rates[best] <= rates[names[0]] * (1 + noise):
            best = names[0]
        why = (f"{best}: {rates[best] / rates[names[0]]:.2f}x {names[0]} (noise {noise:.0%}); distance to "
               f"{names[0]}: " + ", ".join(f"{name} {d:.3g}" for name, d in distance.items())
               + f" (tolerance {tolerance:g})")
        return Choice(best != names[0], why, rates, measured_s=time.perf_counter() - started, noise=noise, pick=best)

    key = _key("infer-backend:" + "+".join(names), model, [rows], tolerance)
    return _logged("inference backend", cached(key, measure))


# -- torch.compile ---------------------------------------------------------------------------

def training_compile(model: Any, batches: list[dict[str, Any]], steps: int, bf16: bool,
                     eager_rate: float | None = None) -> Choice:
    """torch.compile for a training run of `steps` micro-batches like `batches`: compiled only where
    compiling plus the compiled steps take less than the eager steps over the whole run.

    What compiling costs and how much faster the compiled steps run is measured once per machine,
    model and precision (the compiled graph takes dynamic shapes); each run's decision applies
    them to its own steps and tokens, at `eager_rate` (real tokens/s of these batches, when the
    bf16 measurement has just timed them; else timed here). Pricing compilation takes as long as
    compiling, so a run prices it only when that costs at most PRICING_SHARE of its own eager time:
    `auto` never makes a short run slower to learn about compiling.
    """
    tokens = steps * real_tokens(batches) / len(batches)
    key = "|".join([f"v{VERSION}", f"compile-{'bf16' if bf16 else 'fp32'}", machine_key(), model_key(model)])
    profile = lookup(key)
    if profile is None:
        eager_s = tokens / (eager_rate or _eager_rate(model, batches, bf16))
        price = pricing_s()
        if eager_s * PRICING_SHARE < price:
            return _logged("torch.compile (training)", Choice(
                False, f"{steps} steps: eager ~{eager_s:.0f} s; pricing compilation here (~{price:.0f} s) would "
                       f"cost more than {PRICING_SHARE:.0%} of the run: not priced"))
        profile = cached(key, lambda: _compile_profile(model, batches, bf16))
    if "compiled" not in profile.rates:
        return _logged("torch.compile (training)", profile)
    eager_s = tokens / (eager_rate or profile.rates["eager"])
    compiled_s = eager_s * profile.rates["eager"] / profile.rates["compiled"]
    cost = profile.cost_s or 0.0
    use = cost + compiled_s < eager_s / (1 + profile.noise)
    why = (f"{steps} steps: eager ~{eager_s:.0f} s, compiled ~{cost:.0f} s to compile + {compiled_s:.0f} s "
           f"(noise {profile.noise:.0%}){' (cached)' if profile.reason.endswith('(cached)') else ''}")
    return _logged("torch.compile (training)", Choice(use, why, profile.rates, cost, noise=profile.noise))


def pricing_s() -> float:
    """Seconds pricing compilation takes on this machine: the longest it took for any model
    priced here, else COMPILE_PRICE_GUESS_S."""
    machine = f"|{machine_key()}|"
    taken = [entry.get("measured_s") or 0.0 for key, entry in _read(cache_path()).items()
             if "|compile-" in key and machine in key and entry.get("version") == VERSION]
    return max(taken, default=COMPILE_PRICE_GUESS_S)


def _eager_rate(model: Any, batches: list[dict[str, Any]], bf16: bool) -> float:
    """Real tokens/s of eager training steps on these batches (after a warm-up pass), measured once
    per machine, model, precision and shape: a run too short to price compilation would otherwise
    time its steps again at every start (a CPU without bf16 units has no bf16 rates to reuse)."""
    def measure() -> Choice:
        side = Side("eager", training_step(twin(model), bf16))
        time_sides([side], batches, rounds=1)
        return Choice(False, "eager training steps timed", {"eager": real_tokens(batches) / side.round_s})

    return cached(_key(f"train-eager-{'bf16' if bf16 else 'fp32'}", model, batches), measure).rates["eager"]


def _compile_profile(model: Any, batches: list[dict[str, Any]], bf16: bool) -> Choice:
    """Seconds to compile the training step and the rates eager vs compiled: `rates` {eager,
    compiled}, `cost_s` the compilation, `measured_s` the whole pricing."""
    import torch

    started = time.perf_counter()
    eager = Side("eager", training_step(twin(model), bf16))
    compiled = Side("compiled", training_step(torch.compile(twin(model)), bf16))
    try:
        noise = time_sides([eager, compiled], batches, give_up=None, decisive=None, warm_all=True)  # the cost
    except Exception as error:  # noqa: BLE001 - no C++ compiler, an unsupported op: eager it is
        return Choice(False, f"torch.compile failed: {str(error).strip().splitlines()[0][:200]}",
                      measured_s=time.perf_counter() - started)
    tokens = real_tokens(batches)
    return Choice(eager.round_s > compiled.round_s * (1 + noise),
                  f"compiled steps {eager.round_s / compiled.round_s:.2f}x eager",
                  {side.name: tokens / side.round_s for side in (eager, compiled)},
                  max(0.0, compiled.warm_s - compiled.round_s), time.perf_counter() - started, noise)


# --------------------------------------------------------------------------------------------

def _key(kind: str, model: Any, batches: list[dict[str, Any]], tolerance: float | None = None) -> str:
    # rows and length in powers of two: the shapes AutoBackend keeps one decision for
    shapes = "+".join(f"{bucket(b['input_ids'].shape[0])}x{bucket(b['input_ids'].shape[1])}" for b in batches[:1])
    return "|".join([f"v{VERSION}", kind, machine_key(), model_key(model), f"{len(batches)}:{shapes}",
                     f"tol={tolerance}"])


def bucket(length: int) -> int:
    """A batch's rows or length rounded up to a power of two: one cached decision per range."""
    return 1 << max(0, int(length) - 1).bit_length()


def _logged(what: str, choice: Choice) -> Choice:
    rates = ", ".join(f"{side} {rate:.0f}" for side, rate in choice.rates.items())
    log.info("%s: %s — %s (tokens/s: %s)", what, "on" if choice.use else "off", choice.reason, rates or "n/a")
    return choice


def _isa() -> str:
    """The vector and matrix extensions of this CPU (VMs of one name differ in them)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
