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
    "FIGURES",
    "run_lessons",
    "write_report",
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
    """``path`` if it holds a finished run, else one clear error naming the notebook to run first."""
    path = Path(path)
    if not ((path / "config.json").exists() and (path / "model.safetensors").exists()):
        raise MissingPrerequisite(f"no trained model in {str(path)!r}: run {notebook} first")
    return path


FIGURES = (  # (file, caption): the report shows those that exist, in this order
    ("pretrain_lr.png", "Pretraining learning rate (the paper's Fig. 10)"),
    ("pretrain_loss_train.png", "Pretraining loss on training data (Fig. 11)"),
    ("pretrain_loss_eval.png", "Pretraining loss on validation data (Fig. 12)"),
    ("pretrain_ppl.png", "Validation perplexity during pretraining"),
    ("finetune_lr.png", "Finetuning learning rate (Fig. 15)"),
    ("finetune_loss_train.png", "Finetuning loss on training data (Fig. 16)"),
    ("finetune_loss_eval.png", "Finetuning loss on validation data (Fig. 17)"),
    ("learning_order.png", "What is learned when: grammar, consistency, answers"),
    ("repetition.png", "Repetition of generated text"),
    ("attention_heads.png", "Attention heads of a trained model"),
    ("token_lengths.png", "Tokens per story under four tokenizers"),
)


def run_lessons(profile: str = "lesson", *, notebooks: str | Path = "notebooks", out_dir: str | Path = "build/notebooks",
                parameters: dict | None = None, progress: bool = True) -> list[Path]:
    """Execute the five lessons in order through papermill; executed copies go to ``out_dir``.

    Each notebook runs with ``notebooks`` as its working folder and gets
    ``profile`` (plus ``parameters``) injected into its ``parameters`` cell.
    A failing lesson stops the job with papermill's error naming the cell;
    its partly executed copy is kept in ``out_dir`` to read.
    """
    import papermill

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


def _read_json(path: Path) -> dict | None:
    import json

    return json.loads(path.read_text()) if path.exists() else None


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def write_report(paths: LessonPaths, out: str | Path, *, profile: str = "lesson") -> Path:
    """A markdown report: the key numbers beside the paper's, and every figure that exists.

    Reads only what the lessons left behind: each run's ``run.json``,
    ``metrics.jsonl`` and ``eval.json``, and the figures folder.
    """
    import datetime
    import os

    from .train import read_metrics

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for stage, folder, paper_ppl in (("pretraining", paths.pretrain, 10.1827), ("finetuning", paths.finetune, 394.8)):
        run, evaluation = _read_json(folder / "run.json"), _read_json(folder / "eval.json")
        if run is None:
            rows.append(f"| {stage} | {paper_ppl} | not run | | | |")
            continue
        records = read_metrics(folder)
        last_eval = next((r for r in reversed(records) if r.get("eval_loss") is not None), {})
        ppl = (evaluation or {}).get("perplexity") or {}
        rows.append(f"| {stage} | {paper_ppl} | {_number(ppl.get('perplexity', last_eval.get('perplexity')))} | "
                    f"{_number(run['total_steps'])} | {_number(records[-1]['tokens'])} | "
                    f"{_number(records[-1]['elapsed_s'] / 60, 3)} min on {run['device']} ({run['precision']}) |")
    lines = [
        "# Story-based QA GPT, rebuilt: report",
        "",
        f"Profile `{profile}`, written {datetime.date.today().isoformat()} from the runs in "
        f"`{os.path.relpath(paths.runs, out.parent)}` and the figures in `{os.path.relpath(paths.figures, out.parent)}`.",
        "",
        "## Perplexity: the paper and this run",
        "",
        "Not comparable across profiles: the lesson profile uses its own 2048-token vocabulary and the embedded "
        "stories and story questions; only the `paper` profile measures what the paper measured.",
        "",
        "| stage | paper | this run | steps | training tokens | training time |",
        "|---|---:|---:|---:|---:|---|",
        *rows,
        "",
    ]
    pre_eval = _read_json(paths.pretrain / "eval.json") or {}
    fine_eval = _read_json(paths.finetune / "eval.json") or {}
    if pre_eval.get("repetition"):
        lines += ["## Repetition (the paper: gpt2 loops, the small model does not)", "",
                  "| decoding | distinct-2 | repeated 4-grams |", "|---|---:|---:|"]
        for row in pre_eval["repetition"]:
            lines.append(f"| {row['model']} | {_number(row.get('distinct_2'), 3)} | "
                         f"{_number(row.get('repeated_4gram_share'), 3)} |")
        comparison = pre_eval.get("comparison") or {}
        if comparison.get("skipped"):
            lines.append(f"\ngpt2 comparison skipped: {comparison['skipped']}.")
        lines.append("")
    if fine_eval.get("qa"):
        qa = fine_eval["qa"]
        lines += ["## Story questions after finetuning", "",
                  "| kind | exact answers | answers of the right form |", "|---|---:|---:|"]
        for kind, tally in qa["by_kind"].items():
            lines.append(f"| {kind} | {_number(tally['accuracy'], 3)} | {_number(tally.get('template'), 3)} |")
        lines += [f"| all | {_number(qa['accuracy'], 3)} | {_number(qa.get('template'), 3)} |", ""]
    lines += ["## Figures", ""]
    for name, caption in FIGURES:
        figure = paths.figures / name
        if figure.exists():
            lines += [f"### {caption}", "", f"![{caption}]({os.path.relpath(figure, out.parent)})", ""]
    out.write_text("\n".join(lines))
    return out
