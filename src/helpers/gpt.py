"""GPT-2 written out in plain PyTorch, and the one decoding loop of the package.

This is the model lesson 2 builds and the model the course trains: the
GPT-2 architecture (layer norm from its formula, causal self-attention with
explicit scores and mask, the tanh-GELU MLP, pre-norm residual blocks, tied
input and output embeddings), the next-token loss, and :func:`generate`
(greedy, temperature, top-k, top-p, with a cache of past keys and values).
The fast engine of :mod:`helpers.train` trains :class:`GPT`; every run,
evaluation and lesson loads it. A saved model is a Hugging Face GPT-2 folder
(:meth:`GPT.save_pretrained`), so ``GPT2LMHeadModel.from_pretrained`` and
``pipeline("text-generation")`` read it, and :meth:`GPT.from_hf` /
:meth:`GPT.to_hf` convert both ways: the tests require equal logits to 1e-5.

Nothing here loads data.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
from transformers.activations import ACT2FN
from transformers.utils import logging as hf_logging

from .config import ModelConfig

__all__ = [
    "gelu_new",
    "LayerNorm",
    "CausalSelfAttention",
    "MLP",
    "Block",
    "GPT",
    "GPTOutput",
    "gpt2_config",
    "hf_quiet",
    "next_token_probs",
    "generate",
]

# GPT-2's linear layers are transformers' ``Conv1D``: weight stored (in, out).
_CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU: the tanh approximation of x * Phi(x).

    0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3))), as OpenAI's
    code writes it; PyTorch's fused ``gelu(approximate="tanh")`` computes
    the same numbers (to 1e-6) in one kernel instead of eight, which a
    training step on a CPU notices.
    """
    return F.gelu(x, approximate="tanh")


class LayerNorm(nn.Module):
    """Normalise each vector to mean 0 and variance 1, then scale and shift (learned).

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased
    variance (lesson 2 writes it out). PyTorch's fused ``layer_norm``
    computes exactly that in one kernel; the formula as nine separate
    operations made a lesson training step about a tenth slower.
    """

    def __init__(self, n_embd: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


Past = tuple[torch.Tensor, torch.Tensor]  # one layer's cached keys and values, each (B, n_head, T, head_dim)


class CausalSelfAttention(nn.Module):
    """Every position looks at itself and the positions before it, in n_head heads at once.

    ``c_attn`` makes the queries, keys and values of all heads in one product;
    ``c_proj`` mixes the heads' outputs back into one vector per position.
    The scores are written out when the weights are asked for (lesson 2's
    heatmaps); otherwise PyTorch's fused ``scaled_dot_product_attention``
    computes the same numbers without keeping the (T, T) matrix.
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

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None, past: Past | None = None,
                return_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, Past]:
        """(B, T, C) -> (B, T, C), the attention weights (or None) and this layer's keys and values.

        ``allowed`` (B or 1, 1, T, T_past + T) says which keys each query may
        read; None is the plain causal mask. ``past`` holds the keys and
        values of tokens already read, so only the new ones are computed.
        """
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=-1)
        # (B, T, C) -> (B, n_head, T, head_dim): each head attends on its own.
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        if past is not None:  # the tokens read before: their keys and values are not computed again
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        weights = None
        if return_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, n_head, T, T_past + T)
            if allowed is None:
                allowed = ~torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
            scores = scores.masked_fill(~allowed, float("-inf"))  # no looking ahead (nor at padding)
            weights = F.softmax(scores, dim=-1)
            y = self.attn_dropout(weights) @ v  # (B, n_head, T, head_dim)
        else:
            dropout = self.attn_dropout.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout,
                                               is_causal=allowed is None)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y)), weights, (k, v)


class MLP(nn.Module):
    """Per position: widen 4x, GELU, project back.

    GPT-2's ``gelu_new`` is :func:`gelu_new`; the other activations a
    profile may name are transformers' own (``ACT2FN``).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.act = gelu_new if config.activation_function == "gelu_new" else ACT2FN[config.activation_function]
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """One transformer layer, pre-norm: each sub-layer adds its output to the residual stream."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None, past: Past | None = None,
                return_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, Past]:
        """(B, T, C) -> (B, T, C), with the attention weights (or None) and the layer's keys and values."""
        attn, weights, present = self.attn(self.ln_1(x), allowed, past, return_weights)
        x = x + attn
        x = x + self.mlp(self.ln_2(x))
        return x, weights, present


@dataclass
class GPTOutput:
    """What :meth:`GPT.forward` returns; the fields not asked for are None."""

    logits: torch.Tensor                            # (B, T, vocab): position t scores the token at t + 1
    loss: torch.Tensor | None = None                # mean cross-entropy over the labels that are not -100
    attentions: list[torch.Tensor] | None = None    # each block's (B, n_head, T, T_past + T) weights
    past_key_values: list[Past] | None = None       # every layer's keys and values, for the next step


class GPT(nn.Module):
    """GPT-2: token + position embeddings, n_layer blocks, a final norm, a tied output layer.

    Attribute names follow Hugging Face's ``model.transformer`` (``wte``,
    ``wpe``, ``h``, ``ln_f``), so ``gpt.h[0].attn.c_attn`` sits where
    ``hf.transformer.h[0].attn.c_attn`` does (with its weight transposed,
    see :meth:`from_hf`).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
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

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, *,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                past_key_values: list[Past] | None = None, use_cache: bool = False,
                output_attentions: bool = False) -> GPTOutput:
        """Logits for token ids (B, T), and the loss when ``labels`` are given.

        ``labels`` are the input ids with -100 on tokens not to be scored (a
        finetuning prompt, padding); token t is scored against label t + 1.
        ``attention_mask`` (B, T_past + T) marks real tokens with 1 and padding
        with 0; ``position_ids`` default to 0, 1, ... after the cached tokens.
        """
        hidden, attentions, presents = self.hidden_states(
            input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, output_attentions=output_attentions)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return GPTOutput(logits, loss, attentions if output_attentions else None, presents if use_cache else None)

    def hidden_states(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                      position_ids: torch.Tensor | None = None, past_key_values: list[Past] | None = None,
                      output_attentions: bool = False) -> tuple[torch.Tensor, list, list[Past]]:
        """The final layer norm's output (B, T, C), each block's attention weights, each layer's keys and values.

        Everything of :meth:`forward` but the output layer: the memory-light
        loss of :mod:`helpers.model` projects these rows itself.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, time), got shape {tuple(input_ids.shape)}")
        T = input_ids.shape[1]
        seen = past_key_values[0][0].shape[2] if past_key_values else 0
        if seen + T > self.config.n_positions:
            raise ValueError(
                f"input has {seen + T} tokens but the model sees at most n_positions={self.config.n_positions}; "
                f"keep the last {self.config.n_positions}"
            )
        if position_ids is None:
            position_ids = torch.arange(seen, seen + T, device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(position_ids))
        allowed = _allowed_keys(T, seen, attention_mask)
        attentions, presents = [], []
        for i, block in enumerate(self.h):
            x, weights, present = block(x, allowed, past_key_values[i] if past_key_values else None,
                                        output_attentions)
            attentions.append(weights)
            presents.append(present)
        return self.ln_f(x), attentions, presents

    def num_parameters(self) -> int:
        """Learned numbers, the tied output matrix counted once (the paper's model: 3,582,016)."""
        return sum(p.numel() for p in self.parameters())  # parameters() lists a shared tensor once

    # ------------------------------------------------------------ Hugging Face's format

    @classmethod
    def from_hf(cls, model: nn.Module) -> "GPT":
        """The same network as a ``transformers.GPT2LMHeadModel``, weights copied.

        The shape comes from ``model.config``. GPT-2 keeps its linear layers as
        ``Conv1D``, weight stored (in, out); ``nn.Linear`` stores (out, in), so
        those weights are transposed. The result has the model's dtype and device.
        """
        gpt = cls(_model_config(model.config))
        gpt.copy_from_hf(model)
        reference = next(model.parameters())
        return gpt.to(device=reference.device, dtype=reference.dtype)

    def copy_from_hf(self, model: nn.Module) -> None:
        """Overwrite every weight with the matching one of a ``GPT2LMHeadModel`` of the same shape."""
        if not torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight):
            raise ValueError("the model's output layer is not tied to its token embedding; GPT always ties them")
        source = model.state_dict()
        with torch.no_grad():
            for name, param in self.named_parameters():  # lm_head.weight is wte.weight, listed once
                weight = source["transformer." + name]
                param.copy_(weight.t() if name.endswith(_CONV1D_WEIGHTS) else weight)

    def to_hf(self) -> GPT2LMHeadModel:
        """The same network as a ``transformers.GPT2LMHeadModel`` (on the CPU, in fp32).

        The random initialisation its constructor draws is thrown away, and
        drawn from a forked random state: saving a checkpoint must not move a
        training run's dropout draws (resuming would then differ).
        """
        with hf_quiet(), torch.random.fork_rng(devices=[]):
            hf = GPT2LMHeadModel(gpt2_config(self.config))
        state = {"transformer." + name: (w.t() if name.endswith(_CONV1D_WEIGHTS) else w).detach().float().cpu()
                 for name, w in self.named_parameters()}
        result = hf.load_state_dict(state, strict=False)  # lm_head.weight is wte's, tied below
        if result.unexpected_keys or set(result.missing_keys) - {"lm_head.weight"}:
            raise ValueError(f"GPT2LMHeadModel and GPT disagree on their weights: {result}")
        hf.tie_weights()
        return hf

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` as Hugging Face's GPT-2 does."""
        with hf_quiet():
            self.to_hf().save_pretrained(str(folder))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **options: Any) -> "GPT":
        """A saved GPT-2: a run folder (this package's or ``GPT2LMHeadModel``'s) or a hub name such as "gpt2".

        Refuses a folder whose weights are missing, extra or misshapen instead
        of filling the gaps with random numbers. ``options`` go to transformers'
        ``from_pretrained`` (``local_files_only``, ``revision``, ...). Like
        Hugging Face's, the model comes back in eval mode (dropout off).
        """
        with hf_quiet():
            model, info = AutoModelForCausalLM.from_pretrained(str(name_or_path), output_loading_info=True, **options)
        problems = {k: sorted(v) for k, v in info.items() if k != "error_msgs" and v}
        if problems or info.get("error_msgs"):
            raise ValueError(f"{name_or_path} does not hold a complete GPT-2: {problems or info['error_msgs']}")
        return cls.from_hf(model).eval()


def _allowed_keys(T: int, seen: int, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Which keys each of T new queries may read after ``seen`` cached tokens; None: plain causal, no cache.

    A query reads the keys up to its own position, except padding (0 in
    ``attention_mask``); it always reads itself, so a padding query has at
    least one key (its output is never used).
    """
    if attention_mask is None and seen == 0:
        return None
    device = attention_mask.device if attention_mask is not None else None
    query = torch.arange(seen, seen + T, device=device)[:, None]
    key = torch.arange(seen + T, device=device)[None, :]
    allowed = key <= query  # (T, seen + T)
    if attention_mask is not None:
        allowed = (allowed & attention_mask[:, None, :].bool()) | (key == query)
    return allowed[:, None] if allowed.dim() == 3 else allowed  # (B, 1, T, seen + T) or (T, seen + T)


@contextlib.contextmanager
def hf_quiet() -> Iterator[None]:
    """Hide transformers' progress bars and notes while a 14 MB model is saved or loaded."""
    was_enabled, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if was_enabled:
            hf_logging.enable_progress_bar()


def gpt2_config(cfg: ModelConfig) -> GPT2Config:
    """A ``GPT2Config`` holding exactly the profile's model settings."""
    return GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, activation_function=cfg.activation_function, resid_pdrop=cfg.resid_pdrop,
        embd_pdrop=cfg.embd_pdrop, attn_pdrop=cfg.attn_pdrop, layer_norm_epsilon=cfg.layer_norm_epsilon,
        initializer_range=cfg.initializer_range, bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
        scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, tie_word_embeddings=True,
        architectures=["GPT2LMHeadModel"],
    )


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


@torch.no_grad()
def generate(
    model: GPT,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    attention_mask: torch.Tensor | None = None,
    position_offset: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """Append up to ``max_new_tokens`` tokens to each row of ``input_ids`` (B, T).

    The first pass reads the whole prompt and keeps every layer's keys and
    values; each later step feeds only the newest token, which attends to
    those cached keys: one position of work per token instead of the whole
    prefix again. Prompts of different lengths are left-padded, with 0 on the
    padding in ``attention_mask``: positions count real tokens only, from
    ``position_offset`` (lesson 4's shifted reading).

    ``temperature=0`` is greedy (argmax); otherwise tokens are drawn with
    ``torch.multinomial(..., generator=generator)`` from
    :func:`next_token_probs`, so a seeded generator (on the model's device)
    repeats the same text. With ``eos_token_id`` a row that produced it stops
    and is padded with it, and the loop ends early once every row has stopped.
    Refuses to run past the model's ``n_positions``. Putting the model in
    eval mode (no dropout) is the caller's job: ``model.eval()``.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, time), got shape {tuple(input_ids.shape)}")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0) + position_offset
    needed = int(mask.sum(dim=-1).max()) + position_offset + max_new_tokens
    if needed > model.config.n_positions:
        raise ValueError(f"a prompt of {int(mask.sum(dim=-1).max())} tokens{f' from position {position_offset}' if position_offset else ''} "
                         f"plus {max_new_tokens} new tokens exceeds the model's {model.config.n_positions} positions")
    ids, step_ids, past = input_ids, input_ids, None
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        out = model(step_ids, attention_mask=None if attention_mask is None else mask, position_ids=positions,
                    past_key_values=past, use_cache=True)
        logits = out.logits[:, -1, :]
        if temperature == 0:
            next_ids = logits.argmax(dim=-1, keepdim=True)
        else:
            next_ids = torch.multinomial(next_token_probs(logits, temperature, top_k, top_p), 1, generator=generator)
        if eos_token_id is not None:
            next_ids = next_ids.masked_fill(finished[:, None], eos_token_id)
            finished |= next_ids[:, 0] == eos_token_id
        ids = torch.cat([ids, next_ids], dim=1)
        if eos_token_id is not None and bool(finished.all()):
            break
        step_ids, past, positions = next_ids, out.past_key_values, positions[:, -1:] + 1
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return ids
