"""Code fingerprints of the `code` stage: what each kind runs, found by its imports; blind to bytecode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finetune import fingerprint
from finetune.errors import FinetuneError
from finetune.fingerprint import files_under, kind_files, listing, python_files, write_fingerprints
from tests.conftest import REPO


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def make_project(root: Path) -> Path:
    """A toy project: a package `finetune` under src/, two stage scripts, config, a `code` stage."""
    write(root, {
        "src/finetune/__init__.py": "",
        "src/finetune/errors.py": "class Oops(Exception): ...\n",
        "src/finetune/io.py": "import json\nfrom finetune.errors import Oops\n",
        "src/finetune/unused.py": "",
        "src/finetune/pipeline/__init__.py": "",
        "src/finetune/pipeline/run.py": "from . import helper\n\ndef run():\n    from finetune.families import get\n",
        "src/finetune/pipeline/helper.py": "from ..io import json\n",
        "src/finetune/families/__init__.py": "import importlib\n\ndef get(name):\n"
                                             "    return importlib.import_module(f'finetune.families.{name}')\n",
        "src/finetune/families/alpha.py": "import finetune.errors\n",
        "src/finetune/export.py": "",
        "stages/run.py": "def main():\n    from finetune.pipeline.run import run\n",
        "stages/export.py": "from finetune import export\n",
        "stages/one_family.py": "import finetune.families.alpha\n",
        "conf/config.yaml": "a: 1\n",
        "conf/train/default.yaml": "b: 2\n",
        "conf/train/__pycache__/stray.pyc": "bytecode",
    })
    stage = {"cmd": "python -m finetune.fingerprint", "deps": ["stages", "src/finetune", "conf"], "outs": ["data/code"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"code": stage}}))
    return root


@pytest.fixture
def toy(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(fingerprint, "KINDS", {"run": ("stages/run.py", "conf/config.yaml", "conf/train"),
                                               "export": ("stages/export.py", "conf/config.yaml")})
    monkeypatch.setattr(fingerprint, "IMPORTED_BY_NAME", ("finetune.families",))
    return make_project(tmp_path)


def test_python_files_follow_every_import_a_script_can_run(toy):
    assert python_files("stages/run.py", toy) == [
        "src/finetune/__init__.py",
        "src/finetune/errors.py",  # via io, via a relative import two levels up
        "src/finetune/families/__init__.py",  # imported inside a function
        "src/finetune/families/alpha.py",  # imported by name at run time: the whole package counts
        "src/finetune/io.py",
        "src/finetune/pipeline/__init__.py",
        "src/finetune/pipeline/helper.py",  # `from . import helper`
        "src/finetune/pipeline/run.py",
        "stages/run.py",
    ]
    assert python_files("stages/export.py", toy) == ["src/finetune/__init__.py", "src/finetune/export.py",
                                                     "stages/export.py"]  # `from finetune import export`
    write(toy, {"src/finetune/families/beta.py": ""})
    assert {"src/finetune/families/__init__.py", "src/finetune/families/beta.py"} <= set(
        python_files("stages/one_family.py", toy))  # importing one module of the package runs its registry


def test_kind_files_add_shared_config_without_bytecode(toy):
    files = kind_files("run", toy)
    assert files[-3:] == ["stages/run.py", "conf/config.yaml", "conf/train/default.yaml"]
    assert list(files_under(["conf"], toy)) == ["conf/config.yaml", "conf/train/default.yaml"]


def test_listing_changes_with_code_and_only_with_code(toy):
    def run_listing() -> str:
        return listing(kind_files("run", toy), toy)

    before = run_listing()
    assert [line.split("  ")[1] for line in before.splitlines()] == kind_files("run", toy)
    assert all(len(line.split("  ")[0]) == 64 for line in before.splitlines())
    write(toy, {"src/finetune/__pycache__/io.cpython-311.pyc": "bytecode", "src/finetune/unused.py": "X = 1\n"})
    assert run_listing() == before  # bytecode, and a module the stage never imports
    write(toy, {"src/finetune/families/beta.py": ""})
    assert "families/beta.py" in run_listing()  # a new task family is a change too
    write(toy, {"src/finetune/io.py": "import json\nfrom finetune.errors import Oops\nX = 2\n"})
    assert run_listing() != before


def test_write_fingerprints_writes_one_listing_per_kind_into_the_stage_output(toy):
    written = write_fingerprints(toy)
    assert written == {"run": toy / "data/code/run.sha256", "export": toy / "data/code/export.sha256"}
    assert written["export"].read_text() == listing(kind_files("export", toy), toy)
    assert "src/finetune/pipeline/run.py" not in written["export"].read_text()


def test_a_file_outside_the_stage_deps_or_a_missing_stage_is_named(toy):
    stage = yaml.safe_load((toy / "dvc.yaml").read_text())
    stage["stages"]["code"]["deps"] = ["stages", "src/finetune"]
    (toy / "dvc.yaml").write_text(yaml.safe_dump(stage))
    with pytest.raises(FinetuneError, match=r"dvc.yaml: stage 'code' does not depend on conf/config.yaml "
                                            r"\(run by run\)"):
        write_fingerprints(toy)
    assert not (toy / "data" / "code").exists()  # nothing half-written
    (toy / "dvc.yaml").write_text(yaml.safe_dump({"stages": {}}))
    with pytest.raises(FinetuneError, match=r"dvc.yaml: stage 'code' must exist"):
        write_fingerprints(toy)
    stage["stages"]["code"]["deps"] = ["stages", "src/finetune", "conf"]
    (toy / "dvc.yaml").write_text(yaml.safe_dump(stage))
    (toy / "stages" / "export.py").unlink()
    with pytest.raises(FinetuneError, match=r"stages/export.py does not exist \(the script of stage kind 'export'\)"):
        write_fingerprints(toy)


def test_the_project_dag_depends_on_each_kinds_listing():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["code"]["outs"] == ["data/code"] and "src/finetune" in stages["code"]["deps"]
    assert sorted(name for name in stages if name != "code") == sorted(fingerprint.KINDS)
    for kind in fingerprint.KINDS:
        assert f"data/code/{kind}.sha256" in stages[kind]["deps"]
        assert stages[kind]["cmd"].startswith(f"python {fingerprint.KINDS[kind][0]} ")  # the one table's script
    train, export = kind_files("train", REPO), kind_files("export", REPO)
    assert {"stages/train.py", "src/finetune/training.py", "src/finetune/tasks/question_answering.py",
            "conf/train/default.yaml"} <= set(train)
    assert "src/finetune/training.py" not in export and "src/finetune/export/__init__.py" in export
    assert {"src/finetune/export/onnx.py", "src/finetune/inference.py", "src/finetune/precision.py"} <= set(export)


def test_run_outside_a_project_fails_with_one_clear_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "finetune.fingerprint"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
