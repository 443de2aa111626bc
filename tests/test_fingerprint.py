"""Code fingerprints of the `code-*` stages: exact about code, blind to bytecode, strict on dvc.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finetune.errors import FinetuneError
from finetune.fingerprint import listing, write_fingerprint
from tests.conftest import REPO


def make_code(root: Path) -> Path:
    (root / "lib" / "__pycache__").mkdir(parents=True)
    (root / "lib" / "b.py").write_text("B = 2\n")
    (root / "lib" / "a.py").write_text("A = 1\n")
    (root / "lib" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (root / "main.py").write_text("print('hi')\n")
    stage = {"cmd": "python -m finetune.fingerprint code-x", "deps": ["main.py", "lib"],
             "outs": ["data/code/x.sha256"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"code-x": stage}}))
    return root


def test_listing_names_each_file_once_in_order_without_bytecode(tmp_path):
    root = make_code(tmp_path)
    lines = listing(["main.py", "lib"], root).splitlines()
    assert [line.split("  ")[1] for line in lines] == ["main.py", "lib/a.py", "lib/b.py"]
    assert all(len(line.split("  ")[0]) == 64 for line in lines)


def test_listing_changes_with_code_and_only_with_code(tmp_path):
    root = make_code(tmp_path)
    before = listing(["main.py", "lib"], root)
    (root / "lib" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"more bytecode")
    (root / "lib" / "stray.pyc").write_bytes(b"old bytecode")
    assert listing(["main.py", "lib"], root) == before
    (root / "lib" / "a.py").write_text("A = 10\n")
    assert listing(["main.py", "lib"], root) != before
    (root / "lib" / "a.py").write_text("A = 1\n")
    (root / "lib" / "c.py").write_text("")  # a new module is a change too
    assert listing(["main.py", "lib"], root) != before


def test_write_fingerprint_reads_deps_and_output_from_dvc_yaml(tmp_path):
    root = make_code(tmp_path)
    target = write_fingerprint("code-x", root)
    assert target == root / "data" / "code" / "x.sha256"
    assert target.read_text() == listing(["main.py", "lib"], root)


def test_unknown_stage_or_missing_dependency_is_named(tmp_path):
    root = make_code(tmp_path)
    with pytest.raises(FinetuneError, match=r"dvc.yaml: stage 'code-y' must exist"):
        write_fingerprint("code-y", root)
    (root / "main.py").unlink()
    with pytest.raises(FinetuneError, match=r"dvc.yaml: dependency 'main.py' does not exist"):
        write_fingerprint("code-x", root)
    assert not (root / "data" / "code" / "x.sha256").exists()  # nothing half-written


def test_every_code_stage_of_the_project_dag_fingerprints(tmp_path):
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    kinds = [name for name in stages if not name.startswith("code-")]
    for kind in kinds:  # each kind's (task, model) stages depend on their kind's listing
        assert f"data/code/{kind}.sha256" in stages[kind]["deps"]
        assert stages[f"code-{kind}"]["outs"] == [f"data/code/{kind}.sha256"]
    result = subprocess.run([sys.executable, "-m", "finetune.fingerprint", "code-train"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "dvc.yaml" in result.stderr  # run outside a project: one clear line
