"""Print pip constraints pinning every dependency to the lowest version pyproject.toml allows.

Usage: ``python .ci/lowest.py [EXTRA ...] > lowest.txt``, then
``pip install -c lowest.txt -e '.[EXTRA,...]'``; ``python .ci/lowest.py --check [EXTRA ...]``
then fails unless the running interpreter has exactly those versions installed. Made from
pyproject.toml on each run (never committed), so the pins cannot drift from the bounds. Each
dependency must have exactly one lower bound (``>=X``, a released version): one without cannot
be tested at its lowest, so this refuses it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

# name, optional [extras], the version specifiers, an optional "; marker".
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;.*)?$")


def lowest_pins(requirements: list[str]) -> list[str]:
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"cannot read requirement {requirement!r}")
        name = re.sub(r"[-_.]+", "-", match[1]).lower()
        lower = [s.strip()[2:].strip() for s in match[2].split(",") if s.strip().startswith(">=")]
        if len(lower) != 1:
            raise SystemExit(f"{requirement!r}: needs exactly one lower bound (>=X) to test its lowest version")
        if pins.get(name, lower[0]) != lower[0]:
            raise SystemExit(f"{name}: two different lower bounds ({pins[name]}, {lower[0]})")
        pins[name] = lower[0]
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _release(version: str) -> str:
    """``1.13`` and ``1.13.0`` are one version (PEP 440 pads releases with zeros)."""
    return re.sub(r"(\.0)+$", "", version)


def main(args: list[str]) -> int:
    check = "--check" in args
    extras = [a for a in args if a != "--check"]
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins = lowest_pins(requirements)
    if not check:
        print("\n".join(pins))
        return 0
    wrong = []
    for pin in pins:
        name, version = pin.split("==")
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "nothing"
        if _release(installed) != _release(version):
            wrong.append(f"{name}: pinned {version}, installed {installed}")
    print("lowest versions installed:", " ".join(pins) if not wrong else "no")
    for line in wrong:
        print("  " + line, file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
