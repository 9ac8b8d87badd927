"""The exercises as a teacher hands them out: otter writes them, nothing leaks, solutions pass and blanks fail.

Every solution is run against every test, hidden ones included, where the
master notebooks are executed (``pytest --nbval-lax notebooks``: a test cell
is an ordinary cell there). Here otter itself grades: the student's blank
answers must score 0 on every question, and the written-out pieces of the
lessons must score full marks when otter grades the solution.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from conftest import ROOT
from helpers.exercises import MASTERS, AssignError, answers_only, assign, grade, read_questions, student_name

NOTEBOOKS = ROOT / "notebooks"
GRADED = [m for m in MASTERS if read_questions(NOTEBOOKS / m)]  # every exercise notebook; lessons that write pieces


def _text(nb) -> str:
    return "\n".join(cell.source for cell in nb.cells)


@pytest.fixture(scope="module")
def assigned(tmp_path_factory):
    """otter assign on every master once: {master: (student notebook, autograder zip)}."""
    out = tmp_path_factory.mktemp("exercises")
    return {master: assign(NOTEBOOKS / master, out / Path(student_name(master)).stem) for master in MASTERS}


def test_every_question_has_a_solution_a_public_and_a_hidden_test():
    assert {m for m in MASTERS if m.startswith("solutions/")} <= set(GRADED), "an exercise notebook has no question"
    assert {"01_tokenization.ipynb", "03_pretraining.ipynb", "04_finetuning.ipynb"} <= set(GRADED)
    names = []
    for master in GRADED:
        for q in read_questions(NOTEBOOKS / master):
            assert q.solution_lines, f"{master}: {q.name} blanks nothing (no # BEGIN SOLUTION lines)"
            assert q.public_tests and q.hidden_tests, f"{master}: {q.name} needs a public and a hidden test"
            names.append(q.name)
    assert len(names) == len(set(names)), "question names repeat across the course"


def _bound_names(source: str) -> set[str]:
    """Names a cell binds at its top level: assignments, loop targets, imports, definitions."""
    tree = ast.parse(source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
             and not any(n in ast.walk(c) for c in ast.walk(tree) if isinstance(c, (ast.Lambda, ast.comprehension,
                                                                                  ast.FunctionDef, ast.GeneratorExp,
                                                                                  ast.ListComp, ast.SetComp, ast.DictComp)))}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


@pytest.mark.parametrize("master", GRADED)
def test_tests_never_overwrite_a_name_of_the_lesson(master):
    """A test runs in the lesson's namespace: every name it binds starts with _, so the lesson's own stay intact."""
    for q in read_questions(NOTEBOOKS / master):
        for test in q.public_tests + q.hidden_tests:
            public = sorted(n for n in _bound_names(test) if not n.startswith("_"))
            assert public == [], f"{master}: a test of {q.name} binds {public}"


NONE_RETURNING = {"print", "backward", "append", "extend", "step", "zero_grad", "update", "add", "remove",
                  "train_from_iterator"}


@pytest.mark.parametrize("master", GRADED)
def test_tests_print_nothing_that_otter_would_read_as_a_failure(master):
    """Otter runs a test as a doctest: a line whose value is not None (``torch.manual_seed(0)``) fails it."""
    for q in read_questions(NOTEBOOKS / master):
        for test in q.public_tests + q.hidden_tests:
            for node in ast.walk(ast.parse(test)):
                if isinstance(node, ast.Expr) and not isinstance(node.value, ast.Constant):
                    call = node.value.func if isinstance(node.value, ast.Call) else None
                    name = getattr(call, "attr", getattr(call, "id", None))
                    assert name in NONE_RETURNING, f"{master}: {q.name} has a bare `{ast.unparse(node)}`; assign it to _"
    inside, noisy = False, []
    for index, cell in enumerate(nbformat.read(NOTEBOOKS / master, as_version=4).cells):  # otter expects what they print
        if cell.cell_type == "raw" and cell.source.strip() in {"# BEGIN TESTS", "# END TESTS"}:
            inside = cell.source.strip() == "# BEGIN TESTS"
        elif inside and cell.cell_type == "code" and cell.get("outputs"):
            noisy.append(index)
    assert noisy == [], f"{master}: test cells {noisy} print something (a warning?); otter would expect it again"


@pytest.mark.parametrize("master", MASTERS)
def test_the_student_notebook_shows_no_solution_and_no_hidden_test(master, assigned):
    student = nbformat.read(assigned[master][0], as_version=4)
    master_nb = nbformat.read(NOTEBOOKS / master, as_version=4)
    questions = read_questions(NOTEBOOKS / master)
    secret = set()
    for q in questions:
        for text in q.solution_lines + q.hidden_tests + q.discussion:
            secret |= {line.strip() for line in text.splitlines() if len(line.strip()) > 12}
    shown_elsewhere = set()  # lines the lesson prints outside the answers too (an import, a call) are not secrets
    for cell in master_nb.cells:
        if cell.cell_type == "code" and "# BEGIN SOLUTION" not in cell.source and not cell.source.lstrip().startswith("# HIDDEN"):
            shown_elsewhere |= {line.strip() for line in cell.source.splitlines()}
    shown = {line.strip() for line in _text(student).splitlines()}
    leaked = sorted((secret - shown_elsewhere) & shown)
    assert leaked == [], f"{master}: solution or hidden-test lines in the student notebook: {leaked[:5]}"
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code"), "outputs must be cleared"
    for q in questions:
        assert f'grader.check("{q.name}")' in _text(student), f"{q.name} has no check cell"
    public = json.dumps(student.metadata["otter"]["tests"])
    assert "HIDDEN" not in public and all(q.name in public for q in questions)


@pytest.mark.parametrize("master", MASTERS)
def test_the_autograder_holds_every_hidden_test(master, assigned):
    with zipfile.ZipFile(assigned[master][1]) as z:
        tests = {Path(n).stem: z.read(n).decode() for n in z.namelist() if n.startswith("tests/")}
    for q in read_questions(NOTEBOOKS / master):
        assert q.name in tests, f"{q.name} missing from the autograder"
        assert tests[q.name].count("'hidden': True") == len(q.hidden_tests), q.name


def _scores_in_process(notebook: Path, autograder: Path, tmp: Path) -> dict[str, float]:
    """Otter's own test files from ``autograder`` run on ``notebook``'s setup and answer cells, in this process.

    The same tests and scoring as ``otter run`` without a kernel per notebook; one real ``otter run``
    (test_otter_run_grades_a_returned_notebook) covers the rest of the path.
    """
    from otter.test_files.ok_test import OKTestFile

    cut = answers_only(notebook, tmp / notebook.name)
    with zipfile.ZipFile(autograder) as z:
        z.extractall(tmp / "autograder")
    env: dict = {"__name__": "__main__"}
    cwd, threads = Path.cwd(), torch.get_num_threads()  # a setup cell may change them (lesson 5: one thread)
    os.chdir(NOTEBOOKS)  # where a lesson's cells run
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for cell in nbformat.read(cut, as_version=4).cells[1:]:  # [0]: otter's init cell (the grader object)
                try:
                    exec(compile(cell.source, str(cut), "exec"), env)
                except Exception:  # a blank (or a cell depending on one) fails; its tests will say so
                    pass
            scores = {}
            for test in sorted((tmp / "autograder" / "tests").glob("*.py")):
                graded = OKTestFile.from_file(str(test))
                graded.run(env)
                scores[test.stem] = graded.score
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)  # later tests compare runs across processes bit for bit
    return scores


@pytest.mark.parametrize("master", GRADED)
def test_blank_answers_score_nothing(master, assigned, tmp_path):
    student, autograder = assigned[master]
    threads = torch.get_num_threads()
    scores = _scores_in_process(student, autograder, tmp_path)
    assert torch.get_num_threads() == threads, "grading changed this process's torch threads"
    assert set(scores) == {q.name for q in read_questions(NOTEBOOKS / master)}
    assert {name: s for name, s in scores.items() if s != 0} == {}, "a blank answer passed a test"


@pytest.mark.parametrize("lesson", [m for m in GRADED if not m.startswith("solutions/")])
def test_the_pieces_a_lesson_writes_score_full_marks(lesson, assigned, tmp_path):
    """Otter's tests on the lesson's own answers alone: each piece needs nothing else of the lesson."""
    student, autograder = assigned[lesson]
    solution = next((student.parent.parent / "autograder").glob("*.ipynb"))
    scores = _scores_in_process(solution, autograder, tmp_path)
    assert scores == {q.name: q.points for q in read_questions(NOTEBOOKS / lesson)}


def test_otter_run_grades_a_returned_notebook(assigned, tmp_path):
    """The teacher's path end to end: `python -m helpers grade` runs otter on a blank copy of lesson 3."""
    student, autograder = assigned["03_pretraining.ipynb"]
    returned = tmp_path / student.name
    shutil.copyfile(student, returned)
    done = subprocess.run([sys.executable, "-m", "helpers", "grade", str(returned), "--autograder", str(autograder),
                           "--pieces-only", "--out", str(tmp_path / "grades")], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.rsplit(maxsplit=1) for line in done.stdout.strip().splitlines())
    names = [q.name for q in read_questions(NOTEBOOKS / "03_pretraining.ipynb")]
    assert lines == {**{name: "0" for name in names}, "total": "0"}
    assert json.loads((tmp_path / "grades" / "results.json").read_text())["tests"]


def test_a_malformed_master_is_refused_naming_the_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_raw_cell("# BEGIN QUESTION\nname: q\npoints: 1"),
                nbformat.v4.new_raw_cell("# END TESTS")]
    nbformat.write(nb, tmp_path / "bad.ipynb")
    with pytest.raises(AssignError, match=r"bad.ipynb cell 1: '# END TESTS' inside question"):
        read_questions(tmp_path / "bad.ipynb")
    nb.cells = [nbformat.v4.new_raw_cell("# BEGIN QUESTION\npoints: 1")]
    nbformat.write(nb, tmp_path / "bad.ipynb")
    with pytest.raises(AssignError, match="needs 'name: ...'"):
        read_questions(tmp_path / "bad.ipynb")
    nb.cells = [nbformat.v4.new_raw_cell("# BEGIN QUESTION\nname: q"), nbformat.v4.new_raw_cell("# BEGIN SOLUTION"),
                nbformat.v4.new_code_cell("def f():\n    # BEGIN SOLUTION\n    return 1\n")]
    nbformat.write(nb, tmp_path / "bad.ipynb")
    with pytest.raises(AssignError, match="cell 2: # BEGIN SOLUTION without # END SOLUTION"):
        read_questions(tmp_path / "bad.ipynb")


def test_grading_without_an_autograder_says_what_to_run(tmp_path, monkeypatch, capsys):
    from helpers.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["grade", "03_pretraining.ipynb", "--pieces-only"]) == 2
    assert capsys.readouterr().err == ("error: no autograder for '03_pretraining.ipynb' in build/exercises: run make "
                                       "exercises, or name one with --autograder\n")
    with pytest.raises(AssignError, match="not a notebook written by make exercises"):
        grade(NOTEBOOKS / "03_pretraining.ipynb", tmp_path / "none.zip", tmp_path / "out", pieces_only=True)
