"""What each optimizer step trains on: a fixed order of examples, cut into micro-batches.

Both engines draw their batches here, so the same seed gives the same
batches whether the fast loop or ``transformers.Trainer`` trains, whether one
process or several, and whether a run went through or was resumed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .config import Profile, TrainConfig
from .data import finetuning_examples, pad_batch, pretraining_blocks
from .devices import Processes

__all__ = ["StepOrder", "TokenCount", "PretrainData", "FinetuneData", "prepare_data"]


class StepOrder:
    """Deterministic micro-batches: the same step always sees the same examples.

    Epoch ``e`` visits the items in ``randperm(n, seed + e)``; optimizer step
    ``s`` takes the next ``batch x accum x world`` of them, and micro-batch
    ``m`` of rank ``r`` takes slice ``(m * world + r)``. The global batch of a
    step is therefore the same whatever the split into processes and
    accumulation, and resuming at step ``s`` needs nothing but ``s``.
    """

    def __init__(self, n_items: int, cfg: TrainConfig, world: int, device: torch.device | None = None):
        self.n, self.batch, self.accum, self.world, self.seed = n_items, cfg.batch_size, cfg.grad_accum, world, cfg.seed
        self.global_batch = self.batch * self.accum * self.world
        self.steps_per_epoch = n_items // self.global_batch
        self.device = device  # where the order lives: on a GPU, no copy per step
        self._perm_epoch, self._perm = -1, None

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of all items that epoch ``epoch`` visits."""
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.n, generator=gen)
            self._perm, self._perm_epoch = (perm if self.device is None else perm.to(self.device)), epoch
        return self._perm

    def step_items(self, step: int) -> torch.Tensor:
        """The items of optimizer step ``step``, all processes and micro-batches together."""
        epoch, within = divmod(step, self.steps_per_epoch)
        start = within * self.global_batch
        return self.order(epoch)[start:start + self.global_batch]

    def micro_items(self, step: int, micro: int, rank: int) -> torch.Tensor:
        """The items of micro-batch ``micro`` of process ``rank`` at step ``step``."""
        start = (micro * self.world + rank) * self.batch
        return self.step_items(step)[start:start + self.batch]


class TokenCount:
    """Input tokens (padding excluded) seen after each optimizer step, computed once per step."""

    def __init__(self, data: "PretrainData | FinetuneData", order: StepOrder):
        self.data, self.order, self.cumulative = data, order, [0]

    def after(self, steps: int) -> int:
        while len(self.cumulative) <= steps:
            step = len(self.cumulative) - 1
            self.cumulative.append(self.cumulative[-1] + self.data.token_count(self.order.step_items(step)))
        return self.cumulative[steps]


class PretrainData:
    """Packed blocks; on a GPU the whole token array lives in device memory."""

    def __init__(self, blocks, device: torch.device):
        array = np.asarray(blocks.array)
        self.tokens = torch.from_numpy(array.astype(np.int32)).to(device)
        self.block = array.shape[1]
        self.device = device

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def batch(self, items: torch.Tensor) -> dict[str, Any]:
        ids = self.tokens[items.to(self.tokens.device)].long()
        return {"input_ids": ids, "attention_mask": None, "labels": ids}

    def scored(self, items: torch.Tensor) -> int:
        """Predicted tokens in these items: every token of a block but the first."""
        return len(items) * (self.block - 1)

    def token_count(self, items: torch.Tensor) -> int:
        return len(items) * self.block


class FinetuneData:
    """Encoded instruction examples, right-padded per micro-batch."""

    def __init__(self, examples: list[dict], pad_id: int, device: torch.device, position_offset: int = 0):
        self.examples, self.pad_id, self.device, self.offset = examples, pad_id, device, position_offset
        self.n_scored = [sum(1 for x in e["labels"][1:] if x != -100) for e in examples]
        self.lengths = [len(e["input_ids"]) for e in examples]

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, items: torch.Tensor) -> dict[str, Any]:
        out = pad_batch([self.examples[i] for i in items.tolist()], self.pad_id, self.offset)
        return {k: v.to(self.device, non_blocking=True) for k, v in out.items()}

    def scored(self, items: torch.Tensor) -> int:
        """Predicted tokens in these items: the response tokens only."""
        return sum(self.n_scored[i] for i in items.tolist())

    def token_count(self, items: torch.Tensor) -> int:
        return sum(self.lengths[i] for i in items.tolist())


def prepare_data(stage: str, profile: Profile, tokenizer, device: torch.device, procs: Processes,
                 progress: bool) -> tuple["PretrainData | FinetuneData", "PretrainData | FinetuneData", dict]:
    """Train and validation data of a stage and a summary for ``run.json``.

    Rank 0 fills the data cache while the other processes wait, then they read it.
    """
    def build():
        if stage == "pretrain":
            return tuple(pretraining_blocks(profile.data, split, tokenizer, progress=progress and procs.main)
                         for split in ("train", "validation"))
        return finetuning_examples(profile.data, tokenizer)

    if procs.main:
        train_part, val_part = build()
        procs.barrier()
    else:
        procs.barrier()
        train_part, val_part = build()
    if stage == "pretrain":
        summary = {"train_blocks": len(train_part), "val_blocks": len(val_part),
                   "train_tokens": train_part.meta["tokens"], "tokens_dropped": train_part.meta["tokens_dropped"],
                   "train_stories": train_part.meta["stories"], "block_size": train_part.meta["block_size"],
                   **{k: train_part.meta[k] for k in ("copy_drills", "qa_blocks") if k in train_part.meta}}
        return PretrainData(train_part, device), PretrainData(val_part, device), summary
    summary = {"train_examples": len(train_part), "val_examples": len(val_part),
               "train_tokens": train_part.tokens, "dropped_too_long": train_part.dropped + val_part.dropped,
               **({"dense_examples": train_part.dense} if train_part.dense else {}),
               **({"copy_drills": train_part.copy_drills} if train_part.copy_drills else {}),
               **({"verdict_drills": train_part.verdict_drills} if train_part.verdict_drills else {})}
    pad, offset = tokenizer.eos_token_id, profile.data.position_offset
    return (FinetuneData(train_part.examples, pad, device, offset), FinetuneData(val_part.examples, pad, device, offset),
            summary)
