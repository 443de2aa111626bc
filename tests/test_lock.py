"""requirements/lock.txt agrees with pyproject.toml, installs no CUDA package, and the README's
install is the one CI runs."""

from __future__ import annotations

import re

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

LOCK = REPO / "requirements" / "lock.txt"
SELF = "finetune-pipeline"
EXTRAS = ("dev", "shared")  # what scripts/lock.sh resolves
CUDA = re.compile(r"^(nvidia-|cuda-|triton$)")


def pins(text: str) -> dict[str, tuple[str, set[str]]]:
    """{package: (version, what requires it)} of a `uv pip compile` output."""
    found: dict[str, tuple[str, set[str]]] = {}
    current = None
    for line in text.splitlines():
        if match := re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line):
            current = canonicalize_name(match[1].split("[")[0])
            found[current] = (match[2], set())
        elif current and (match := re.match(r"^\s+#\s+(?:via\s+)?(\S.*)$", line)) and match[1] != "via":
            found[current][1].add(match[1].split(" (")[0])
    return found


def direct_requirements(pyproject: dict) -> list[Requirement]:
    """The base requirements and those of EXTRAS, the project's references to itself expanded."""
    project = pyproject["project"]
    wanted, extras, seen = list(project["dependencies"]), list(EXTRAS), set()
    while extras:
        extra = extras.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == SELF:
                extras.extend(requirement.extras)
            else:
                wanted.append(line)
    return [Requirement(line) for line in wanted]


def disagreements(pyproject_text: str, lock_text: str) -> list[str]:
    """What keeps the lock from being pyproject's resolution: a requirement without a pin that
    satisfies it, a pin the lock holds for a requirement pyproject no longer has, a CUDA package."""
    locked = pins(lock_text)
    wanted = direct_requirements(tomllib.loads(pyproject_text))
    problems = []
    for requirement in wanted:
        if requirement.marker and not requirement.marker.evaluate({"python_version": "3.11", "extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{requirement}: not in the lock")
        elif not requirement.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{requirement}: the lock pins {name}=={locked[name][0]}")
    direct = {canonicalize_name(r.name) for r in wanted}
    for name, (_, via) in locked.items():
        if SELF in via and name not in direct:
            problems.append(f"{name}: locked for {SELF}, which no longer requires it")
    problems += [f"{name}: a CUDA package (add it to requirements/cuda-excludes.txt)"
                 for name in locked if CUDA.match(name)]
    return problems


def test_the_lock_is_the_resolution_of_pyproject():
    problems = disagreements((REPO / "pyproject.toml").read_text(), LOCK.read_text())
    assert not problems, "requirements/lock.txt disagrees with pyproject.toml (run scripts/lock.sh):\n" + \
        "\n".join(problems)


def test_a_mismatched_pin_is_caught():
    pyproject, lock = (REPO / "pyproject.toml").read_text(), LOCK.read_text()
    version = pins(lock)["transformers"][0]
    assert disagreements(pyproject, lock.replace(f"transformers=={version}", "transformers==4.57.0")) == [
        "transformers<6,>=5.0: the lock pins transformers==4.57.0"]
    narrowed = pyproject.replace('"seqeval>=1.2",', '"seqeval>=9",')
    assert [p for p in disagreements(narrowed, lock) if p.startswith("seqeval")] == [
        f"seqeval>=9: the lock pins seqeval=={pins(lock)['seqeval'][0]}"]
    dropped = pyproject.replace('  "seqeval>=1.2",\n', "")
    assert disagreements(dropped, lock) == ["seqeval: locked for finetune-pipeline, which no longer requires it"]
    with_cuda = lock + "nvidia-cublas==13.1.1.3\n    # via torch\n"
    assert disagreements(pyproject, with_cuda) == [
        "nvidia-cublas: a CUDA package (add it to requirements/cuda-excludes.txt)"]


def test_torch_is_resolved_against_its_bootstrap_pin():
    bootstrap = dict(line.split("==") for line in (REPO / "requirements" / "bootstrap.txt").read_text().splitlines()
                     if line and not line.startswith("#"))
    assert pins(LOCK.read_text())["torch"][0] == bootstrap["torch"]


def test_ci_runs_the_readme_install_and_test_command():
    readme, ci = (REPO / "README.md").read_text(), (REPO / ".ci" / "run").read_text()
    install = re.search(r"^python3\.11 -m venv .*?(?=\n\S|\n$)", ci, re.M | re.S)[0]
    command = " ".join(install.replace("\\\n", " ").split())
    blocks = [" ".join(block.replace("\\\n", " ").split())
              for block in re.findall(r"```bash\n(.*?)```", readme, re.S)]
    assert f"{command} && python -m pytest" in blocks
    assert f"{command} && dvc repro" in blocks
    assert "\npython -m pytest\n" in ci
