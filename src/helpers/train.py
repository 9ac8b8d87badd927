"""Training: pretraining and finetuning with one plain PyTorch loop, or with the paper's ``Trainer``.

``engine="fast"`` is :func:`training_loop`, lesson 3's loop in the same order
and with the same names (set the rate, get a batch, forward, backward, clip,
step), training lesson 2's :class:`helpers.gpt.GPT`. What it adds around the
lesson's lines is marked ``+``: gradient accumulation, mixed precision on
GPUs (and a bf16 output layer on CPUs that multiply bf16 natively),
``DistributedDataParallel`` under ``torchrun``, the chunked output layer of
:mod:`helpers.model` where the profile asks for it, evaluation, checkpoints
and logging. ``engine="hf"`` runs the same recipe through
``transformers.Trainer`` (:mod:`helpers.hf_trainer`) on the same weights as a
``GPT2LMHeadModel``. Both start from the same :class:`helpers.run_setup.RunSetup`
and write the same run folder (:mod:`helpers.runs`): ``metrics.jsonl`` with
one record per logging or evaluation step, checkpoints written under a
temporary name and renamed, and the final model. ``resume=True`` continues a
run exactly from its last checkpoint.

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
from .gpt import GPT
from .model import CausalLMLoss, default_loss_chunk
from .optim import build_optimizer, learning_rate
from .progress import progress_bar
from .run_setup import RunSetup, Stage, check_init, describe, prepare, publish_final, save_model_files
from .runs import (
    RunError, RunResult, check_out_dir, checkpoint_dir, has_model, has_run_record, latest_checkpoint,
    prune_checkpoints, run_result,
)
from .sources import check_hub_sources
from .stats import perplexity_from_loss
from .tracking import check_reporters

__all__ = ["TrainingDiverged", "train", "ensure_run", "pretrain", "finetune", "training_loop"]


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
        return training_loop(setup, progress, after_step)


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
class _Engine:
    """What the engine adds around lesson 3's loop: the loss module, several processes, mixed precision."""

    module: CausalLMLoss                 # the model and its loss; evaluation calls it directly
    runner: torch.nn.Module              # the same, wrapped by DDP when several processes train
    scaler: torch.amp.GradScaler | None  # fp16 on a GPU only
    autocast_dtype: torch.dtype | None   # the blocks' number format on a GPU (None: fp32)
    head_dtype: torch.dtype | None       # the output layer's number format

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    def no_sync(self, last_micro: bool):
        """Processes average their gradients once per step, after the last micro-batch."""
        return contextlib.nullcontext() if last_micro or self.runner is self.module else self.runner.no_sync()

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def clip(self, model: torch.nn.Module, max_norm: float, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()


@dataclass
class _Window:
    """Training numbers since the last log line, and the last losses logged."""

    losses: list = field(default_factory=list)
    tokens: int = 0
    start: float = 0.0
    last_train: float | None = None
    last_eval: float | None = None


def training_loop(setup: RunSetup, progress: bool, after_step: Callable[[int], None]) -> RunResult:
    """Lesson 3's loop with the engine's additions marked (+): set the rate, batch, forward, backward, clip, step."""
    cfg, procs, device = setup.cfg, setup.procs, setup.device
    model = setup.model.to(device).train()
    optimizer = build_optimizer(model, cfg, device)  # AdamW; matrices decay, biases and norms do not
    engine = _engine(setup, model)  # + chunked output layer, mixed precision, several processes
    elapsed0, window = _resume(setup, optimizer, engine)  # + continue a stopped run
    _announce(setup, engine)
    # At most one redraw a second: a notebook's progress widget sends messages per redraw, and
    # thousands of them overflow the kernel's output queue (nbval then loses the cell's end).
    bar = progress_bar(total=setup.total, initial=setup.start_step, desc=setup.stage, unit="step",
                       disable=not (progress and procs.main), dynamic_ncols=True, mininterval=1.0)
    run_start = time.perf_counter() - elapsed0
    window.start = time.perf_counter()
    for step in range(setup.start_step, setup.total):
        rate = learning_rate(step, cfg, setup.warmup, setup.total)
        for group in optimizer.param_groups:
            group["lr"] = rate  # warm-up, then cosine
        optimizer.zero_grad(set_to_none=True)
        count = setup.train_data.scored(setup.order.step_items(step))  # + tokens scored by the whole step
        loss = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):  # + gradient accumulation
            batch = setup.train_data.batch(setup.order.micro_items(step, micro, procs.rank))
            with engine.no_sync(micro == cfg.grad_accum - 1), engine.autocast(device):  # + processes, precision
                loss_sum, _ = engine.runner(**batch)  # forward: summed next-token loss
            engine.backward(loss_sum * (procs.world / count))  # the gradient of the step's mean loss
            loss += loss_sum.detach()
        grad_norm = engine.clip(model, cfg.max_grad_norm, optimizer)
        engine.step(optimizer)
        window.losses.append(loss / count)
        window.tokens += setup.tokens.after(step + 1) - setup.tokens.after(step)
        _log_evaluate_save(setup, engine, optimizer, step + 1, rate, grad_norm, window, run_start, bar)  # +
        bar.update(1)
        after_step(step + 1)  # + the crash of a resume test
    bar.close()
    if procs.main:
        publish_final(model, setup.tokenizer, setup.out)
    procs.barrier()
    return RunResult(setup.out, setup.total, setup.tokens.after(setup.total), window.last_train, window.last_eval,
                     time.perf_counter() - run_start)


def _log_evaluate_save(setup: RunSetup, engine: _Engine, optimizer: torch.optim.Optimizer, done: int, rate: float,
                       grad_norm: torch.Tensor, window: _Window, run_start: float, bar) -> None:
    """After step ``done``: log the window, evaluate, save a checkpoint, each when it is due."""
    cfg = setup.cfg
    log_now = done % cfg.log_every == 0 or done == setup.total
    eval_now = cfg.eval_every > 0 and (done % cfg.eval_every == 0 or done == setup.total)
    save_now = cfg.save_every > 0 and (done % cfg.save_every == 0 or done == setup.total)
    record: dict = {}
    if log_now or save_now:
        losses = _checked_losses(setup, window, done, save_now, bar)
    if log_now:
        now = time.perf_counter()
        window.last_train = float(losses.mean())
        record.update(train_loss=window.last_train, learning_rate=rate, grad_norm=float(grad_norm),
                      tokens_per_sec=window.tokens / max(now - window.start, 1e-9))
        window.losses, window.tokens, window.start = [], 0, now
    if eval_now:
        window.last_eval = _evaluate(setup, engine)
        record.update(eval_loss=window.last_eval, perplexity=perplexity_from_loss(window.last_eval))
    if record and setup.procs.main:
        _log(setup, record, done, run_start, bar)
    if save_now:
        _save_checkpoint(setup, optimizer, engine, done, time.perf_counter() - run_start, window)
    if eval_now or save_now:  # tokens/s measures training alone
        window.start = time.perf_counter()


def _engine(setup: RunSetup, model: GPT) -> _Engine:
    """The loss module for the profile's output layer, DDP across processes, the number formats."""
    cfg, device = setup.cfg, setup.device
    head_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setup.precision)
    scaler = torch.amp.GradScaler("cuda") if setup.precision == "fp16" else None
    if cfg.compile:  # each block in place, so parameter names (and checkpoints) stay unchanged
        for block in model.h:
            block.compile(mode=cfg.compile_mode)
    module = CausalLMLoss(model, cfg.loss, cfg.loss_chunk or default_loss_chunk(device.type), head_dtype)
    runner = module
    if setup.procs.world > 1:
        runner = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)
    autocast_dtype = head_dtype if device.type == "cuda" else None  # a CPU keeps its blocks in fp32
    return _Engine(module, runner, scaler, autocast_dtype, head_dtype)


CHECKPOINT_FORMAT = 2  # 2: helpers.gpt.GPT's optimizer state, the rate a function of the step (no scheduler)


def _resume(setup: RunSetup, optimizer: torch.optim.Optimizer, engine: _Engine) -> tuple[float, _Window]:
    """Load the checkpoint a resumed run continues from: weights, optimizer, scaler, window, random state.

    Returns the training time already spent and the logging window as it was.
    """
    if setup.checkpoint is None:
        return 0.0, _Window()
    checkpoint, procs = setup.checkpoint, setup.procs
    state = torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{checkpoint} was written by an older version of helpers (GPT2LMHeadModel's optimizer "
                       "state); its model still loads, but training cannot continue from it: train the run again")
    if state["world_size"] != procs.world:
        raise RunError(f"{checkpoint} was written by {state['world_size']} processes, not {procs.world}")
    shell = setup.model.to_hf()
    load_checkpoint_weights(shell, checkpoint)
    setup.model.copy_from_hf(shell)
    optimizer.load_state_dict(state["optimizer"])
    if engine.scaler is not None and state.get("scaler"):
        engine.scaler.load_state_dict(state["scaler"])
    # The window was saved summed over processes: rank 0 carries it, the others start from zero.
    losses = state["window_losses"] if procs.main else [0.0] * len(state["window_losses"])
    window = _Window([torch.tensor(x, device=setup.device) for x in losses], state["window_tokens"])
    set_rng_state(torch.load(checkpoint / f"rng-{procs.rank}.pt", weights_only=False))
    return state["elapsed_s"], window


def _announce(setup: RunSetup, opt: _Engine) -> None:
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


def _evaluate(setup: RunSetup, opt: _Engine) -> float:
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


def _save_checkpoint(setup: RunSetup, optimizer: torch.optim.Optimizer, engine: _Engine, step: int, elapsed: float,
                     window: _Window) -> None:
    """Write the checkpoint of ``step`` under a temporary name, rename it, keep the newest ``keep_checkpoints``.

    Each process saves its random state; rank 0 saves the model, tokenizer,
    optimizer, scaler and the logging window (summed over processes).
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
        torch.save({"format": CHECKPOINT_FORMAT, "step": step, "elapsed_s": elapsed, "window_losses": window_losses,
                    "window_tokens": window.tokens, "world_size": procs.world, "optimizer": optimizer.state_dict(),
                    "scaler": engine.scaler.state_dict() if engine.scaler is not None else None},
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
