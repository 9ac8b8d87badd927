"""Where the lessons keep their runs and figures, what each needs first, and running them headless.

Notebooks run with ``notebooks/`` as their working folder (the worked
solutions with ``notebooks/solutions/``). By default runs go to the
repository's ``runs/`` and figures to its ``figures/``, written relative to
that folder (``../runs``, or ``../../runs`` from the solutions); ``$HELPERS_RUNS`` and
``$HELPERS_FIGURES`` (or the notebooks' parameters) move them, which is how
the tests keep the committed figures untouched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .runs import has_model, write_text

__all__ = [
    "NOTEBOOKS",
    "LessonPaths",
    "MissingPrerequisite",
    "lesson_paths",
    "require_run",
    "REPORT_ORDER",
    "run_lessons",
    "store_lesson",
]

NOTEBOOKS = (
    "01_tokenization.ipynb",
    "02_self_attention.ipynb",
    "03_pretraining.ipynb",
    "04_finetuning.ipynb",
    "05_evaluation.ipynb",
)

NOTEBOOK_SUBFOLDERS = ("solutions", "student")  # notebooks that run one folder below notebooks/


class MissingPrerequisite(RuntimeError):
    """A lesson needs the run of an earlier lesson that does not exist yet."""


@dataclass(frozen=True)
class LessonPaths:
    """The folders one lesson reads and writes."""

    runs: Path
    figures: Path

    @property
    def pretrain(self) -> Path:
        return self.runs / "pretrain"

    @property
    def finetune(self) -> Path:
        return self.runs / "finetune"

    def figure(self, name: str) -> Path:
        self.figures.mkdir(parents=True, exist_ok=True)
        return self.figures / name


def lesson_paths(runs_dir: str | Path | None = None, figures_dir: str | Path | None = None,
                 base: str | Path | None = None) -> LessonPaths:
    """Resolve a notebook's ``runs_dir``/``figures_dir`` parameters (``None`` = environment or default).

    Relative folders are relative to the notebook's working folder; ``base``
    names that folder for callers running elsewhere (the report job). The
    defaults point at the repository's ``runs/`` and ``figures/`` from
    ``notebooks/``, ``notebooks/solutions/`` and ``notebooks/student/`` (the
    notebooks ``make exercises`` writes) alike, so a solution or a student's
    notebook finds the runs its lesson wrote.
    """
    here = Path(base) if base is not None else Path.cwd()
    up = "../../" if here.parent.name == "notebooks" and here.name in NOTEBOOK_SUBFOLDERS else "../"
    runs = Path(runs_dir or os.environ.get("HELPERS_RUNS") or f"{up}runs")
    figures = Path(figures_dir or os.environ.get("HELPERS_FIGURES") or f"{up}figures")
    if base is not None:
        runs, figures = (Path(base) / p if not p.is_absolute() else p for p in (runs, figures))
    return LessonPaths(runs, figures)


def require_run(path: str | Path, notebook: str) -> Path:
    """``path`` if it holds a trained model, else one clear error naming the notebook to run first."""
    path = Path(path)
    if not has_model(path):
        raise MissingPrerequisite(f"no trained model in {str(path)!r}: run {notebook} first")
    return path


# Lesson 2's last section reads lesson 3's run, so the report job runs lesson 3 first: the stored
# attention and position figures then come from the full run, not from lesson 2's short demo.
REPORT_ORDER = ("01_tokenization.ipynb", "03_pretraining.ipynb", "02_self_attention.ipynb",
                "04_finetuning.ipynb", "05_evaluation.ipynb")


def run_lessons(profile: str = "lesson", *, notebooks: str | Path = "notebooks", out_dir: str | Path = "build/notebooks",
                parameters: dict | None = None, store: bool = False, progress: bool = True) -> list[Path]:
    """Execute the five lessons through papermill (lesson 3 before 2); executed copies go to ``out_dir``.

    Each notebook runs with ``notebooks`` as its working folder and gets
    ``profile`` (plus ``parameters``) injected into its ``parameters`` cell.
    Progress bars print as text (``HELPERS_PROGRESS=text``), so a stored
    lesson shows each bar's last state. With ``store``, each executed lesson
    also replaces its source in ``notebooks`` (:func:`store_lesson`): how the
    committed lessons get their outputs. A failing lesson stops the job with
    papermill's error naming the cell; its partly executed copy is kept in
    ``out_dir`` to read.
    """
    import papermill  # optional: only the report job runs notebooks

    notebooks, out_dir = Path(notebooks), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    before = os.environ.get("HELPERS_PROGRESS")
    os.environ["HELPERS_PROGRESS"] = "text"  # the kernels papermill starts inherit it
    try:
        for name in REPORT_ORDER:
            target = out_dir / name
            print(f"running {name} (profile {profile})", flush=True)
            papermill.execute_notebook(str(notebooks / name), str(target), cwd=str(notebooks),
                                       parameters={"profile": profile, **(parameters or {})},
                                       kernel_name="python3", progress_bar=progress)
            if store:
                store_lesson(target, notebooks / name)
            written.append(target)
    finally:
        if before is None:
            os.environ.pop("HELPERS_PROGRESS", None)
        else:
            os.environ["HELPERS_PROGRESS"] = before
    return written


# Cell metadata that records one execution, not the lesson: papermill's timings and status, Jupyter's.
RUN_METADATA = ("papermill", "execution", "ExecuteTime")


def store_lesson(executed: str | Path, target: str | Path) -> Path:
    """An executed lesson as it is committed: the same bytes whenever the same content was executed.

    Dropped: the injected-parameters cell, papermill's bookkeeping (the
    machine's input and output paths, the parameters, cell timings) and the
    kernel's Python version, which differ from machine to machine and run to
    run. Each cell's printed text is stored in one canonical form
    (:func:`_canonical_outputs`), however the kernel happened to send it.
    """
    notebook = json.loads(Path(executed).read_text(encoding="utf-8"))
    notebook["metadata"].pop("papermill", None)
    notebook["metadata"].get("language_info", {}).pop("version", None)  # the machine's Python, not the lesson's
    notebook["cells"] = [c for c in notebook["cells"] if "injected-parameters" not in c["metadata"].get("tags", [])]
    for cell in notebook["cells"]:
        for key in RUN_METADATA:
            cell["metadata"].pop(key, None)
        if "outputs" in cell:
            cell["outputs"] = _canonical_outputs(cell["outputs"])
    write_text(target, json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return Path(target)


def _canonical_outputs(outputs: list[dict]) -> list[dict]:
    """Consecutive streams of one name joined into one, then each line as a terminal finally shows it.

    The kernel sends printed text in pieces whose boundaries depend on
    timing (a line, even a carriage return, may be split between two
    pieces), so pieces are joined before carriage returns are resolved.
    """
    joined: list[dict] = []
    for output in outputs:
        if output.get("output_type") != "stream":
            joined.append(output)
        elif joined and joined[-1].get("output_type") == "stream" and joined[-1]["name"] == output["name"]:
            joined[-1]["text"] += "".join(output["text"])
        else:
            joined.append({**output, "text": "".join(output["text"])})
    for output in joined:
        if output.get("output_type") == "stream":
            output["text"] = _shown_lines(output["text"])
    return [o for o in joined if o.get("output_type") != "stream" or o["text"]]


def _shown_lines(text: str) -> list[str]:
    """``text`` as nbformat lines, each line redrawn with carriage returns reduced to its last state.

    A text progress bar redraws its line, padding a shorter state with
    spaces; the padding depends on which states were drawn (a matter of
    timing), so a redrawn line loses its trailing spaces.
    """
    lines = [line.rsplit("\r", 1)[-1].rstrip() if "\r" in line else line
             for line in text.replace("\r\n", "\n").split("\n")]
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
