"""Building and loading the course's GPT-2, and a memory-light loss for its 50257-wide output layer.

The model is :class:`helpers.gpt.GPT`, the one lesson 2 writes; saved runs
are Hugging Face GPT-2 folders. The ``hf`` engine trains the same weights as
a ``transformers.GPT2LMHeadModel`` (:func:`hf_model`), as the paper did.

At width 64 almost all of the arithmetic sits in the output layer: each token
needs a 64 x 50257 projection, its softmax, and two more products in the
backward pass. Materialising the logits of a 32 x 128 micro-batch takes
823 MB in fp32. :func:`lm_loss` computes the same cross-entropy and the same
gradients chunk by chunk, never holding more than ``chunk`` rows of logits;
the paper profile uses it, the lesson profile's 2048-wide layer does not need it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import torch
from transformers import GPT2LMHeadModel

from .config import ModelConfig
from .gpt import GPT
from .runs import RunError

__all__ = [
    "load_model",
    "build_model",
    "hf_model",
    "parameter_report",
    "lm_loss",
    "default_loss_chunk",
    "CausalLMLoss",
    "LOSSES",
]

LOSSES = ("chunked", "full", "cce", "liger")  # how the output layer and its loss can be computed


def build_model(cfg: ModelConfig, seed: int | None = None) -> GPT:
    """A freshly initialised GPT-2 (normal(0, 0.02) weights, as Hugging Face does), seeded when asked."""
    if seed is not None:
        torch.manual_seed(seed)
    return GPT(cfg)


def load_model(path: str | Path) -> GPT:
    """A saved model: a run folder, a checkpoint, or any GPT-2 folder Hugging Face wrote."""
    return GPT.from_pretrained(path)


def hf_model(model: GPT) -> GPT2LMHeadModel:
    """The same weights as a ``GPT2LMHeadModel``, for ``transformers.Trainer`` (the ``hf`` engine).

    Tells transformers this is a causal LM loss (GPT2LMHeadModel's class name
    does not say so): without it, transformers 5 warns on every forward pass
    and ``Trainer`` counts the unshifted labels, dividing each batch's summed
    loss by 128 tokens where only 127 are predicted: losses logged 0.8% too low.
    """
    hf = model.to_hf()
    hf.loss_type = "ForCausalLM"
    return hf


def parameter_report(model: torch.nn.Module) -> dict[str, int]:
    """Where the parameters sit: embeddings, transformer blocks, final norm.

    The output layer shares its weight with the token embedding, so it adds
    nothing: for the paper's model the embeddings are 91.6% of 3,582,016.
    """
    counts = {"embeddings": 0, "blocks": 0, "final_norm": 0}
    for name, param in model.named_parameters():  # tied weights are listed once
        name = name.removeprefix("transformer.")  # GPT2LMHeadModel's names
        if name.startswith(("wte.", "wpe.")):
            counts["embeddings"] += param.numel()
        elif name.startswith("h."):
            counts["blocks"] += param.numel()
        elif name.startswith("ln_f."):
            counts["final_norm"] += param.numel()
        else:  # pragma: no cover - GPT-2 has no other parameters
            raise ValueError(f"unexpected parameter {name}")
    counts["total"] = sum(counts.values())
    return counts


def default_loss_chunk(device_type: str) -> int:
    """Rows of logits per chunk: small enough for a CPU cache, large for a GPU."""
    return 128 if device_type == "cpu" else 8192


def lm_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk: int,
    compute_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy and the number of scored tokens.

    ``hidden`` is the final hidden state (batch, time, width), ``weight`` the
    tied output matrix (vocab, width), ``labels`` the input ids with -100 on
    tokens that are not scored; token t is scored against label t+1, as in
    ``GPT2LMHeadModel``. Only scored rows are projected at all, so prompt
    tokens masked with -100 cost nothing. Returns ``(loss_sum, count)``; the
    mean is ``loss_sum / count``.
    """
    targets = labels[:, 1:].reshape(-1)
    rows = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    keep = targets != -100
    if not bool(keep.all()):
        rows, targets = rows[keep], targets[keep]
    count = torch.tensor(targets.numel(), device=hidden.device)
    dtype = compute_dtype or hidden.dtype
    if torch.is_grad_enabled() and (rows.requires_grad or weight.requires_grad):
        return ChunkedCrossEntropy.apply(rows, weight, targets, chunk, dtype), count
    with torch.autocast(device_type=rows.device.type, enabled=False):
        loss, _, _ = _chunk_pass(rows, weight, targets, chunk, dtype, want_grads=False)
    return loss, count


def _chunk_pass(rows, weight, targets, chunk, dtype, want_grads):
    """Loss (and, if asked, gradients) of softmax(rows @ weight.T) chunk by chunk.

    Per chunk: logits E = W h^T in the compute dtype, then the softmax
    numerator P = exp(E - max) (max and exp taken in fp32); one product
    P^T [W | 1] gives both sum_v p_v W_v (for the hidden gradient) and the
    softmax denominator s. The weight gradient is P (h / s) minus the
    one-hot term, added with index_add. Nothing the size of the whole logits
    matrix ever exists.
    """
    n, width = rows.shape
    w_c = weight.to(dtype)
    w_plus = torch.cat([w_c, torch.ones_like(w_c[:, :1])], dim=1)
    loss = torch.zeros((), dtype=torch.float32, device=rows.device)
    grad_rows = torch.empty_like(rows) if want_grads else None
    grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=rows.device) if want_grads else None
    numerator = _softmax_numerator_fused() if rows.device.type == "cuda" else _softmax_numerator
    for start in range(0, n, chunk):
        h = rows[start:start + chunk].to(dtype)
        t = targets[start:start + chunk]
        probs, peak = numerator(torch.mm(w_c, h.T))  # (vocab, rows): exp(logit - max), max
        target_logit = (h.float() * w_c[t].float()).sum(dim=1)
        if not want_grads:
            total = probs.sum(dim=0, dtype=torch.float32)
            loss += (total.log() + peak - target_logit).sum()
            continue
        mixed = torch.mm(probs.T, w_plus).float()  # (rows, width + 1)
        total = mixed[:, width]
        loss += (total.log() + peak - target_logit).sum()
        grad_rows[start:start + chunk] = (mixed[:, :width] / total[:, None] - w_c[t].float()).to(rows.dtype)
        scaled = (h.float() / total[:, None]).to(dtype)
        if dtype == torch.float32:
            grad_weight.addmm_(probs, scaled)
        else:  # multiply in the fast dtype, accumulate in fp32
            grad_weight += torch.mm(probs, scaled).float()
        grad_weight.index_add_(0, t, h.float(), alpha=-1.0)
    return loss, grad_rows, grad_weight


def _softmax_numerator(logits):
    """exp(logits - column max) in the logits' dtype, and the max (fp32): eager, in place for fp32."""
    if logits.dtype == torch.float32:
        peak = logits.amax(dim=0)
        return logits.sub_(peak).exp_(), peak
    wide = logits.float()
    peak = wide.amax(dim=0)
    return wide.sub_(peak).exp_().to(logits.dtype), peak


@functools.cache
def _softmax_numerator_fused():
    """:func:`_softmax_numerator` compiled for GPUs: two passes over bf16 logits instead of six in fp32.

    Measured on an H200, the eager version's casts, max, subtraction and
    exponential were two thirds of a training step at 256 x 128 tokens.
    """
    def numerator(logits):
        wide = logits.float()
        peak = wide.amax(dim=0)
        return torch.exp(wide - peak).to(logits.dtype), peak

    return torch.compile(numerator, dynamic=True)


class ChunkedCrossEntropy(torch.autograd.Function):
    """Cross-entropy over a tied output layer whose gradients are made in the forward pass.

    The loss is a scalar, so its gradients are known once the forward pass
    has seen each chunk; keeping them costs O(rows x width + vocab x
    width), never O(rows x vocab).
    """

    @staticmethod
    def forward(ctx, rows, weight, targets, chunk, dtype):
        with torch.autocast(device_type=rows.device.type, enabled=False):
            loss, grad_rows, grad_weight = _chunk_pass(rows, weight, targets, chunk, dtype, want_grads=True)
        ctx.save_for_backward(grad_rows, grad_weight.to(weight.dtype))
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_rows, grad_weight = ctx.saved_tensors
        return grad_rows * grad_loss, grad_weight * grad_loss, None, None, None


class CausalLMLoss(torch.nn.Module):
    """A GPT and the way its loss is computed, as one module whose forward returns (summed loss, count).

    One module, so that ``DistributedDataParallel`` and ``torch.compile`` see
    a single forward pass whichever way the output layer is computed:
    ``"full"`` (:meth:`GPT.forward`'s loss over all logits), ``"chunked"``
    (:func:`lm_loss`), or an optional GPU library (``"cce"``, ``"liger"``).
    """

    def __init__(self, model: GPT, loss: str, chunk: int, dtype: torch.dtype | None):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {list(LOSSES)}")
        self.model, self.loss, self.chunk, self.dtype = model, loss, chunk, dtype
        self.head = external_head(loss, dtype) if loss in {"cce", "liger"} else None

    def forward(self, input_ids, attention_mask=None, labels=None, position_ids=None):
        if self.loss == "full":
            out = self.model(input_ids, labels, attention_mask=attention_mask, position_ids=position_ids)
            count = (labels[:, 1:] != -100).sum()
            return out.loss * count, count
        hidden, _, _ = self.model.hidden_states(input_ids, attention_mask=attention_mask, position_ids=position_ids)
        if self.head is not None:
            return self.head(hidden, self.model.lm_head.weight, labels), (labels[:, 1:] != -100).sum()
        return lm_loss(hidden, self.model.lm_head.weight, labels, self.chunk, self.dtype)


class MissingLossLibrary(RunError):
    """``loss="cce"`` or ``"liger"`` without the optional package that computes it."""


def external_head(loss: str, dtype: torch.dtype | None) -> Callable:
    """Summed next-token loss from an optional GPU library (Triton kernels; imported only when asked for).

    ``"cce"``: Apple's Cut Cross-Entropy (``pip install cut-cross-entropy``);
    ``"liger"``: Liger Kernel's fused linear cross-entropy (``pip install
    liger-kernel``). Both run on CUDA GPUs only; the throughput benchmark
    compares them with the chunked loss.
    """
    dtype = dtype or torch.float32
    package = {"cce": "cut-cross-entropy", "liger": "liger-kernel"}[loss]
    try:
        if loss == "cce":
            from cut_cross_entropy import linear_cross_entropy
        else:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError as err:
        raise MissingLossLibrary(f"loss={loss!r} needs the optional package {package} "
                                 f"(pip install {package}): {err}") from None
    if loss == "cce":
        # filter_eps=None: exact gradients. CCE's default skips softmax
        # entries below a threshold, which early in training (a nearly
        # uniform softmax over 50257 tokens) drops most of the gradient:
        # measured on an H200, loss 6.42 instead of 6.02 after 200 steps.
        def cce(hidden, weight, labels):
            return linear_cross_entropy(hidden.to(dtype), weight.to(dtype), labels, reduction="sum",
                                        shift=True, filter_eps=None).float()

        return cce
    fused = LigerFusedLinearCrossEntropyLoss(reduction="sum")

    def liger(hidden, weight, labels):
        rows = hidden[:, :-1].reshape(-1, hidden.shape[-1]).to(dtype)
        return fused(weight.to(dtype), rows, labels[:, 1:].reshape(-1)).float()

    return liger
