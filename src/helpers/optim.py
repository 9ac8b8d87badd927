"""The paper's optimiser and learning-rate schedule: AdamW, linear warm-up, then half a cosine.

Both are what ``transformers.Trainer`` builds from the paper's arguments
(``lr_scheduler_type="cosine"``, ``warmup_steps`` or ``warmup_ratio``,
``weight_decay``), written out so a lesson can print and plot them.
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig

__all__ = ["cosine_with_warmup", "warmup_steps_for", "build_optimizer", "build_scheduler"]


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: linear from 0 over ``warmup`` steps, then half a cosine to 0.

    The same numbers as ``transformers.get_cosine_schedule_with_warmup``.
    """
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def warmup_steps_for(cfg: TrainConfig, total_steps: int) -> int:
    """``warmup_steps`` when set, else ``ceil(warmup_ratio * total)``, as Trainer does."""
    return cfg.warmup_steps if cfg.warmup_steps > 0 else math.ceil(total_steps * cfg.warmup_ratio)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on every weight except biases and layer norms (Trainer's rule).

    On a GPU the fused kernel updates all parameters in one launch.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith(".bias") or ".ln_" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_epsilon, fused=device.type == "cuda")


def build_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule as a scheduler that scales the optimizer's peak rate step by step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, warmup, total))
