"""Student notebooks and autograders, written by otter-grader from the course's master notebooks.

The five lessons (for the pieces a student writes inside a lesson) and the
five worked-solution notebooks (for the end-of-lesson exercises) are Otter
Assign masters: each question holds its task, its solution and its tests in
one place (``notebooks/EXERCISES.md`` describes the format). This module reads
their questions and runs ``otter assign`` on each, with the assignment
configuration added here so that the committed notebooks stay plain lessons.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .lessons import NOTEBOOKS

__all__ = [
    "MASTERS",
    "Question",
    "AssignError",
    "read_questions",
    "student_name",
    "assign",
    "make_exercises",
    "answers_only",
    "grade",
]

MASTERS = tuple(NOTEBOOKS) + tuple(f"solutions/{name.replace('.ipynb', '_solutions.ipynb')}" for name in NOTEBOOKS)

# Otter's options for every master: its own init cell (the grader), a check cell after each
# question, tests kept in the notebook (no separate files a student could lose).
ASSIGNMENT_CONFIG = """# ASSIGNMENT CONFIG
name: {name}
init_cell: true
check_all_cell: false
export_cell: false
run_tests: false
tests:
  files: false
"""

_DELIMITER = re.compile(r"# (BEGIN|END) (QUESTION|SOLUTION|TESTS)\b")
_INLINE = re.compile(r"^\s*# (BEGIN|END) SOLUTION\s*$")


class AssignError(ValueError):
    """A master notebook that otter cannot turn into an assignment; the message names the notebook and cell."""


@dataclass
class Question:
    """One graded question of a master notebook, as the format defines it."""

    name: str
    points: float
    solution_lines: list[str] = field(default_factory=list)  # what the student must write (never shown)
    discussion: list[str] = field(default_factory=list)      # worked prose (never shown)
    public_tests: list[str] = field(default_factory=list)
    hidden_tests: list[str] = field(default_factory=list)


def _raw_delimiter(cell) -> tuple[str, str] | None:
    if cell.cell_type != "raw":
        return None
    match = _DELIMITER.match(cell.source.strip())
    return (match.group(1), match.group(2)) if match else None


def _marked_lines(source: str, where: str) -> list[str]:
    """The lines between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` comments of one code cell."""
    lines, inside = [], False
    for line in source.splitlines():
        if _INLINE.match(line):
            inside = line.strip() == "# BEGIN SOLUTION"
            continue
        if inside:
            lines.append(line)
    if inside:
        raise AssignError(f"{where}: # BEGIN SOLUTION without # END SOLUTION")
    return lines


def read_questions(master: str | Path) -> list[Question]:
    """Every question of ``master``, checked for the nesting the format needs."""
    import nbformat  # its schema checks take seconds to import: only the exercises path pays
    nb = nbformat.read(master, as_version=4)
    questions: list[Question] = []
    block = None  # "question", "solution" or "tests" while inside one
    for index, cell in enumerate(nb.cells):
        where = f"{Path(master).name} cell {index}"
        delimiter = _raw_delimiter(cell)
        if delimiter is not None:
            kind, what = delimiter
            expected = {("BEGIN", "QUESTION"): None, ("BEGIN", "SOLUTION"): "question", ("BEGIN", "TESTS"): "question",
                        ("END", "SOLUTION"): "solution", ("END", "TESTS"): "tests", ("END", "QUESTION"): "question"}
            if block != expected[kind, what]:
                raise AssignError(f"{where}: '# {kind} {what}' inside {block or 'no question'}")
            if (kind, what) == ("BEGIN", "QUESTION"):
                settings = dict(line.split(":", 1) for line in cell.source.strip().splitlines()[1:] if ":" in line)
                if "name" not in settings:
                    raise AssignError(f"{where}: a question needs 'name: ...' on the line after '# BEGIN QUESTION'")
                questions.append(Question(settings["name"].strip(), float(settings.get("points", 1))))
            block = {"BEGIN": what.lower(), "END": "question" if what != "QUESTION" else None}[kind]
            continue
        if block == "solution" and cell.cell_type == "code":
            questions[-1].solution_lines += _marked_lines(cell.source, where)
        elif block == "solution" and cell.cell_type == "markdown":
            questions[-1].discussion.append(cell.source)
        elif block == "tests" and cell.cell_type == "code":
            hidden = cell.source.lstrip().upper().startswith("# HIDDEN")
            (questions[-1].hidden_tests if hidden else questions[-1].public_tests).append(cell.source)
    if block is not None:
        raise AssignError(f"{Path(master).name}: the last question is not closed (still inside {block})")
    names = [q.name for q in questions]
    if len(set(names)) != len(names):
        raise AssignError(f"{Path(master).name}: question names repeat: {sorted(n for n in names if names.count(n) > 1)}")
    return questions


def student_name(master: str | Path) -> str:
    """What the student's copy is called: the lesson's own name, or ``..._exercises`` for a solutions notebook."""
    return Path(master).name.replace("_solutions.ipynb", "_exercises.ipynb")


def assign(master: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Run ``otter assign`` on one master; returns (student notebook, autograder zip) under ``out_dir``.

    The master is copied with the assignment configuration as its first
    cell; the committed notebook is never changed.
    """
    import nbformat  # its schema checks take seconds to import: only the exercises path pays
    from otter.assign import main as otter_assign  # otter takes seconds to import: only here, not for every CLI call

    master, out_dir = Path(master), Path(out_dir)
    read_questions(master)  # a malformed master fails here, naming the cell
    nb = nbformat.read(master, as_version=4)
    name = Path(student_name(master)).stem
    nb.cells.insert(0, nbformat.v4.new_raw_cell(ASSIGNMENT_CONFIG.format(name=name)))
    shutil.rmtree(out_dir, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()) as log:
        copy = Path(tmp) / student_name(master)
        nbformat.write(nb, copy)
        try:
            otter_assign(str(copy), str(out_dir.resolve()), no_pdfs=True, no_run_tests=True)
        except Exception as err:  # otter's own errors name the cell in their message
            raise AssignError(f"otter assign failed on {master}: {err}\n{log.getvalue()[-2000:]}") from err
    zips = sorted((out_dir / "autograder").glob("*-autograder_*.zip"))
    return out_dir / "student" / copy.name, zips[-1]


def make_exercises(notebooks: str | Path = "notebooks", out_dir: str | Path = "build/exercises") -> list[Path]:
    """Every master through otter: student notebooks into ``notebooks/student/``, autograders into ``out_dir``.

    ``notebooks/student/`` runs one folder below ``notebooks/``, as the
    solutions do, so a student's notebook finds the lessons' runs and figures.
    """
    notebooks, out_dir = Path(notebooks), Path(out_dir)
    handed_out = notebooks / "student"
    handed_out.mkdir(exist_ok=True)
    written = []
    for master in MASTERS:
        student, autograder = assign(notebooks / master, out_dir / Path(student_name(master)).stem)
        target = handed_out / student.name
        shutil.copyfile(student, target)
        print(f"{target}  (autograder: {autograder})", flush=True)
        written.append(target)
    return written


ANSWER_TAGS = {"otter_answer_cell", "otter_assign_solution_cell"}  # the student's copy, the autograder's


def answers_only(notebook: str | Path, out: str | Path) -> Path:
    """``notebook`` cut down to its setup and its answer cells, written to ``out``.

    Setup: otter's init cell and the three cells every course notebook opens
    with (the package check, the parameters, the imports). A lesson's pieces
    are written so that their tests need nothing else, so they can be graded
    this way in seconds, without the lesson's training runs.
    """
    import nbformat  # its schema checks take seconds to import: only the exercises path pays
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    setup, rest = code[:4], code[4:]
    if len(setup) < 4 or not setup[0].source.startswith("# Initialize Otter") or not setup[3].source.startswith("import"):
        raise AssignError(f"{notebook}: not a notebook written by make exercises (otter's init cell, then the "
                          "package check, the parameters and the imports)")
    nb.cells = setup + [c for c in rest if ANSWER_TAGS & set(c.metadata.get("tags", []))]
    nbformat.write(nb, out)
    return Path(out)


def grade(submission: str | Path, autograder: str | Path, out_dir: str | Path, *, pieces_only: bool = False
          ) -> dict[str, float]:
    """Score each question of ``submission`` with ``otter run`` against ``autograder`` (its zip).

    With ``pieces_only`` only the answer cells run (:func:`answers_only`):
    the way to grade the pieces written inside a lesson.
    """
    submission, out_dir = Path(submission), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if pieces_only:
        submission = answers_only(submission, out_dir / submission.name)
    done = subprocess.run([sys.executable, "-m", "otter", "run", "--no-logo", "-a", str(Path(autograder).resolve()),
                           "-o", str(out_dir.resolve()), str(submission.resolve())],
                          capture_output=True, text=True, cwd=submission.parent)
    if done.returncode != 0:
        raise AssignError(f"otter run failed on {submission}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    results = json.loads((out_dir / "results.json").read_text())
    return {t["name"]: t["score"] for t in results["tests"] if "score" in t and t["name"] != "Public Tests"}
