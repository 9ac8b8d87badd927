"""Where lessons keep their runs and figures, and the report job that reruns them all.

Notebooks run with ``notebooks/`` as their working folder. By default runs go
to ``../runs`` and figures to ``../figures``; ``$HELPERS_RUNS`` and
``$HELPERS_FIGURES`` (or the notebooks' parameters) move them, which is how
the tests keep the committed figures untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "NOTEBOOKS",
    "LessonPaths",
    "MissingPrerequisite",
    "lesson_paths",
    "require_run",
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


def lesson_paths(runs_dir: str | Path | None = None, figures_dir: str | Path | None = None) -> LessonPaths:
    """Resolve a notebook's ``runs_dir``/``figures_dir`` parameters (``None`` = environment or default)."""
    runs = runs_dir or os.environ.get("HELPERS_RUNS") or "../runs"
    figures = figures_dir or os.environ.get("HELPERS_FIGURES") or "../figures"
    return LessonPaths(Path(runs), Path(figures))


def require_run(path: str | Path, notebook: str) -> Path:
    """``path`` if it holds a finished run, else one clear error naming the notebook to run first."""
    path = Path(path)
    if not ((path / "config.json").exists() and (path / "model.safetensors").exists()):
        raise MissingPrerequisite(f"no trained model in {str(path)!r}: run {notebook} first")
    return path
