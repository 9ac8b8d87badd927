"""GPT-2 written out in plain PyTorch, and decoding written out by hand.

This module owns the lessons' from-scratch copy of the paper's model: the
GPT-2 architecture (layer norm from its formula, causal self-attention with
explicit scores and mask, the tanh-GELU MLP, pre-norm residual blocks, tied
input and output embeddings) and the decoding loop (greedy, temperature,
top-k, top-p). Training uses ``transformers.GPT2LMHeadModel``
(:mod:`helpers.model`); this copy exists so that students see every piece,
and :meth:`GPT.from_hf` loads that model's weights so the two can be checked
against each other: the tests require equal logits to 1e-5.

Nothing here trains or loads data.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

__all__ = [
    "gelu_new",
    "LayerNorm",
    "CausalSelfAttention",
    "MLP",
    "Block",
    "GPT",
    "next_token_probs",
    "generate",
]

# GPT-2's linear layers are transformers' ``Conv1D``: weight stored (in, out).
_CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU: the tanh approximation of x * Phi(x), as OpenAI's code computes it."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class LayerNorm(nn.Module):
    """Normalise each vector to mean 0 and variance 1, then scale and shift (learned).

    Written from the formula y = (x - mean) / sqrt(var + eps) * weight + bias,
    with the biased variance, as ``torch.nn.LayerNorm`` computes it.
    """

    def __init__(self, n_embd: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class CausalSelfAttention(nn.Module):
    """Every position looks at itself and the positions before it, in n_head heads at once.

    ``c_attn`` makes the queries, keys and values of all heads in one product;
    ``c_proj`` mixes the heads' outputs back into one vector per position.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd={config.n_embd} is not divisible by n_head={config.n_head}")
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor, return_weights: bool = False) -> Any:
        """(B, T, C) -> (B, T, C); with ``return_weights`` also the (B, n_head, T, T) attention."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)
        # (B, T, C) -> (B, n_head, T, head_dim): each head attends on its own.
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, n_head, T, T)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))  # no looking ahead
        weights = F.softmax(scores, dim=-1)
        y = self.attn_dropout(weights) @ v  # (B, n_head, T, head_dim)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        y = self.resid_dropout(self.c_proj(y))
        return (y, weights) if return_weights else y


class MLP(nn.Module):
    """Per position: widen 4x, GELU, project back."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(gelu_new(self.c_fc(x))))


class Block(nn.Module):
    """One transformer layer, pre-norm: each sub-layer adds its output to the residual stream."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, return_weights: bool = False) -> Any:
        """(B, T, C) -> (B, T, C); with ``return_weights`` also the attention weights."""
        attn, weights = self.attn(self.ln_1(x), return_weights=True)
        x = x + attn
        x = x + self.mlp(self.ln_2(x))
        return (x, weights) if return_weights else x


class GPT(nn.Module):
    """GPT-2: token + position embeddings, n_layer blocks, a final norm, a tied output layer.

    Attribute names follow Hugging Face's ``model.transformer`` (``wte``,
    ``wpe``, ``h``, ``ln_f``), so ``gpt.h[0].attn.c_attn`` sits where
    ``hf.transformer.h[0].attn.c_attn`` does (with its weight transposed,
    see :meth:`from_hf`).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.activation_function != "gelu_new":
            raise ValueError(f"only activation_function='gelu_new' is written out, got {config.activation_function!r}")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one matrix reads tokens in and scores them out
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as Hugging Face's GPT-2 does (``GPT2PreTrainedModel._init_weights``).

        Weights of linear layers and embeddings ~ normal(0, initializer_range),
        biases 0, norms weight 1 and bias 0; the two ``c_proj`` layers of each
        block, which write into the residual stream, get std divided by
        sqrt(2 * n_layer) so the stream's variance does not grow with depth.
        """
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and module is not self.lm_head:
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                nn.init.normal_(proj.weight, mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))

    def forward(self, input_ids: torch.Tensor, return_attentions: bool = False) -> Any:
        """Logits (B, T, vocab) for token ids (B, T); position t scores the token at t + 1.

        With ``return_attentions`` also a list with each block's (B, n_head, T, T) weights.
        """
        T = input_ids.shape[-1]
        if T > self.config.n_positions:
            raise ValueError(
                f"input has {T} tokens but the model sees at most n_positions={self.config.n_positions}; "
                f"keep the last {self.config.n_positions} (generate() does)"
            )
        positions = torch.arange(T, device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))
        attentions = []
        for block in self.h:
            x, weights = block(x, return_weights=True)
            attentions.append(weights)
        logits = self.lm_head(self.ln_f(x))
        return (logits, attentions) if return_attentions else logits

    def num_parameters(self) -> int:
        """Learned numbers, the tied output matrix counted once (the paper's model: 3,582,016)."""
        return sum(p.numel() for p in self.parameters())  # parameters() lists a shared tensor once

    @classmethod
    def from_hf(cls, model: nn.Module) -> "GPT":
        """The same network as a ``transformers.GPT2LMHeadModel``, weights copied.

        The shape comes from ``model.config``. GPT-2 keeps its linear layers as
        ``Conv1D``, weight stored (in, out); ``nn.Linear`` stores (out, in), so
        those weights are transposed. The result has the model's dtype and device.
        """
        config = _model_config(model.config)
        gpt = cls(config)
        if not torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight):
            raise ValueError("the model's output layer is not tied to its token embedding; GPT always ties them")
        source, prefix = model.state_dict(), "transformer."
        with torch.no_grad():
            for name, param in gpt.named_parameters():  # lm_head.weight is wte.weight, listed once
                weight = source[prefix + name]
                param.copy_(weight.t() if name.endswith(_CONV1D_WEIGHTS) else weight)
        reference = next(model.parameters())
        return gpt.to(device=reference.device, dtype=reference.dtype)


def _model_config(hf: Any) -> ModelConfig:
    """A :class:`ModelConfig` from a ``GPT2Config``, refusing the variants not written out here."""
    unsupported = {
        "n_inner": (None, 4 * hf.n_embd),
        "scale_attn_weights": (True,),
        "scale_attn_by_inverse_layer_idx": (False,),
        "add_cross_attention": (False,),
    }
    for key, allowed in unsupported.items():
        if getattr(hf, key, allowed[0]) not in allowed:
            raise ValueError(f"GPT2Config.{key}={getattr(hf, key)!r} is not supported by helpers.gpt.GPT")
    return ModelConfig(
        vocab_size=hf.vocab_size, n_positions=hf.n_positions, n_embd=hf.n_embd, n_layer=hf.n_layer,
        n_head=hf.n_head, activation_function=hf.activation_function, resid_pdrop=hf.resid_pdrop,
        embd_pdrop=hf.embd_pdrop, attn_pdrop=hf.attn_pdrop, layer_norm_epsilon=hf.layer_norm_epsilon,
        initializer_range=hf.initializer_range, bos_token_id=hf.bos_token_id, eos_token_id=hf.eos_token_id,
    )


def next_token_probs(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """The distribution the next token is drawn from, for logits (vocab,) or (B, vocab).

    Written apart from :func:`generate` so a lesson can draw how each knob
    reshapes one distribution. In order: temperature 0 puts all mass on the
    argmax (greedy); otherwise divide the logits by ``temperature`` (below 1
    sharpens, above 1 flattens), keep the ``top_k`` largest (0: all; among
    equal logits ``torch.topk`` picks), softmax, keep the smallest set of most
    likely tokens whose probability reaches ``top_p`` (1.0: all; the most
    likely token always stays) and renormalise. Returns float32 probabilities.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 keeps all tokens), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    logits = logits.float()
    if temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(top_k, dim=-1).indices, True)
        logits = logits.masked_fill(~keep, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # what the more likely tokens already hold
        drop_sorted = mass_before >= top_p  # never true for the first token: top_p > 0
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def _context_length(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


@torch.no_grad()
def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """Append up to ``max_new_tokens`` tokens to each row of ``input_ids`` (B, T).

    The plainest decoding loop: run the whole (cropped) sequence through the
    model, take the last position's logits, pick one token, repeat. No cache of
    keys and values, so each step costs a full forward pass: slower than
    ``model.generate`` of transformers, but every step is visible. Works for a
    :class:`GPT` and for any Hugging Face causal LM (whose output has
    ``.logits``). The context is cropped to the model's last ``n_positions``
    tokens.

    ``temperature=0`` is greedy (argmax); otherwise tokens are drawn with
    ``torch.multinomial(..., generator=generator)`` from
    :func:`next_token_probs`, so a seeded generator (on the model's device)
    repeats the same text. With ``eos_token_id`` a row that produced it stops
    and is padded with it, and the loop ends early once every row has stopped.

    Runs under ``torch.no_grad``; putting the model in eval mode (no dropout)
    is the caller's job: ``model.eval()``.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, time), got shape {tuple(input_ids.shape)}")
    context = _context_length(model)
    ids = input_ids
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        window = ids if context is None else ids[:, -context:]
        output = model(window)
        logits = getattr(output, "logits", output)[:, -1, :]
        if temperature == 0:
            next_ids = logits.argmax(dim=-1, keepdim=True)
        else:
            probs = next_token_probs(logits, temperature, top_k, top_p)
            next_ids = torch.multinomial(probs, 1, generator=generator)
        if eos_token_id is not None:
            next_ids = next_ids.masked_fill(finished[:, None], eos_token_id)
            finished |= next_ids[:, 0] == eos_token_id
        ids = torch.cat([ids, next_ids], dim=1)
        if eos_token_id is not None and bool(finished.all()):
            break
    return ids
