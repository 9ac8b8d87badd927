"""The paper's optimiser and learning-rate schedule: AdamW, linear warm-up, then half a cosine.

Both are what ``transformers.Trainer`` builds from the paper's arguments
(``lr_scheduler_type="cosine"``, ``warmup_steps`` or ``warmup_ratio``,
``weight_decay``), written out as plain functions: lesson 3's loop and the
engine's loop both set the rate of each step from :func:`learning_rate` and
split the parameters with :func:`decays`.
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig

__all__ = ["cosine_with_warmup", "learning_rate", "warmup_steps_for", "decays", "build_optimizer"]


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: linear from 0 over ``warmup`` steps, then half a cosine to 0.

    The same numbers as ``transformers.get_cosine_schedule_with_warmup``.
    """
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def learning_rate(step: int, cfg: TrainConfig, warmup: int, total: int) -> float:
    """The rate of optimizer step ``step`` (counted from 0): the peak rate times the schedule."""
    return cfg.learning_rate * cosine_with_warmup(step, warmup, total)


def warmup_steps_for(cfg: TrainConfig, total_steps: int) -> int:
    """``warmup_steps`` when set, else ``ceil(warmup_ratio * total)``, as Trainer does."""
    return cfg.warmup_steps if cfg.warmup_steps > 0 else math.ceil(total_steps * cfg.warmup_ratio)


def decays(param: torch.Tensor) -> bool:
    """The weight-decay rule: matrices (weights, embedding tables) decay; biases and layer norms do not.

    For GPT-2 this is the set ``Trainer`` decays too (it names biases and
    layer norms instead of counting dimensions).
    """
    return param.dim() >= 2


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over two groups, split by :func:`decays`; on a GPU the fused kernel updates all in one launch."""
    params = list(model.parameters())
    groups = [{"params": [p for p in params if decays(p)], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if not decays(p)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_epsilon, fused=device.type == "cuda")
