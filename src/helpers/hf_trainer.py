"""The paper's way to train: ``transformers.Trainer`` with its ``TrainingArguments``.

The paper trained with Hugging Face's ``Trainer``; ``engine="hf"`` does the
same, from the same :class:`helpers.run_setup.RunSetup` as the fast loop.
Four small pieces make ``Trainer`` see exactly the fast loop's batches and
write the same ``metrics.jsonl``: a dataset of item numbers, a sampler that
yields the fast loop's order, one collator for training data and one for
validation data, and a callback that turns ``Trainer``'s logs into this
package's records.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from .batches import FinetuneData, PretrainData, StepOrder, TokenCount
from .run_setup import RunSetup, publish_final
from .runs import MODEL_FILES, RunError, RunResult, checkpoints, read_metrics
from .stats import perplexity_from_loss

__all__ = ["load_checkpoint_weights", "training_arguments", "train_with_trainer"]

_RECORD_ORDER = ("step", "epoch", "tokens", "train_loss", "learning_rate", "grad_norm", "tokens_per_sec",
                 "eval_loss", "perplexity", "elapsed_s")


def load_checkpoint_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load a checkpoint's ``model.safetensors`` into ``model``, refusing any missing, extra or misshapen tensor.

    A lenient load (``strict=False``, what ``Trainer`` does) would resume from
    a checkpoint of another model, or a damaged one, with some weights left as
    they were and not a word said. Only tied tensors may be absent from the
    file: the output layer shares the token embedding's tensor and is saved
    once, under the embedding's name.
    """
    path = Path(folder) / MODEL_FILES[1]
    if not path.exists():
        raise RunError(f"cannot resume from {folder}: it holds no {path.name}")
    weights = load_file(str(path))
    first_name: dict[int, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        source = first_name.setdefault(tensor.data_ptr(), name)
        if source != name and name not in weights and source in weights:
            weights[name] = weights[source]
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        reason = " ".join(str(err).split())
        raise RunError(f"cannot resume from {path}: it does not hold this model's weights ({reason})") from err


class ItemNumbers(torch.utils.data.Dataset):
    """Item ``i`` is just ``i``: the collator turns numbers into a batch of the real data."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class Collator:
    """Batches of one data set (training or validation), the ``None`` attention mask of packed blocks left out."""

    def __init__(self, data: PretrainData | FinetuneData):
        self.data = data

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = self.data.batch(torch.tensor(indices))
        return {k: v for k, v in batch.items() if v is not None}


class SameOrder(torch.utils.data.Sampler):
    """The fast engine's order: epoch ``e`` is ``randperm(n, seed + e)``, this process's share of it."""

    def __init__(self, order: StepOrder, grad_accum: int, rank: int):
        self.order, self.grad_accum, self.rank, self.epoch = order, grad_accum, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.order.steps_per_epoch * self.grad_accum * self.order.batch

    def __iter__(self):
        per_epoch = self.order.steps_per_epoch
        for step in range(self.epoch * per_epoch, (self.epoch + 1) * per_epoch):
            for micro in range(self.grad_accum):
                yield from self.order.micro_items(step, micro, self.rank).tolist()


class PaperTrainer(Trainer):
    """``Trainer`` with the fast loop's training order, sequential evaluation and its own eval collator."""

    def __init__(self, *args, sampler: SameOrder, eval_collator: Collator, **kwargs):
        super().__init__(*args, **kwargs)
        self.same_order, self.eval_collator = sampler, eval_collator

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """The checkpoint's weights, loaded strictly (``Trainer``'s own load ignores missing and extra tensors)."""
        load_checkpoint_weights(self.model, Path(resume_from_checkpoint))

    def _get_train_sampler(self, train_dataset=None):
        return self.same_order

    def _get_eval_sampler(self, eval_dataset):
        return torch.utils.data.SequentialSampler(eval_dataset)

    def get_eval_dataloader(self, eval_dataset=None):
        """Trainer's own evaluation loader, built with the validation collator."""
        train_collator, self.data_collator = self.data_collator, self.eval_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator


class MetricsFile(TrainerCallback):
    """``Trainer``'s logs as ``metrics.jsonl`` records, one per step, written when the step is over."""

    def __init__(self, setup: RunSetup, tokens: TokenCount):
        self.log, self.main, self.tokens = setup.log, setup.procs.main, tokens
        self.steps_per_epoch = setup.order.steps_per_epoch
        self.pending: dict[int, dict] = {}
        self.start = time.perf_counter()
        self.last_time, self.last_tokens = self.start, 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs, step = logs or {}, state.global_step
        record = self.pending.setdefault(step, {})
        if "loss" in logs:
            now, tokens = time.perf_counter(), self.tokens.after(step)
            record.update(train_loss=logs["loss"], learning_rate=logs.get("learning_rate"),
                          grad_norm=logs.get("grad_norm"),
                          tokens_per_sec=(tokens - self.last_tokens) / max(now - self.last_time, 1e-9))
            self.last_time, self.last_tokens = now, tokens
        if "eval_loss" in logs:
            record.update(eval_loss=logs["eval_loss"], perplexity=perplexity_from_loss(logs["eval_loss"]))
        record.update(step=step, epoch=step / self.steps_per_epoch, tokens=self.tokens.after(step),
                      elapsed_s=time.perf_counter() - self.start)

    def flush(self, up_to: int) -> None:
        if not self.main:
            self.pending.clear()
            return
        for step in sorted(s for s in self.pending if s <= up_to):
            record = self.pending.pop(step)
            self.log.write({k: record[k] for k in _RECORD_ORDER if k in record})

    def on_step_begin(self, args, state, control, **kwargs):
        self.flush(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.flush(state.global_step)


class StepOver(TrainerCallback):
    """Calls ``after_step(step)`` once per optimizer step, when it is over: logged, evaluated, saved, recorded.

    ``Trainer`` logs, evaluates and saves after its ``on_step_end``; the step
    is over when the next begins (or training ends), after
    :class:`MetricsFile`, registered first, has written its record.
    """

    def __init__(self, after_step: Callable[[int], None], start_step: int):
        self.after_step, self.done = after_step, start_step

    def _catch_up(self, state) -> None:
        while self.done < state.global_step:
            self.done += 1
            self.after_step(self.done)

    def on_step_begin(self, args, state, control, **kwargs):
        self._catch_up(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._catch_up(state)


def training_arguments(setup: RunSetup, progress: bool) -> TrainingArguments:
    """The run's recipe as the paper's ``TrainingArguments``."""
    cfg, device = setup.cfg, setup.device
    return TrainingArguments(
        output_dir=str(setup.out),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=setup.total,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_epsilon=cfg.adam_epsilon,
        max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type="cosine",
        warmup_steps=setup.warmup,
        eval_strategy="steps" if cfg.eval_every > 0 else "no",
        eval_steps=cfg.eval_every if cfg.eval_every > 0 else None,
        logging_steps=cfg.log_every,
        save_strategy="steps" if cfg.save_every > 0 else "no",
        save_steps=cfg.save_every if cfg.save_every > 0 else 500,
        save_total_limit=cfg.keep_checkpoints,
        fp16=setup.precision == "fp16",
        bf16=setup.precision == "bf16",
        tf32=cfg.tf32 if device.type == "cuda" else None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=not (progress and setup.procs.main),
        dataloader_drop_last=False,  # the sampler already yields whole global batches
        remove_unused_columns=False,
        use_cpu=device.type == "cpu",
        torch_compile=cfg.compile,
    )


def train_with_trainer(setup: RunSetup, progress: bool, after_step: Callable[[int], None]) -> RunResult:
    """Train ``setup`` with ``Trainer``; checkpoints are ``Trainer``'s own (plus the tokenizer).

    ``after_step(step)`` runs once each step is over (:class:`StepOver`).
    """
    cfg = setup.cfg
    eval_items = ItemNumbers(len(setup.val_data))
    if cfg.eval_max_batches:
        eval_items = torch.utils.data.Subset(
            eval_items, range(min(len(setup.val_data), cfg.eval_max_batches * cfg.eval_batch_size)))
    callback = MetricsFile(setup, setup.tokens)
    trainer = PaperTrainer(model=setup.model, args=training_arguments(setup, progress),
                           train_dataset=ItemNumbers(len(setup.train_data)), eval_dataset=eval_items,
                           data_collator=Collator(setup.train_data),
                           callbacks=[callback, StepOver(after_step, setup.start_step)],
                           sampler=SameOrder(setup.order, cfg.grad_accum, setup.procs.rank),
                           eval_collator=Collator(setup.val_data))
    trainer.remove_callback(PrinterCallback)  # without a progress bar Trainer prints every log as a dict
    trainer.train(resume_from_checkpoint=str(setup.checkpoint) if setup.checkpoint else None)
    if setup.procs.main:
        publish_final(trainer.model, setup.tokenizer, setup.out)
        for _, path in checkpoints(setup.out, complete=False):  # Trainer's own checkpoints carry no tokenizer
            setup.tokenizer.save_pretrained(str(path))
    records = read_metrics(setup.out) if setup.procs.main else []
    train_losses = [r["train_loss"] for r in records if r.get("train_loss") is not None]
    eval_losses = [r["eval_loss"] for r in records if r.get("eval_loss") is not None]
    return RunResult(setup.out, setup.total, setup.tokens.after(setup.total), train_losses[-1] if train_losses else None,
                     eval_losses[-1] if eval_losses else None, time.perf_counter() - callback.start)
