"""Where the lessons keep their runs and figures, what each needs first, and running them headless.

Notebooks run with ``notebooks/`` as their working folder. By default runs go
to ``../runs`` and figures to ``../figures``; ``$HELPERS_RUNS`` and
``$HELPERS_FIGURES`` (or the notebooks' parameters) move them, which is how
the tests keep the committed figures untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .runs import has_model

__all__ = [
    "NOTEBOOKS",
    "LessonPaths",
    "MissingPrerequisite",
    "lesson_paths",
    "require_run",
    "run_lessons",
]

NOTEBOOKS = (
    "01_tokenization.ipynb",
    "02_self_attention.ipynb",
    "03_pretraining.ipynb",
    "04_finetuning.ipynb",
    "05_evaluation.ipynb",
)


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

    Relative folders are relative to the notebooks' working folder; ``base``
    names that folder for callers running elsewhere (the report job).
    """
    runs = Path(runs_dir or os.environ.get("HELPERS_RUNS") or "../runs")
    figures = Path(figures_dir or os.environ.get("HELPERS_FIGURES") or "../figures")
    if base is not None:
        runs, figures = (Path(base) / p if not p.is_absolute() else p for p in (runs, figures))
    return LessonPaths(runs, figures)


def require_run(path: str | Path, notebook: str) -> Path:
    """``path`` if it holds a trained model, else one clear error naming the notebook to run first."""
    path = Path(path)
    if not has_model(path):
        raise MissingPrerequisite(f"no trained model in {str(path)!r}: run {notebook} first")
    return path


def run_lessons(profile: str = "lesson", *, notebooks: str | Path = "notebooks", out_dir: str | Path = "build/notebooks",
                parameters: dict | None = None, progress: bool = True) -> list[Path]:
    """Execute the five lessons in order through papermill; executed copies go to ``out_dir``.

    Each notebook runs with ``notebooks`` as its working folder and gets
    ``profile`` (plus ``parameters``) injected into its ``parameters`` cell.
    A failing lesson stops the job with papermill's error naming the cell;
    its partly executed copy is kept in ``out_dir`` to read.
    """
    import papermill  # optional: only the report job runs notebooks

    notebooks, out_dir = Path(notebooks), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in NOTEBOOKS:
        target = out_dir / name
        print(f"running {name} (profile {profile})", flush=True)
        papermill.execute_notebook(str(notebooks / name), str(target), parameters={"profile": profile, **(parameters or {})},
                                   cwd=str(notebooks), kernel_name="python3", progress_bar=progress)
        written.append(target)
    return written
