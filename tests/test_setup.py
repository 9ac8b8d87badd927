"""Setup files agree with each other: what pyproject.toml needs, environment.yml installs."""

from __future__ import annotations

import re
import tomllib

from conftest import ROOT

CONDA_NAMES = {"torch": "pytorch"}  # conda-forge calls a few packages differently


def _requirements() -> dict[str, str]:
    """The package's dependencies and its test extra, name -> version range."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {}
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, version = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", spec).groups()
        out[CONDA_NAMES.get(name.lower(), name.lower())] = version.replace(" ", "")
    return out


def _conda() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        match = re.match(r"\s*-\s+([A-Za-z0-9_.-]+)\s*([<>=!].*)?$", line)
        if match and not line.strip().startswith("- -e"):
            entries[match.group(1).lower()] = (match.group(2) or "").replace(" ", "")
    return entries


def test_environment_yml_matches_pyproject():
    required, conda = _requirements(), _conda()
    missing = {name: version for name, version in required.items() if name not in conda}
    assert not missing, f"environment.yml lacks {missing}"
    different = {name: (version, conda[name]) for name, version in required.items() if conda[name] != version}
    assert not different, f"versions differ (pyproject, environment.yml): {different}"
    assert "python=3.11" in (ROOT / "environment.yml").read_text()
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_makefile_installs_the_cpu_torch_by_default_and_lets_users_choose():
    makefile = (ROOT / "Makefile").read_text()
    assert "TORCH_SPEC ?= torch==2.13.0" in makefile
    assert "$(TORCH_SPEC)" in makefile
    assert "--nbval-lax" in makefile
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
