"""Training: pretraining and finetuning with one plain PyTorch loop, or with the paper's ``Trainer``.

``engine="fast"`` is the loop in :func:`_train_fast`, to be read beside
lesson 3: AdamW, warm-up then cosine, gradient accumulation, clipping at 1.0,
mixed precision on GPUs (and a bf16 output layer on CPUs that multiply bf16
natively), ``DistributedDataParallel`` under ``torchrun``, and the chunked
output layer of :mod:`helpers.model`. ``engine="hf"`` runs the same recipe
through ``transformers.Trainer`` (:mod:`helpers.hf_trainer`). Both start from
the same :class:`helpers.run_setup.RunSetup` and write the same run folder
(:mod:`helpers.runs`): ``metrics.jsonl`` with one record per logging or
evaluation step, checkpoints written under a temporary name and renamed,
and the final model. ``resume=True`` continues a run exactly from its last
checkpoint.

For the resume tests, ``HELPERS_CRASH_AFTER_STEP=k`` makes either engine
kill its own process (SIGKILL, as an out-of-memory killer would) once step
``k`` is over: logged, evaluated and saved (:func:`_after_step_hook`).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch

from .config import Profile
from .devices import resolve_device, rng_state, set_rng_state, tf32_matmuls, world_size
from .hf_trainer import load_checkpoint_weights, train_with_trainer
from .model import CausalLMLoss, default_loss_chunk
from .optim import build_optimizer, build_scheduler
from .progress import progress_bar
from .run_setup import RunSetup, Stage, check_init, describe, prepare, publish_final, save_model_files
from .runs import (
    RunError, RunResult, check_out_dir, checkpoint_dir, has_model, has_run_record, latest_checkpoint,
    prune_checkpoints, run_result,
)
from .sources import check_hub_sources
from .stats import perplexity_from_loss
from .tracking import check_reporters

__all__ = ["TrainingDiverged", "train", "ensure_run", "pretrain", "finetune"]


class TrainingDiverged(RuntimeError):
    """The training loss stopped being a finite number."""


# ---------------------------------------------------------------- what a user calls


def train(stage: Stage, profile: Profile, out_dir: str | Path, *, init: str | Path | None = None,
          resume: bool = False, engine: Literal["fast", "hf"] = "fast", progress: bool = True) -> RunResult:
    """Pretrain (``init=None``) or finetune (``init`` = a pretrained run) into ``out_dir``.

    Everything that can be checked is checked before anything is written:
    the engine, the init run, the output folder, the loss for the device.
    """
    if engine not in {"fast", "hf"}:
        raise RunError(f"unknown engine {engine!r}; use 'fast' or 'hf'")
    if stage == "finetune" and init is None:
        raise RunError("finetuning needs init: the folder of a pretrained run")
    loss = getattr(profile, stage).loss
    if engine == "fast" and loss in {"cce", "liger"} and resolve_device(profile.device) == "cpu":
        raise RunError(f"{stage}.loss={loss!r} runs Triton kernels and needs a CUDA GPU; use 'chunked' here")
    check_reporters(getattr(profile, stage).report_to, f"{stage}.report_to")
    check_hub_sources(profile.data, ["stories"] if stage == "pretrain" else ["instructions"])
    init_path, out = check_init(init), Path(out_dir)
    description = describe(stage, engine, profile, init_path, world_size())
    check_out_dir(out, description, resume)
    setup = prepare(stage, profile, out, init_path, resume, description, engine, progress)
    after_step = _after_step_hook()
    with setup.log, tf32_matmuls(setup.cfg.tf32, setup.device):
        if engine == "hf":
            return train_with_trainer(setup, progress, after_step)
        return _train_fast(setup, progress, after_step)


def _after_step_hook() -> Callable[[int], None]:
    """What both engines call once a step is over: nothing, or the crash of a resume test.

    ``$HELPERS_CRASH_AFTER_STEP=k`` kills the process after step ``k``,
    between two checkpoints if ``k`` is chosen so, as an out-of-memory killer
    would: no exception, no clean-up, whatever is on disk stays as it is.
    """
    crash_after = int(os.environ.get("HELPERS_CRASH_AFTER_STEP", "0"))

    def crash_test(done: int) -> None:
        if done == crash_after:
            os.kill(os.getpid(), signal.SIGKILL)

    return crash_test if crash_after > 0 else (lambda done: None)


def ensure_run(stage: Stage, profile: Profile, out_dir: str | Path, *, init: str | Path | None = None,
               engine: Literal["fast", "hf"] = "fast", progress: bool = True) -> RunResult:
    """Train unless ``out_dir`` already holds this very run, finished; resume it if it stopped halfway.

    What lessons call: rerunning a notebook reuses its finished run instead
    of training again or failing, and a folder holding a run with other
    settings is refused with the differences named.
    """
    out = Path(out_dir)
    if not has_run_record(out):
        return train(stage, profile, out, init=init, engine=engine, progress=progress)
    check_out_dir(out, describe(stage, engine, profile, check_init(init), world_size()), resume=True)
    if has_model(out):
        print(f"{stage}: reusing the finished run in {out} (delete the folder to train again)", flush=True)
        return run_result(out)
    return train(stage, profile, out, init=init, resume=True, engine=engine, progress=progress)


def pretrain(profile: Profile, out_dir: str | Path, **options) -> RunResult:
    """Pretrain the profile's model from scratch on its stories."""
    return train("pretrain", profile, out_dir, **options)


def finetune(profile: Profile, out_dir: str | Path, init: str | Path, **options) -> RunResult:
    """Instruction-tune the model found in ``init`` on the profile's instructions."""
    return train("finetune", profile, out_dir, init=init, **options)


# ---------------------------------------------------------------- the fast loop


@dataclass
class _Optimization:
    """What the fast loop adds to the shared set-up: the loss module, optimizer, schedule, precision."""

    module: CausalLMLoss              # the model and its loss; evaluation calls it directly
    runner: torch.nn.Module           # the same, wrapped by DDP when several processes train
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None  # fp16 on a GPU only
    autocast_dtype: torch.dtype | None   # the blocks' number format on a GPU (None: fp32)
    head_dtype: torch.dtype | None       # the output layer's number format

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)


@dataclass
class _Window:
    """Training numbers since the last log line."""

    losses: list = field(default_factory=list)
    tokens: int = 0
    start: float = 0.0


def _train_fast(setup: RunSetup, progress: bool, after_step: Callable[[int], None]) -> RunResult:
    """The training loop: a step, then logging, evaluation and checkpoints when they are due, then ``after_step``."""
    cfg, procs = setup.cfg, setup.procs
    opt = _optimization(setup)
    elapsed0, window = _resume(setup, opt)
    _announce(setup, opt)
    # At most one redraw a second: a notebook's progress widget sends messages per redraw, and
    # thousands of them overflow the kernel's output queue (nbval then loses the cell's end).
    bar = progress_bar(total=setup.total, initial=setup.start_step, desc=setup.stage, unit="step",
               disable=not (progress and procs.main), dynamic_ncols=True, mininterval=1.0)
    run_start = time.perf_counter() - elapsed0
    window.start = time.perf_counter()
    last_train = last_eval = None
    for step in range(setup.start_step, setup.total):
        lr = opt.optimizer.param_groups[0]["lr"]
        grad_norm = _train_step(setup, opt, step, window)
        done = step + 1
        log_now = done % cfg.log_every == 0 or done == setup.total
        eval_now = cfg.eval_every > 0 and (done % cfg.eval_every == 0 or done == setup.total)
        save_now = cfg.save_every > 0 and (done % cfg.save_every == 0 or done == setup.total)
        record: dict = {}
        if log_now or save_now:
            losses = _checked_losses(setup, window, done, save_now, bar)
        if log_now:
            now = time.perf_counter()
            last_train = float(losses.mean())
            record.update(train_loss=last_train, learning_rate=lr, grad_norm=float(grad_norm),
                          tokens_per_sec=window.tokens / max(now - window.start, 1e-9))
            window.losses, window.tokens, window.start = [], 0, now
        if eval_now:
            last_eval = _evaluate(setup, opt)
            record.update(eval_loss=last_eval, perplexity=perplexity_from_loss(last_eval))
        if record and procs.main:
            _log(setup, record, done, run_start, bar)
        if save_now:
            _save_checkpoint(setup, opt, done, time.perf_counter() - run_start, window)
        if eval_now or save_now:  # tokens/s measures training alone
            window.start = time.perf_counter()
        bar.update(1)
        after_step(done)
    bar.close()
    if procs.main:
        publish_final(setup.model, setup.tokenizer, setup.out)
    procs.barrier()
    return RunResult(setup.out, setup.total, setup.tokens.after(setup.total), last_train, last_eval,
                     time.perf_counter() - run_start)


def _optimization(setup: RunSetup) -> _Optimization:
    """Move the model to its device and build the loss module, optimizer, schedule and scaler."""
    cfg, device = setup.cfg, setup.device
    head_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setup.precision)
    model = setup.model
    model.to(device)
    model.train()
    optimizer = build_optimizer(model, cfg, device)
    scheduler = build_scheduler(optimizer, setup.warmup, setup.total)
    scaler = torch.amp.GradScaler("cuda") if setup.precision == "fp16" else None
    if cfg.compile:  # in place, so parameter names (and checkpoints) stay unchanged
        (model if cfg.loss == "full" else model.transformer).compile(mode=cfg.compile_mode)
    module = CausalLMLoss(model, cfg.loss, cfg.loss_chunk or default_loss_chunk(device.type), head_dtype)
    runner = module
    if setup.procs.world > 1:
        runner = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)
    autocast_dtype = head_dtype if device.type == "cuda" else None  # a CPU keeps its blocks in fp32
    return _Optimization(module, runner, optimizer, scheduler, scaler, autocast_dtype, head_dtype)


def _resume(setup: RunSetup, opt: _Optimization) -> tuple[float, _Window]:
    """Load the checkpoint a resumed run continues from: weights, optimizer, schedule, window, random state.

    Returns the training time already spent and the logging window as it was.
    """
    if setup.checkpoint is None:
        return 0.0, _Window()
    checkpoint, procs = setup.checkpoint, setup.procs
    state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=False)
    if state["world_size"] != procs.world:
        raise RunError(f"{checkpoint} was written by {state['world_size']} processes, not {procs.world}")
    load_checkpoint_weights(setup.model, checkpoint)
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    if opt.scaler is not None and state.get("scaler"):
        opt.scaler.load_state_dict(state["scaler"])
    # The window was saved summed over processes: rank 0 carries it, the others start from zero.
    losses = state["window_losses"] if procs.main else [0.0] * len(state["window_losses"])
    window = _Window([torch.tensor(x, device=setup.device) for x in losses], state["window_tokens"])
    set_rng_state(torch.load(checkpoint / f"rng-{procs.rank}.pt", weights_only=False))
    return state["elapsed_s"], window


def _announce(setup: RunSetup, opt: _Optimization) -> None:
    """One line saying what is about to be trained, where, and in which number format."""
    if not setup.procs.main:
        setup.procs.barrier()
        return
    cfg, device = setup.cfg, setup.device
    n_params = sum(p.numel() for p in setup.model.parameters())
    head_only = " (output layer; blocks in fp32)" if opt.head_dtype and opt.autocast_dtype is None else ""
    resuming = f"; resuming after step {setup.start_step}" if setup.start_step else ""
    print(f"{setup.stage}: {n_params:,} parameters; {setup.total} steps of {setup.order.global_batch} sequences "
          f"({cfg.batch_size} x {cfg.grad_accum} accumulation x {setup.procs.world} processes) on "
          f"{device.type} in {setup.precision}{head_only}{resuming}", flush=True)
    if setup.precision != cfg.precision and cfg.precision != "auto":
        print(f"note: {cfg.precision} asked for, but {device.type} runs {setup.precision}", flush=True)
    setup.procs.barrier()


def _train_step(setup: RunSetup, opt: _Optimization, step: int, window: _Window) -> torch.Tensor:
    """One optimizer step over ``grad_accum`` micro-batches; returns the gradient norm before clipping.

    Each micro-batch's summed loss is divided by the step's scored tokens
    over all processes, so the gradient is that of the step's mean loss
    however the batch is split.
    """
    cfg, procs, device = setup.cfg, setup.procs, setup.device
    count = setup.train_data.scored(setup.order.step_items(step))
    step_loss = torch.zeros((), device=device)
    for micro in range(cfg.grad_accum):
        items = setup.order.micro_items(step, micro, procs.rank)
        sync = micro == cfg.grad_accum - 1 or procs.world == 1
        with contextlib.nullcontext() if sync else opt.runner.no_sync():
            with opt.autocast(device):
                loss_sum, _ = opt.runner(**setup.train_data.batch(items))
            scaled = loss_sum * (procs.world / count)
            (opt.scaler.scale(scaled) if opt.scaler else scaled).backward()
        step_loss += loss_sum.detach()
    if opt.scaler is not None:
        opt.scaler.unscale_(opt.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(setup.model.parameters(), cfg.max_grad_norm)
    if opt.scaler is not None:
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
    else:
        opt.optimizer.step()
    opt.scheduler.step()
    opt.optimizer.zero_grad(set_to_none=True)
    window.losses.append(step_loss / count)
    window.tokens += setup.tokens.after(step + 1) - setup.tokens.after(step)
    return grad_norm


def _checked_losses(setup: RunSetup, window: _Window, done: int, check_weights: bool, bar) -> torch.Tensor:
    """The window's step losses summed over processes; stop the run if any (or a weight) is not finite."""
    losses = setup.procs.all_sum(torch.stack(window.losses)).cpu()
    bad = [i for i, x in enumerate(losses.tolist()) if not math.isfinite(x)]
    problem = None
    if bad:
        problem = f"loss became {losses[bad[0]].item()} at step {done - len(losses) + bad[0] + 1}"
    elif check_weights and not all(bool(torch.isfinite(p).all()) for p in setup.model.parameters()):
        problem = f"weights became non-finite at step {done} (its loss was still finite)"
    if problem:
        bar.close()
        last_good = latest_checkpoint(setup.out)
        raise TrainingDiverged(f"{setup.stage} {problem}; stopped. " + (
            f"The last good checkpoint is {last_good}." if last_good else "No checkpoint was saved yet."))
    return losses


def _evaluate(setup: RunSetup, opt: _Optimization) -> float:
    """Mean loss per scored token over the validation data (or its first ``eval_max_batches`` batches)."""
    cfg, procs, device = setup.cfg, setup.procs, setup.device
    setup.model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    n_items = len(setup.val_data)
    n_batches = math.ceil(n_items / cfg.eval_batch_size)
    if cfg.eval_max_batches:
        n_batches = min(n_batches, cfg.eval_max_batches)
    with torch.no_grad():
        for b in range(procs.rank, n_batches, procs.world):
            items = torch.arange(b * cfg.eval_batch_size, min((b + 1) * cfg.eval_batch_size, n_items))
            with opt.autocast(device):
                loss_sum, n = opt.module(**setup.val_data.batch(items))
            total_loss += loss_sum.double()
            count += n
    procs.all_sum(total_loss)
    procs.all_sum(count)
    setup.model.train()
    return float(total_loss / count)


def _log(setup: RunSetup, record: dict, done: int, run_start: float, bar) -> None:
    """Write one record (``metrics.jsonl`` and any live viewer) and show its numbers beside the progress bar."""
    record = {"step": done, "epoch": done / setup.order.steps_per_epoch, "tokens": setup.tokens.after(done),
              **record, "elapsed_s": time.perf_counter() - run_start}
    setup.log.write(record)
    bar.set_postfix({k: f"{record[k]:.4g}" for k in ("train_loss", "eval_loss", "tokens_per_sec") if k in record},
                    refresh=False)


def _save_checkpoint(setup: RunSetup, opt: _Optimization, step: int, elapsed: float, window: _Window) -> None:
    """Write the checkpoint of ``step`` under a temporary name, rename it, keep the newest ``keep_checkpoints``.

    Each process saves its random state; rank 0 saves the model, tokenizer,
    optimizer, schedule, scaler and the logging window (summed over processes).
    """
    procs, out = setup.procs, setup.out
    final = checkpoint_dir(out, step)
    tmp = final.with_name(f".{final.name}.tmp")
    window_losses = procs.all_sum(torch.stack(window.losses)).tolist() if window.losses else []
    if procs.main:
        _fresh_folder(tmp)
    procs.barrier()
    torch.save(rng_state(), tmp / f"rng-{procs.rank}.pt")
    procs.barrier()
    if procs.main:
        save_model_files(setup.model, setup.tokenizer, tmp)
        torch.save({"step": step, "elapsed_s": elapsed, "window_losses": window_losses,
                    "window_tokens": window.tokens, "world_size": procs.world,
                    "optimizer": opt.optimizer.state_dict(), "scheduler": opt.scheduler.state_dict(),
                    "scaler": opt.scaler.state_dict() if opt.scaler is not None else None},
                   tmp / "trainer_state.pt")
        _fresh_folder(final, create=False)
        tmp.replace(final)
        prune_checkpoints(out, setup.cfg.keep_checkpoints)
    procs.barrier()


def _fresh_folder(path: Path, create: bool = True) -> None:
    """Remove what ``path`` holds (a leftover of a killed run); create it empty when asked."""
    if path.exists():
        shutil.rmtree(path)
    if create:
        path.mkdir(parents=True)
