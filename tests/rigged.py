"""Models whose next-token logits the test chooses, so that a probe's result can be worked out by hand.

A real :class:`helpers.gpt.GPT` (so every probe runs it as it runs a trained one)
with the final layer norm's weight set to zero: whatever the blocks compute,
``ln_f`` then outputs its bias, here the first unit vector, and the tied
output layer turns that into ``logits[t] = wte[t, 0]``. Writing the chosen
logits into that one column makes them the model's next-token logits after
*every* context: greedy decoding repeats the top token, a cloze candidate
scores ``log_softmax(logits)`` of its tokens, sampling draws from
``softmax(logits / T)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pytest
import torch

from helpers.config import ModelConfig
from helpers.model import build_model


def constant_model(vocab_size: int, logits: Mapping[int, float], *, eos_token_id: int = 0,
                   n_positions: int = 1024, rest: float = 0.0):
    """A GPT-2 whose next-token logits are ``logits[id]`` for the named ids and ``rest`` for every other id."""
    cfg = ModelConfig(vocab_size=vocab_size, n_positions=n_positions, n_embd=8, n_layer=1, n_head=1,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=eos_token_id, eos_token_id=eos_token_id)
    model = build_model(cfg, seed=0).eval()
    with torch.no_grad():
        wte = model.wte.weight
        wte[:, 0] = rest
        for token, value in logits.items():
            wte[token, 0] = value
        model.ln_f.weight.zero_()
        model.ln_f.bias.zero_()
        model.ln_f.bias[0] = 1.0
    return model


def save_model(model, folder: Path) -> Path:
    """Write ``model`` where a checkpoint's model goes (config and weights only; the run keeps its tokenizer)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"):
        (folder / stale).unlink(missing_ok=True)
    model.save_pretrained(str(folder))
    return folder


def first_token(tokenizer, text: str) -> int:
    return tokenizer(text, add_special_tokens=False)["input_ids"][0]


@pytest.fixture
def one_thread():
    """Tiny models on one thread: on the shared 2-core machine a second thread only waits (measured 20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def parity_model(vocab_size: int, even: int, odd: int, *, eos_token_id: int = 0, n_positions: int = 1024):
    """A GPT-2 that, whatever it read, predicts ``even`` after reading at an even position and ``odd`` after an odd one.

    The token it writes after a prompt of n tokens read from position 0 is ``even`` if n - 1 is even.

    The blocks add nothing (their output projections are zero), so the last layer norm reads the
    token's embedding plus its position's; every token's embedding is zero except the two written
    ones (a unit vector each, also their output rows), and each position row points ten times harder
    towards the token of its parity. Answers then show where a model reads a prompt.
    """
    cfg = ModelConfig(vocab_size=vocab_size, n_positions=n_positions, n_embd=8, n_layer=1, n_head=1,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=eos_token_id, eos_token_id=eos_token_id)
    model = build_model(cfg, seed=0).eval()
    with torch.no_grad():
        for block in model.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                proj.bias.zero_()
        wte, wpe = model.wte.weight, model.wpe.weight
        wte.zero_()
        wte[even, 0] = wte[odd, 1] = 1.0
        wpe.zero_()
        wpe[0::2, 0], wpe[0::2, 1] = 10.0, -10.0
        wpe[1::2, 0], wpe[1::2, 1] = -10.0, 10.0
        model.ln_f.weight.fill_(1.0)
        model.ln_f.bias.zero_()
    return model
