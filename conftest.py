"""How `make test` shares 2 CPU cores between two pytest-xdist workers (``make test`` passes ``-n 2``).

The lessons that make or read the lesson runs go in order on one worker: lesson 3 (which trains the
pretraining run), lesson 2 (which then draws lesson 3's model instead of training a demonstration
run of its own; tests/test_notebooks.py runs that path on its own), lessons 4 and 5, and the
solutions of lesson 5. The other worker takes every test file and lesson 1 with its solutions,
then the solutions of lessons 2, 3 and 4, which need only the runs of lessons 3 and 4: they come
last in its queue, and each waits for its run if it is not there yet. Each test file stays on one
worker (module fixtures are built once; tests/test_browser.py reuses folders under build/).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

# Two torch processes on two cores: with OpenMP's default busy-waiting, two 2-thread processes each ran
# the lesson model at 0.6 steps/s against 3.0 alone; with passive waiting 2.0 each, and 2.7 alone. So each
# worker also gets only its share of the cores: on the slower 2-core machine of December 2026, lesson 4's two
# training cells took 157 s and 146 s with one thread per worker against 259 s and 233 s with two.
# Set before any test imports torch; notebook kernels and subprocesses inherit both.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

CHAIN = ("03_pretraining.ipynb", "02_self_attention.ipynb", "04_finetuning.ipynb", "05_evaluation.ipynb",
         "05_evaluation_solutions.ipynb")  # one worker, in this order
# The other worker, last, in this order: each solution, the lesson run it reads (the last one its lesson makes), and
# the lesson that makes it.
AFTER_THEIR_RUNS = {"02_self_attention_solutions.ipynb": ("pretrain", "03_pretraining.ipynb"),
                    "03_pretraining_solutions.ipynb": ("pretrain", "03_pretraining.ipynb"),
                    "04_finetuning_solutions.ipynb": ("finetune-beyond", "04_finetuning.ipynb")}
WAIT_FOR_RUN_S = 1800


def _notebook(nodeid: str) -> str:
    """The file name of a notebook cell's node id ("" for anything else)."""
    path = nodeid.split("::", 1)[0]
    return path.rpartition("/")[2] if path.endswith(".ipynb") else ""


def pytest_collection_modifyitems(config, items):
    """The chain's notebooks first, in the chain's order; then everything else; the solutions that wait for runs last."""
    later = list(AFTER_THEIR_RUNS)

    def place(item) -> tuple[int, int]:
        name = _notebook(item.nodeid)
        if name in CHAIN:
            return 0, CHAIN.index(name)
        return (2, later.index(name)) if name in later else (1, 0)

    items.sort(key=place)  # stable: each notebook's cells, and the tests, keep their own order


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before a solution that reads a lesson's run starts, wait (up to half an hour) for the other worker to make it."""
    name = _notebook(item.nodeid)
    if name not in AFTER_THEIR_RUNS or not item.nodeid.endswith("::Cell 0"):
        return
    run_name, maker = AFTER_THEIR_RUNS[name]
    if not any(_notebook(other.nodeid) == maker for other in item.session.items):
        return  # the lesson is not part of this session: the notebook says itself what to run first
    from helpers.lessons import lesson_paths
    from helpers.runs import has_model

    run = lesson_paths(base=Path(item.path).parent).runs / run_name
    deadline = time.monotonic() + WAIT_FOR_RUN_S
    while not has_model(run) and time.monotonic() < deadline:
        time.sleep(5)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook, called only when it distributes tests
def pytest_xdist_make_scheduler(config, log):
    # xdist's own grouping (--dist loadgroup) renames node ids, which pytest 9.2 no longer allows: it
    # silently spread a notebook's cells over both workers. A scope of our own does the same job.
    from xdist.scheduler import LoadScopeScheduling

    class ChainAndTheRest(LoadScopeScheduling):
        """One unit of work for the chain's notebooks; one for each other file; handed out in collection order."""

        def _split_scope(self, nodeid: str) -> str:
            return "the chain" if _notebook(nodeid) in CHAIN else nodeid.split("::", 1)[0]

    config.option.loadscopereorder = False  # the order pytest_collection_modifyitems chose, not the largest first
    return ChainAndTheRest(config, log)
