"""How `make test` shares 2 CPU cores between two pytest-xdist workers (``-n 2 --dist loadgroup``).

The notebooks run in order in one worker: lessons 4 and 5 and the solutions read the runs lesson 3
writes, and lesson 2 takes another path when that run already exists. Each test file stays on one
worker too (module fixtures are built once; tests/test_browser.py reuses folders under build/).
"""

from __future__ import annotations

import os

import pytest

# Two torch processes on two cores: with OpenMP's default busy-waiting, two 2-thread processes each ran
# the lesson model at 0.6 steps/s against 3.0 alone; with passive waiting 2.0 each, and 2.7 alone.
# Set before any test imports torch; notebook kernels and subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        group = "notebooks" if path.endswith(".ipynb") else path
        item.add_marker(pytest.mark.xdist_group(group))
