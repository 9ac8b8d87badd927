"""A study longer than a lesson: can a model of the paper's shape learn story question answering?

The lesson's finetuning is a few hundred steps, enough to learn the form of
an answer. The study trains the same shape (width 64, 6 layers, 8 heads)
for about a quarter of an hour on two idle CPU cores: a longer pretraining, then a long
finetuning on many more story questions, with a checkpoint every few hundred
steps. It then measures exact answers per kind of question at every
checkpoint, on the questions about held-out stories, against baselines taken
from the training questions, and writes the figure and its numbers to the
figures folder (``study_answers.png`` and ``.json``), with the learning order
of its pretraining (``study_learning_order.png`` and ``.json``). How long it
took is a measurement of the machine, not a result of the study: it goes to
``benchmarks/results/study-timing.json`` with the machine named, and the
committed figures stay the same on every rerun. ``python -m helpers study``
(``make study``) runs it; it is not part of the report job.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any, Mapping

from .config import get_profile
from .evaluation_plots import answer_curve_figure, learning_order_figure
from .devices import describe_machine
from .learning_order import answer_curve, learning_order
from .plots import close
from .runs import read_run_record, write_json
from .train import ensure_run

__all__ = ["STUDY_SETTINGS", "run_study", "write_timing"]

# On top of the lesson profile (its tokenizer, 288-token blocks, no dropout): what the study changes.
# Pretraining matters most: a model this size answers a kind of question only once pretraining has
# taught it to copy that kind of fact from the context (the learning order's cloze shows when).
STUDY_SETTINGS: dict[str, Any] = {
    "data.train_stories": 60_000,
    "pretrain.max_steps": 3500,
    "pretrain.save_every": 500,
    "pretrain.keep_checkpoints": 8,
    "data.instruction_limit": 60_000,
    "finetune.max_steps": 1500,
    "finetune.learning_rate": 2e-3,
    "finetune.log_every": 50,
    "finetune.eval_every": 150,
    "finetune.save_every": 150,
    "finetune.keep_checkpoints": 10,
}


def _setting(profile, key: str) -> Any:
    """A setting's value as the profile holds it (typed, whether it came from code or the command line)."""
    section, _, name = key.partition(".")
    return getattr(getattr(profile, section), name) if name else getattr(profile, section)


def run_study(out_dir: str | Path, figures_dir: str | Path, *, overrides: Mapping[str, Any] | None = None,
              stories: int = 64, prompts: int = 200, progress: bool = True,
              timing: str | Path | None = None) -> dict[str, Any]:
    """Pretrain and finetune with :data:`STUDY_SETTINGS`, then score answers at every finetuning checkpoint.

    Runs that already finished are reused (and half-done ones resumed), so
    rerunning the study only measures again. ``stories`` held-out stories
    give the questions and the cloze items, ``prompts`` the continuations of
    the learning order. Returns the answer curve with the settings and the
    training times; the figure and its numbers go to
    ``figures_dir / "study_answers.png"`` and ``.json``, the times to ``timing``
    (default: ``benchmarks/results/study-timing.json`` beside ``figures_dir``).
    """
    profile = get_profile("lesson", {**STUDY_SETTINGS, **(overrides or {})})
    settings = {key: _setting(profile, key) for key in {**STUDY_SETTINGS, **(overrides or {})}}
    out = Path(out_dir)
    started = time.perf_counter()
    pre = ensure_run("pretrain", profile, out / "pretrain", progress=progress)
    fin = ensure_run("finetune", profile, out / "finetune", init=out / "pretrain", progress=progress)
    trained = time.perf_counter() - started
    curve = answer_curve(out / "finetune", stories=stories, profile=profile, progress=progress)
    order = learning_order(out / "pretrain", prompts=prompts, cloze_stories=stories, profile=profile,
                           progress=progress)
    close(learning_order_figure(order, title="The study's pretraining, checkpoint by checkpoint",
                                path=Path(figures_dir) / "study_learning_order.png"))
    result = {**curve, "settings": settings,
              "tokens": {"pretraining": pre.tokens, "finetuning": fin.tokens},
              "eval_loss": {"pretraining": pre.eval_loss, "finetuning": fin.eval_loss}}
    figure = Path(figures_dir) / "study_answers.png"
    close(answer_curve_figure(result, title="The study: exact answers along a long finetuning", path=figure))
    minutes = {"pretraining": pre.elapsed_s / 60, "finetuning": fin.elapsed_s / 60,
               "measuring": (time.perf_counter() - started - trained) / 60}
    timing = Path(figures_dir).parent / "benchmarks" / "results" / "study-timing.json" if timing is None else timing
    record = read_run_record(out / "pretrain")
    write_timing(timing, minutes, settings=settings, device=record.device if record else None)
    return {**result, "minutes": minutes, "figure": str(figure), "timing": str(timing)}


def write_timing(path: str | Path, minutes: Mapping[str, float], *, settings: Mapping[str, Any],
                 device: str | None = None) -> Path:
    """The study's wall-clock minutes, with the machine and the date, as a benchmark result of their own.

    Kept out of the figures' JSON, which must read the same on every rerun.
    """
    write_json(path, {"what": "python -m helpers study: wall-clock minutes of each part",
                      "date": datetime.date.today().isoformat(), "machine": describe_machine(device),
                      "settings": dict(settings), "minutes": {k: round(v, 2) for k, v in minutes.items()}})
    return Path(path)
