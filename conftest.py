"""How `make test` shares 2 CPU cores between two pytest-xdist workers (``make test`` passes ``-n 2``).

The notebooks from lesson 2 on run in order on one worker: lessons 4 and 5 and the solutions read
the runs lesson 3 writes. Lesson 2 runs after lesson 3, as the report job runs them: it then draws
lesson 3's model instead of training a demonstration run of its own (tests/test_notebooks.py runs
that path on its own). Each test file stays on one worker too (module fixtures are built once;
tests/test_browser.py reuses folders under build/).
"""

from __future__ import annotations

import os

import pytest

# Two torch processes on two cores: with OpenMP's default busy-waiting, two 2-thread processes each ran
# the lesson model at 0.6 steps/s against 3.0 alone; with passive waiting 2.0 each, and 2.7 alone.
# Set before any test imports torch; notebook kernels and subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(config, items):
    """Lesson 2's cells right after lesson 3's: with lesson 3's run there, lesson 2 trains no demonstration run."""
    lesson_2 = [item for item in items if _notebook(item) == "02_self_attention.ipynb"]
    rest = [item for item in items if _notebook(item) != "02_self_attention.ipynb"]
    after = max((n for n, item in enumerate(rest) if _notebook(item) == "03_pretraining.ipynb"), default=None)
    if lesson_2 and after is not None:
        items[:] = rest[:after + 1] + lesson_2 + rest[after + 1:]


def _notebook(item) -> str:
    """The file name of a notebook's cell item ("" for anything else)."""
    path = item.nodeid.split("::", 1)[0]
    return path.rpartition("/")[2] if path.endswith(".ipynb") and path.startswith("notebooks/0") else ""


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook, called only when it distributes tests
def pytest_xdist_make_scheduler(config, log):
    # xdist's own grouping (--dist loadgroup) renames node ids, which pytest 9.2 no longer allows: it
    # silently spread a notebook's cells over both workers. A scope of our own does the same job.
    from xdist.scheduler import LoadScopeScheduling

    class NotebooksTogether(LoadScopeScheduling):
        """One unit of work for the notebooks that read lesson runs, in collection order; one for each other file."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "notebooks" if _reads_lesson_runs(path) else path

    return NotebooksTogether(config, log)


def _reads_lesson_runs(path: str) -> bool:
    """Every notebook but lesson 1 and its solutions (tokenizers only) reads or makes a lesson's run."""
    return path.endswith(".ipynb") and not path.rpartition("/")[2].startswith("01_")

