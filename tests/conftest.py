"""Shared fixtures: offline Hugging Face, a temporary MLflow store, the real data mirror."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FINETUNE_DATA_DIR", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # One torch thread per worker (and per process it starts): N workers on N cores. Two threads a
    # worker would put twice as many busy threads as cores, and torch's threads slow each other down
    # far more than they gain on tiny models.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
# Measured fast-path choices are cached per test process, never in the user's ~/.cache.
os.environ.setdefault("FINETUNE_CACHE", tempfile.mkdtemp(prefix="finetune-cache-"))
os.environ.setdefault("GIT_AUTHOR_NAME", "finetune-tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@example.invalid")
os.environ.setdefault("GIT_COMMITTER_NAME", "finetune-tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@example.invalid")
if SHARED_DATA.is_dir():
    os.environ["FINETUNE_DATA_DIR"] = str(SHARED_DATA)


# pytest-xdist hands each worker whole modules (--dist loadfile), in collection order, as it frees
# up: the longest modules go first, so that no worker is left alone with a long one at the end.
LONGEST_FIRST = ("test_dvc.py", "test_checkpoints.py", "test_bad_inputs.py", "test_dvc_experiments.py",
                 "test_sweep.py", "test_tracking.py", "test_offline.py", "test_dvc_remote.py",
                 "test_mlflow_postgres.py", "test_optuna_sweeper.py", "test_calibration.py", "test_report.py",
                 "test_distributed.py", "test_pipeline.py", "test_registry.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module keeps its order


def needs_shared(*parts: str) -> Path:
    """The path under the shared data mirror, or skip the test saying what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the shared data mirror ({path} not found; set FINETUNE_DATA_DIR)")
    return path


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test logs to its own SQLite store, never to the repository's mlflow.db."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def headline_rows(n: int, seed: int = 0) -> list[dict]:
    """Sarcasm-shaped rows whose label is learnable from one word (so a tiny model can learn it)."""
    import random

    rng = random.Random(seed)
    words = ["report", "local", "man", "area", "nation", "study", "finds", "new", "city", "plan"]
    rows = []
    for i in range(n):
        sarcastic = i % 2
        body = " ".join(rng.choice(words) for _ in range(rng.randint(4, 9)))
        marker = "totally" if sarcastic else "officially"
        rows.append({"article_link": f"https://example.invalid/{i}", "headline": f"{marker} {body}",
                     "is_sarcastic": sarcastic})
    return rows


DRUGS = ["aspirin", "ibuprofen", "metformin", "warfarin"]
DOSES = [("100", "mg"), ("20", "ml"), ("5", "mg"), ("1", "g")]


def tokenized_headlines(work: Path, rows: int, overrides: list[str]) -> Path:
    """`work` holding `rows` learnable headlines (headlines.jsonl), downloaded and tokenized as the
    stages would for `overrides` (their `paths.*` are for stage processes run there later)."""
    from finetune.config import compose
    from finetune.pipeline.download import download
    from finetune.pipeline.tokenize import tokenize

    write_jsonl(work / "headlines.jsonl", headline_rows(rows))
    cfg = compose(REPO, [o for o in overrides if not o.startswith("paths.")], workdir=work)
    download(cfg)
    tokenize(cfg)
    return work


def user_corpus(path: Path, n: int, offset: int) -> list[list[tuple[str, str]]]:
    """Sentences like `take aspirin 100 mg daily` in 2 tab-separated columns, with own entity types."""
    sentences = []
    for i in range(n):
        drug = DRUGS[(i + offset) % len(DRUGS)]
        amount, unit = DOSES[(i * 3 + offset) % len(DOSES)]
        words = [("patient", "O"), ("takes", "O"), (drug, "B-DRUG"), (amount, "B-DOSE"), (unit, "I-DOSE")]
        if i % 2:
            words += [("twice", "O"), ("daily", "O")]
        sentences.append(words)
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n",
                    encoding="utf-8")
    return sentences


def write_tiny_squad(path: Path, n_paragraphs: int, prefix: str) -> list[str]:
    """A SQuAD v1.1 file whose answer is always the name after 'named' (learnable, a bit)."""
    names = ["Ada", "Bela", "Cyrus", "Dana", "Elio", "Fern", "Gus", "Hana"]
    paragraphs, ids = [], []
    for p in range(n_paragraphs):
        name = names[p % len(names)]
        context = f"In the year {1900 + p} a small boat named {name} sailed from the harbour to the island."
        qas = []
        for q, question in enumerate(["What was the boat named?", "Which boat sailed?",
                                      "When did the boat sail?"]):
            answer = name if q < 2 else str(1900 + p)
            qid = f"{prefix}-{p}-{q}"
            ids.append(qid)
            qas.append({"id": qid, "question": question,
                        "answers": [{"text": answer, "answer_start": context.index(answer)}]})
        paragraphs.append({"context": context, "qas": qas})
    path.write_text(json.dumps({"data": [{"title": "Boats", "paragraphs": paragraphs}], "version": "1.1"}))
    return ids


def export_overrides(work: Path, task: str, *overrides: str) -> list[str]:
    """The overrides of a tiny run of `task` on a small user corpus, whose files it writes below `work`."""
    work.mkdir(parents=True, exist_ok=True)
    if task == "mrpc":
        data = [f"data.files.train={write_jsonl(work / 'pairs.jsonl', pair_rows(160))}",
                f"data.files.test={write_jsonl(work / 'pairs-dev.jsonl', pair_rows(40, seed=1))}",
                "data.format=jsonl", "train.num_train_epochs=6", "train.learning_rate=3e-3"]
    elif task == "stsb":
        data = [f"data.files.train={write_jsonl(work / 'scored.jsonl', scored_pair_rows(160))}",
                f"data.files.test={write_jsonl(work / 'scored-dev.jsonl', scored_pair_rows(40, seed=1))}",
                "data.format=jsonl", "data.id_column=null", "train.num_train_epochs=6", "train.learning_rate=3e-3"]
    elif task == "goemotions":
        data = [f"data.files.{split}={write_emotions(work / f'emotions-{split}.tsv', n, seed)}"
                for split, n, seed in (("train", 240, 0), ("validation", 60, 1), ("test", 60, 2))]
        data += [f"task.labels=[{','.join(EMOTIONS)}]", "data.max_train_samples=null",
                 "train.num_train_epochs=8", "train.learning_rate=3e-3"]
    elif task == "sarcasm":
        data = [f"data.files.train={write_jsonl(work / 'headlines.jsonl', headline_rows(160))}",
                "data.split.first_n=120", "data.split.validation_fraction=0.25", "train.num_train_epochs=6",
                "train.learning_rate=3e-3"]
    elif task == "ner":
        user_corpus(work / "train.tsv", 64, 0)
        user_corpus(work / "dev.tsv", 12, 1)
        data = [f"data.files.train={work / 'train.tsv'}", f"data.files.validation={work / 'dev.tsv'}",
                "data.eval_split=validation", "train.num_train_epochs=4", "train.learning_rate=5e-3"]
    else:
        write_tiny_squad(work / "train.json", 10, "tr")
        write_tiny_squad(work / "dev.json", 3, "dv")
        data = [f"data.files.train={work / 'train.json'}", f"data.files.test={work / 'dev.json'}",
                "data.max_train_samples=null", "data.max_eval_samples=null", "train.num_train_epochs=1"]
    return [f"task={task}", "model=tiny", *data, "train.per_device_train_batch_size=8", "train.disable_tqdm=true",
            "train.logging_steps=50", *overrides]


def build_export(work: Path, task: str, *overrides: str):
    """Run the five stages on a tiny user corpus of `task` below `work`; return the config."""
    return run_five_stages(work, export_overrides(work, task, *overrides))


def run_five_stages(work: Path, overrides: list[str]):
    """download, tokenize, train, evaluate and export of `overrides` in `work`, in this process."""
    from finetune.config import compose
    from finetune.pipeline.download import download
    from finetune.pipeline.evaluate import evaluate
    from finetune.pipeline.export import export
    from finetune.pipeline.tokenize import tokenize
    from finetune.pipeline.train import train

    cfg = compose(REPO, overrides, workdir=work)
    for stage in (download, tokenize, train, evaluate, export):
        stage(cfg)
    return cfg


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder every pytest-xdist worker of this session sees (the workers' temporary roots share a
    parent), so that a session fixture built there is built once, not once per worker."""
    root = tmp_path_factory.getbasetemp()
    folder = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / name
    folder.mkdir(exist_ok=True)
    return folder


@contextlib.contextmanager
def tracking_to(uri: str) -> Iterator[None]:
    """MLFLOW_TRACKING_URI set to `uri` for the block, restored after it."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def built_once(folder: Path, name: str, build: Callable[[], Any]) -> Any:
    """What `build()` returned (JSON), built once in `folder` however many workers ask: they take
    turns under the folder's file lock, and the first to get it builds and records the answer."""
    from filelock import FileLock

    done = folder / f"{name}.json"
    with FileLock(str(folder / "build.lock")):
        if not done.exists():
            done.write_text(json.dumps(build()))
    return json.loads(done.read_text())


class TinyExports(Mapping):
    """{task: cfg} of one trained tiny export per task family (sarcasm, ner, qa), of sentence pairs
    (mrpc), regression on pairs (stsb) and multi-label (goemotions), tracked and registered in one
    MLflow store (`store(*tasks)`). Each export is built on first use, once for the whole session:
    the workers take turns under a file lock, and a worker finding one built re-composes its config."""

    TASKS = ("sarcasm", "ner", "qa", "mrpc", "stsb", "goemotions")

    def __init__(self, work: Path):
        self.work, self.cfgs = work, {}

    def store(self, *tasks: str) -> str:
        """The URI of the MLflow store, once it holds the runs and registered models of `tasks`."""
        for task in tasks:
            self[task]
        return f"sqlite:///{self.work / 'mlflow.db'}"

    def __getitem__(self, task: str):
        if task not in self.TASKS:
            raise KeyError(task)
        if task not in self.cfgs:
            self.cfgs[task] = self.built(task)
        return self.cfgs[task]

    def built(self, task: str):
        from finetune.config import compose

        def build() -> list[str]:
            overrides = export_overrides(self.work, task)
            # built inside whichever test asks first: its output goes to a log, not to that test's capsys
            with open(self.work / f"{task}.log", "w") as log, contextlib.redirect_stdout(log), \
                    contextlib.redirect_stderr(log), tracking_to(f"sqlite:///{self.work / 'mlflow.db'}"):
                run_five_stages(self.work, overrides)
            return overrides

        return compose(REPO, built_once(self.work, task, build), workdir=self.work)

    def __iter__(self):
        return iter(self.TASKS)

    def __len__(self) -> int:
        return len(self.TASKS)


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory) -> TinyExports:
    return TinyExports(shared_folder(tmp_path_factory, "exports"))


def pair_rows(n: int, seed: int = 0) -> list[dict]:
    """MRPC-shaped rows whose label is learnable from one word of the second sentence."""
    import random

    rng = random.Random(seed)
    words = ["the", "bank", "said", "shares", "rose", "company", "profit", "quarter", "report", "market"]
    rows = []
    for i in range(n):
        first = " ".join(rng.choice(words) for _ in range(rng.randint(5, 12)))
        marker = "indeed" if i % 2 else "however"
        rows.append({"#1 String": first, "#2 String": f"{marker} {first}", "Quality": i % 2})
    return rows


def scored_pair_rows(n: int, seed: int = 0) -> list[dict]:
    """STS-B-shaped rows (sentence1, sentence2, score 0-5) whose score follows one word of sentence2."""
    import random

    rng = random.Random(seed)
    words = ["a", "man", "is", "playing", "guitar", "woman", "cutting", "onion", "dog", "running"]
    rows = []
    for i in range(n):
        first = " ".join(rng.choice(words) for _ in range(rng.randint(4, 9)))
        close = i % 2
        rows.append({"sentence1": first, "sentence2": f"{'likewise' if close else 'unlike'} {first}",
                     "score": round((4.0 if close else 1.0) + rng.uniform(-0.8, 0.8), 2)})
    return rows


EMOTIONS = ["joy", "sadness", "anger"]


def write_emotions(path: Path, n: int, seed: int = 0) -> Path:
    """GoEmotions-shaped headerless TSV (text, comma-separated label ids, id): each label has its word."""
    import random

    rng = random.Random(seed)
    markers = ["glad", "tearful", "furious"]
    filler = ["the", "game", "was", "today", "again", "this", "thread", "really"]
    lines = []
    for i in range(n):
        ids = sorted(rng.sample(range(3), rng.choice([1, 1, 2])))
        words = [rng.choice(filler) for _ in range(rng.randint(3, 7))] + [markers[j] for j in ids]
        rng.shuffle(words)
        lines.append(f"{' '.join(words)}\t{','.join(map(str, ids))}\tc{seed}x{i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_stage(script: str, *args: str, cwd: Path, uri: str, timeout: int = 600):
    """Run `stages/<script>` as a user would (a real process, its own Hydra app) against store `uri`."""
    import subprocess
    import sys

    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    return subprocess.run([sys.executable, str(REPO / "stages" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def sweep_data(work: Path) -> list[str]:
    """Overrides for a sweep job on a small learnable headline corpus (sarcasm family)."""
    train = write_jsonl(work / "headlines.jsonl", headline_rows(160))
    return ["task=sarcasm", f"data.files.train={train}", "data.split.first_n=120", "data.max_length=32",
            "train.num_train_epochs=3", "train.per_device_train_batch_size=8", "train.disable_tqdm=true",
            "train.logging_steps=5"]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 4-job sweep (2 models x 2 learning rates), 2 jobs at a time, into its own SQLite store; run
    once for the session (the first worker to need it runs it, the others read what it left)."""
    work = shared_folder(tmp_path_factory, "sweep")
    uri = f"sqlite:///{work / 'mlflow.db'}"

    def build() -> dict:
        started = time.time()
        ran = run_stage("pipeline.py", "-m", *sweep_data(work), "model=tiny,minilm", "train.learning_rate=1e-3,5e-3",
                        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", cwd=work, uri=uri)
        assert ran.returncode == 0, ran.stderr[-3000:]
        return {"output": ran.stdout + ran.stderr, "started": started}

    return {"work": work, "uri": uri, **built_once(work, "sweep", build)}


def sh(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def make_project(dest: Path, data_file: Path, export: dict | None = None, **train: object) -> Path:
    """A git + DVC repository holding this project's pipeline with a tiny budget (`export` and
    `train` update those sections of its params.yaml)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("conf", "stages", "src"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    shutil.copy(REPO / "dvc.yaml", dest / "dvc.yaml")
    (dest / "data").mkdir()
    shutil.copy(REPO / "data" / ".gitignore", dest / "data" / ".gitignore")
    shutil.copy(REPO / ".gitignore", dest / ".gitignore")
    params = yaml.safe_load((REPO / "params.yaml").read_text())  # the real one, with tiny budgets
    params["matrix"] = {"task": ["sarcasm"], "model": ["tiny"]}
    params["data"].update(files={"train": str(data_file)}, split={"first_n": 100}, max_eval_samples=30)
    params["train"].update(num_train_epochs=1, per_device_train_batch_size=16, logging_steps=2, **train)
    params["export"].update(export or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=dest)
    sh("dvc", "init", "-q", cwd=dest)
    shutil.copy(REPO / ".dvcignore", dest / ".dvcignore")  # `dvc init` writes its template over it
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "project", cwd=dest)
    return dest


@pytest.fixture(scope="session")
def reproduced_project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A project (make_project, 140 headlines) after its first `dvc repro`, built once for the session:
    {"project": its folder, never edited (tests edit copies: copy_project), "ran": the stages that ran}."""
    folder = shared_folder(tmp_path_factory, "reproduced")

    def build() -> list[str]:
        project = make_project(folder / "repo", write_jsonl(folder / "headlines.jsonl", headline_rows(140)))
        with tracking_to(f"sqlite:///{folder / 'mlflow.db'}"):
            return ran_stages(sh("dvc", "repro", cwd=project).stdout)

    return {"project": folder / "repo", "ran": built_once(folder, "ran", build)}


def copy_project(project: Path, dest: Path) -> Path:
    """A copy of a DVC project (git history, DVC cache, outputs) at `dest`; DVC's scratch stays behind."""
    shutil.copytree(project, dest, symlinks=True, ignore=lambda folder, names: ["tmp"] if folder.endswith(".dvc")
                    else [])
    return dest


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow_server(folder: Path, port: int):
    """docs/tracking-and-serving.md's `mlflow server` command on 127.0.0.1:`port` (store and artifacts in `folder`),
    once it answers its health check. `os.killpg(server.pid, ...)` kills it with its workers."""
    import shutil
    import subprocess
    import urllib.request

    server = subprocess.Popen([shutil.which("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
                               "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),  # no job runners
                              start_new_session=True)  # its own process group: a kill reaches its workers too
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    pytest.fail("the tracking server did not answer within 60 s")


def mlflow_rest(base: str, endpoint: str, body: dict) -> dict:
    """A POST to a tracking server's REST API (what a teammate's client sees)."""
    import urllib.request

    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def mlflow_get(base: str, endpoint: str, **query: str) -> dict:
    """A GET from a tracking server's REST API."""
    import urllib.parse
    import urllib.request

    with urllib.request.urlopen(f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}",
                                timeout=30) as response:
        return json.loads(response.read())


def server_runs(base: str, experiment: str) -> list[dict]:
    """The runs a tracking server holds in one experiment; none yet while the experiment or its first
    run is still being created (the REST API leaves out an empty list)."""
    found = mlflow_rest(base, "experiments/search", {"max_results": 100, "filter": f"name = '{experiment}'"})
    ids = [e["experiment_id"] for e in found.get("experiments", [])]
    return mlflow_rest(base, "runs/search", {"experiment_ids": ids, "max_results": 100}).get("runs", []) if ids else []
