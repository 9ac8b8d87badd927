"""Where a run's numbers go while it trains: ``metrics.jsonl`` always, live curves when asked.

``report_to`` (as ``TrainingArguments`` names it) lists the live viewers:
``"tensorboard"`` (event files in ``<run>/tensorboard``, for ``tensorboard
--logdir`` or the ``%tensorboard`` notebook magic) and ``"wandb"`` (Weights &
Biases, as the paper used; offline into ``<run>/wandb`` unless an account is
configured). Both engines hand every record to one :class:`RunLog`, so the
scalar names are the ``metrics.jsonl`` keys whichever engine trained. Both
libraries are optional: asking for one that is not installed stops the run
before its first step, naming the package to install.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from .runs import RunError, append_metrics

__all__ = ["REPORTERS", "SCALARS", "parse_report_to", "check_reporters", "RunLog"]

REPORTERS = ("tensorboard", "wandb")
SCALARS = ("train_loss", "eval_loss", "perplexity", "learning_rate", "grad_norm", "tokens_per_sec", "tokens", "epoch")


def parse_report_to(value: str, setting: str = "report_to") -> list[str]:
    """``"none"`` (or empty) means none; otherwise a comma-separated list of :data:`REPORTERS`."""
    names = [] if value.strip().lower() in {"", "none"} else [v.strip().lower() for v in value.split(",")]
    unknown = [n for n in names if n not in REPORTERS]
    if unknown:
        raise RunError(f"{setting}={value!r}: unknown {unknown}; use 'none' or any of {list(REPORTERS)}, "
                       "comma-separated")
    return names


def check_reporters(value: str, setting: str = "report_to") -> None:
    """Stop before anything is written when a viewer is unknown or its package is not installed."""
    packages = {"tensorboard": "tensorboard", "wandb": "wandb"}
    for name in parse_report_to(value, setting):
        if importlib.util.find_spec(packages[name]) is None:
            raise RunError(f"{setting}={value!r} needs the {packages[name]} package (pip install {packages[name]})")


class _TensorBoard:
    """Scalars in TensorBoard event files; a resumed run first drops what was logged after its checkpoint."""

    def __init__(self, run_dir: Path, start_step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: needs the tensorboard package
        except ImportError as err:
            raise RunError(f"report_to='tensorboard' needs the tensorboard package (pip install tensorboard): "
                           f"{err}") from None
        # purge_step: events after the step a resumed run continues from are written again
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_step + 1)

    def log(self, record: dict[str, Any]) -> None:
        for key in SCALARS:
            if record.get(key) is not None:
                self.writer.add_scalar(key, record[key], global_step=record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandB:
    """A Weights & Biases run: online when an API key is configured, else offline files in ``<run>/wandb``."""

    def __init__(self, run_dir: Path, name: str, config: dict[str, Any]):
        try:
            import wandb  # optional: needs the wandb package
        except ImportError as err:
            raise RunError(f"report_to='wandb' needs the wandb package (pip install wandb): {err}") from None
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "story-gpt"), name=name, dir=str(run_dir),
                              config=config, mode=mode, reinit="create_new")

    def log(self, record: dict[str, Any]) -> None:
        self.run.log({k: record[k] for k in SCALARS if record.get(k) is not None}, step=record["step"])

    def close(self) -> None:
        self.run.finish()


class RunLog:
    """Appends records to ``metrics.jsonl`` and shows them in the live viewers of ``report_to``.

    Only the main process writes; use it as a context manager so the viewers
    are closed however the run ends.
    """

    def __init__(self, run_dir: Path, report_to: str, *, name: str, config: dict[str, Any], main: bool,
                 start_step: int = 0, setting: str = "report_to"):
        self.run_dir, self.main = Path(run_dir), main
        names = parse_report_to(report_to, setting)
        self.viewers: list[_TensorBoard | _WandB] = []
        if main:
            for viewer in names:
                self.viewers.append(_TensorBoard(self.run_dir, start_step) if viewer == "tensorboard"
                                    else _WandB(self.run_dir, name, config))

    def write(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        append_metrics(self.run_dir, record)
        for viewer in self.viewers:
            viewer.log(record)

    def close(self) -> None:
        for viewer in self.viewers:
            viewer.close()
        self.viewers = []

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
