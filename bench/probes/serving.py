"""`mlflow models serve` of an export under concurrent load from 127.0.0.1.

    python bench/probes/serving.py                        # every setup, writes bench/results/serving.{json,md}
    python bench/probes/serving.py --before ad9653a       # adds the served code of that commit as `before`
    python bench/probes/serving.py --setups batched --seconds 5

Each setup saves the export as an MLflow pyfunc model with one version of this project's code
(`--before REV`: that commit's `src/finetune`), serves it with `mlflow models serve --env-manager
local` in its own process group and settings, then runs each load cell for `--seconds`: C clients,
each one keep-alive connection sending requests of T short texts (sarcasm headlines) back to back.
Per cell: texts/s, p50 / p99 latency, errors, and the server's peak memory (all its processes).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = Path(os.environ.get("FINETUNE_DATA_DIR", REPO.parent / "shared" / "data"))
sys.path[:0] = [str(HERE.parent / "helpers"), str(REPO / "src")]
from common import provenance, provenance_text, table  # noqa: E402

CELLS = [(1, 1), (8, 1), (32, 1), (1, 32), (8, 32)]  # (clients, texts per request)
# name: (what it is, server environment, extra `mlflow models serve` arguments)
SETUPS = {
    "before": ("the code of --before, one worker", {}, []),
    "unbatched": ("one request per model call, one worker", {"FINETUNE_MAX_BATCH": "0"}, []),
    "unbatched-2-workers": ("one request per model call, two workers of one thread each",
                            {"FINETUNE_MAX_BATCH": "0", "OMP_NUM_THREADS": "1"}, ["--workers", "2"]),
    "onnx-unbatched": ("ONNX Runtime fp32, one request per model call", {"FINETUNE_MAX_BATCH": "0",
                                                                         "FINETUNE_BACKEND": "onnx"}, []),
    "batched-0ms": ("concurrent requests in one model call: only those queued while the model ran",
                    {"FINETUNE_BATCH_WAIT_MS": "0"}, []),
    "batched": ("concurrent requests in one model call, the first waiting 2 ms for others (the default)", {}, []),
}


def headlines(count: int) -> list[str]:
    with open(DATA / "sarcasm" / "Sarcasm_Headlines_Dataset.json", encoding="utf-8") as handle:
        return [json.loads(line)["headline"] for _, line in zip(range(count), handle, strict=False)]


def code_of(rev: str | None, scratch: Path) -> Path:
    """The `finetune` package folder of commit `rev` (None: this checkout's)."""
    if rev is None:
        return REPO / "src" / "finetune"
    archive = scratch / "code.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), rev, "src/finetune"], check=True)
    with tarfile.open(archive) as bundle:
        bundle.extractall(scratch / rev, filter="data")
    return scratch / rev / "src" / "finetune"


def save_model(export: Path, code: Path, folder: Path) -> None:
    """The export as a pyfunc model carrying `code`, as the export stage logs it."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from finetune.export.mlflow_model import ExportedModel
    from finetune.inference import ARTIFACT

    signature = ModelSignature(inputs=Schema([ColSpec("string", "text")]))
    mlflow.pyfunc.save_model(str(folder), python_model=ExportedModel(), artifacts={ARTIFACT: str(export)},
                             code_paths=[str(code)], signature=signature)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(folder: Path, env: dict[str, str], extra: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", str(folder), "--env-manager",
           "local", "--host", "127.0.0.1", "--port", str(port), *extra]
    server = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return server, port
        except OSError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.5)
    stop(server)
    raise SystemExit(f"the server did not start:\n{log.read_text()[-2000:]}")


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


def load(port: int, server_pid: int, clients: int, per_request: int, seconds: float, texts: list[str]) -> dict:
    """`clients` threads sending requests back to back for `seconds`; latencies of every answered one."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    peak = [tree_rss(server_pid)]

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        sent = number * per_request
        while time.monotonic() < stop_at:
            chosen = [texts[(sent + i) % len(texts)] for i in range(per_request)]
            sent += per_request * clients
            body = json.dumps({"dataframe_records": [{"text": t} for t in chosen]})
            start = time.perf_counter()
            try:
                connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
                ok = response.status == 200 and len(json.loads(answer)["predictions"]) == per_request
            except (OSError, http.client.HTTPException, ValueError) as error:
                ok, answer = False, str(error).encode()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            took = time.perf_counter() - start
            with lock:
                (latencies.append(took) if ok else errors.append(answer[:200].decode(errors="replace")))

    def sample() -> None:
        while time.monotonic() < stop_at:
            peak[0] = max(peak[0], tree_rss(server_pid))
            time.sleep(0.2)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)] + [threading.Thread(target=sample)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    latencies.sort()

    def quantile(q: float) -> float | None:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None

    return {"clients": clients, "texts_per_request": per_request, "requests": len(latencies),
            "texts_per_s": round(len(latencies) * per_request / wall, 1), "p50_ms": quantile(0.50),
            "p99_ms": quantile(0.99), "errors": len(errors), "error_sample": errors[:1],
            "peak_memory_mb": round(peak[0] / 2**20)}


def run_setup(name: str, export: Path, code: Path, scratch: Path, seconds: float, texts: list[str]) -> dict:
    what, env, extra = SETUPS[name]
    folder = scratch / name / "model"
    save_model(export, code, folder)
    server, port = serve(folder, env, extra, scratch / name / "server.log")
    try:
        cells = []
        for clients, per_request in CELLS:
            # a warm-up at the cell's own load: first calls of a shape load kernels, backend `auto` times it
            load(port, server.pid, clients, per_request, 2.0, texts)
            cell = load(port, server.pid, clients, per_request, seconds, texts)
            print(f"  {name}: {clients} clients x {per_request} texts: {cell['texts_per_s']} texts/s, "
                  f"p50 {cell['p50_ms']} ms, p99 {cell['p99_ms']} ms, {cell['errors']} errors", flush=True)
            cells.append(cell)
    finally:
        stop(server)
    return {"setup": name, "what": what, "env": env, "serve_args": extra, "cells": cells}


def render(result: dict) -> str:
    rows = []
    for setup in result["setups"]:
        for c in setup["cells"]:
            rows.append([setup["setup"], c["clients"], c["texts_per_request"], c["texts_per_s"], c["p50_ms"],
                         c["p99_ms"], c["errors"], c["peak_memory_mb"]])
    lines = [
        "# Serving under load", "",
        f"`mlflow models serve` of `{result['export']}` ({provenance_text(result['measured'])}), load from "
        f"127.0.0.1 in the same machine, {result['seconds']:.0f} s per cell after 2 s of the same load; short texts "
        "(sarcasm headlines). Command: `python bench/probes/serving.py"
        + (f" --before {result['before']}" if result.get("before") else "") + "`.", "",
        "| setup | what |", "|---|---|",
        *[f"| {s['setup']} | {s['what']} |" for s in result["setups"]], "",
        table(["setup", "clients", "texts / request", "texts/s", "p50 ms", "p99 ms", "errors", "peak MB"], rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, default=REPO / "exports" / "sentiment-minilm")
    parser.add_argument("--before", help="a commit whose served code is measured as the `before` setup")
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated, from: " + ", ".join(SETUPS))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    names = [n for n in args.setups.split(",") if n != "before" or args.before]
    texts = headlines(2000)
    with tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        scratch = Path(tmp)
        setups = [run_setup(name, args.export.resolve(), code_of(args.before if name == "before" else None, scratch),
                            scratch, args.seconds, texts) for name in names]
    result = {"export": os.path.relpath(args.export.resolve(), REPO), "before": args.before,
              "seconds": args.seconds, "measured": provenance(), "setups": setups}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "serving.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
