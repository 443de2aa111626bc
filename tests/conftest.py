"""Shared fixtures: offline Hugging Face, a temporary MLflow store, the real data mirror."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FINETUNE_DATA_DIR", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GIT_AUTHOR_NAME", "finetune-tests")
os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@example.invalid")
os.environ.setdefault("GIT_COMMITTER_NAME", "finetune-tests")
os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@example.invalid")
if SHARED_DATA.is_dir():
    os.environ["FINETUNE_DATA_DIR"] = str(SHARED_DATA)


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
