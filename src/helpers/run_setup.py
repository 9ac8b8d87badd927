"""Everything a training run needs before its first step, built once and shared by both engines.

:func:`prepare` loads or builds the model and tokenizer, prepares the data,
fixes the order of batches, the number of steps and the warm-up, finds the
checkpoint a resumed run continues from, and records the run in
``run.json``. The fast loop of :mod:`helpers.train` and the ``Trainer``
engine of :mod:`helpers.hf_trainer` both start from the :class:`RunSetup` it
returns, so the two engines train the same model on the same batches.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoTokenizer, GPT2LMHeadModel, PreTrainedTokenizerBase

from .batches import FinetuneData, PretrainData, StepOrder, TokenCount, prepare_data
from .config import Profile, TrainConfig
from .devices import Processes, run_precision, seed_everything, setup_processes
from .gpt import GPT, hf_quiet
from .model import build_model, hf_model, load_model
from .optim import warmup_steps_for
from .runs import (
    RunError, RunRecord, checkpoint_step, latest_checkpoint, missing_model_files, truncate_metrics, write_run_record,
)
from .tokenizer import profile_tokenizer
from .tracking import RunLog

__all__ = ["Stage", "RunSetup", "describe", "check_init", "prepare", "save_model_files", "publish_final"]

Stage = Literal["pretrain", "finetune"]


@dataclass
class RunSetup:
    """One run, ready to train: what both engines share."""

    stage: Stage
    cfg: TrainConfig                       # the stage's recipe from the profile
    out: Path                              # the run folder
    procs: Processes                       # rank, world size, device
    precision: str                         # what the device actually runs
    model: GPT | GPT2LMHeadModel           # the fast engine trains GPT, Trainer the same weights as transformers'
    tokenizer: PreTrainedTokenizerBase
    train_data: PretrainData | FinetuneData
    val_data: PretrainData | FinetuneData
    order: StepOrder                       # which examples each step trains on
    total: int                             # optimizer steps of the whole run
    warmup: int                            # warm-up steps of the schedule
    tokens: TokenCount                     # input tokens seen after each step
    checkpoint: Path | None                # where a resumed run continues from
    start_step: int                        # the step it continues after (0: a new run)
    log: RunLog | None = None              # metrics.jsonl and the live viewers

    @property
    def device(self) -> torch.device:
        return self.procs.device


def describe(stage: Stage, engine: str, profile: Profile, init: Path | None, world: int) -> dict[str, Any]:
    """What identifies a run: a folder may only be resumed with the same description."""
    return {"stage": stage, "engine": engine, "profile": profile.to_dict(),
            "init": str(init) if init else None, "world_size": world}


def check_init(init: str | Path | None) -> Path | None:
    """The pretrained run a finetuning starts from, checked before anything is written."""
    if init is None:
        return None
    path = Path(init)
    missing = missing_model_files(path)
    if missing:
        raise RunError(
            f"init checkpoint {str(path)!r} not found or incomplete (missing {', '.join(missing)}); "
            "run pretraining first: python -m helpers pretrain --out " + str(path)
        )
    return path


def _model_and_tokenizer(stage: Stage, profile: Profile, init: Path | None, engine: str):
    """A fresh model and the profile's tokenizer, or the pretrained ones in ``init``; then the seed.

    Both engines start from the same :class:`GPT` weights; ``Trainer`` gets them as a ``GPT2LMHeadModel``.
    """
    if init is None:
        tokenizer = profile_tokenizer(profile)
        model = build_model(profile.model, seed=profile.pretrain.seed)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(init))
        model = load_model(init)
    if engine == "hf":
        model = hf_model(model)
    tokenizer.model_max_length = int(1e9)
    seed_everything(getattr(profile, stage).seed)  # as Trainer does once the model exists
    return model, tokenizer


def prepare(stage: Stage, profile: Profile, out: Path, init: Path | None, resume: bool, description: dict,
            engine: str, progress: bool) -> RunSetup:
    """Build the :class:`RunSetup` of a run and write its ``run.json``.

    The fast engine keeps the data on the training device (a GPU holds the
    whole token array); ``Trainer`` moves each batch itself, so its data stays
    on the CPU. A resumed run's ``metrics.jsonl`` loses the records written
    after its checkpoint: the run writes them again.
    """
    cfg: TrainConfig = getattr(profile, stage)
    procs = setup_processes(profile.device)
    fast = engine == "fast"
    precision = run_precision(cfg.precision, procs.device, cfg.loss if fast else "full")
    model, tokenizer = _model_and_tokenizer(stage, profile, init, engine)
    data_device = procs.device if fast else torch.device("cpu")
    train_data, val_data, summary = prepare_data(stage, profile, tokenizer, data_device, procs, progress)
    _check_positions(stage, profile, train_data, val_data, model.config.n_positions)
    order = StepOrder(len(train_data), cfg, procs.world, procs.device if fast and stage == "pretrain" else None)
    if order.steps_per_epoch == 0:
        raise RunError(f"{stage} data has {len(train_data)} items, fewer than one global batch of "
                       f"{order.global_batch}; lower {stage}.batch_size or add data")
    total = cfg.max_steps or math.ceil(cfg.epochs * order.steps_per_epoch)
    checkpoint = latest_checkpoint(out) if resume else None
    setup = RunSetup(stage, cfg, out, procs, precision, model, tokenizer, train_data, val_data, order, total,
                     warmup_steps_for(cfg, total), TokenCount(train_data, order), checkpoint,
                     checkpoint_step(checkpoint) if checkpoint else 0)
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
        write_run_record(out, RunRecord(**description, data=summary, total_steps=total, warmup_steps=setup.warmup,
                                        precision=precision, device=str(procs.device),
                                        global_batch=order.global_batch))
        truncate_metrics(out, setup.start_step)
    setup.log = RunLog(out, cfg.report_to, name=f"{stage} {out.name}", config=description, main=procs.main,
                       start_step=setup.start_step, setting=f"{stage}.report_to")
    return setup


def _check_positions(stage: Stage, profile: Profile, train_data, val_data, n_positions: int) -> None:
    """Every finetuning example, moved by ``data.position_offset``, must stay inside the model's positions."""
    if stage != "finetune":
        return
    longest = max(train_data.lengths + val_data.lengths, default=0)
    if longest + profile.data.position_offset > n_positions:
        raise RunError(f"data.position_offset={profile.data.position_offset} moves the longest finetuning example "
                       f"({longest} tokens) past the model's {n_positions} positions")


def save_model_files(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """The model and tokenizer in Hugging Face format (``from_pretrained(folder)`` loads them)."""
    with hf_quiet():
        model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


def publish_final(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    """The final model at the run's top level, each file replaced atomically."""
    tmp = out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model_files(model, tokenizer, tmp)
    for item in tmp.iterdir():
        item.replace(out / item.name)
    tmp.rmdir()
