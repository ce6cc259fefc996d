"""CI's lowest-versions run pins exactly pyproject.toml's lower bounds (``.ci/lowest.py``)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
LOWEST = REPO_ROOT / ".ci" / "lowest.py"


def _requirements() -> tuple[list[str], list[Requirement]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return list(extras), [Requirement(r) for r in [*project["dependencies"], *(r for e in extras.values() for r in e)]]


def _lowest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LOWEST), *args], capture_output=True, text=True, cwd=REPO_ROOT)


def test_every_dependency_has_one_lower_bound_and_is_pinned_to_it() -> None:
    extras, requirements = _requirements()
    bounds = {canonicalize_name(r.name): [s.version for s in r.specifier if s.operator == ">="] for r in requirements}
    assert all(len(lower) == 1 for lower in bounds.values()), bounds
    made = _lowest(*extras)
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == [f"{name}=={lower[0]}" for name, lower in sorted(bounds.items())]


@pytest.mark.parametrize("requirement", ["example", "example<2", "example>=1,>=2", "example==1"])
def test_a_dependency_without_one_lower_bound_is_refused(requirement: str) -> None:
    made = _lowest_of([requirement])
    assert made.returncode != 0
    assert "lower bound" in made.stderr


def _lowest_of(requirements: list[str]) -> subprocess.CompletedProcess[str]:
    """``lowest_pins`` on ``requirements`` (.ci is not a package: run from its file)."""
    code = f"import runpy; runpy.run_path({str(LOWEST)!r})['lowest_pins']({requirements!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
