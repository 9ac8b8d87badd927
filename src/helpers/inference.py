"""Running a trained model: perplexity on data or raw text, and decoding prompts into text.

The evaluation code, the lessons and the learning-order sweep all run a
model through these few functions, so a perplexity here is the number the
training loop validates with, and a generated text is the same for the same
seed on the same machine.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .config import Profile
from .data import InstructionSet, TokenBlocks, pad_batch
from .gpt import GPT
from .gpt import generate as decode
from .model import default_loss_chunk, lm_loss, load_model
from .progress import progress_bar
from .stats import perplexity_from_loss
from .tokenizer import load_tokenizer

__all__ = [
    "Decoding",
    "place",
    "decoding_threads",
    "perplexity",
    "text_perplexity",
    "generate",
    "load_run",
]



@dataclass(frozen=True)
class Decoding:
    """How a continuation is chosen, as one value passed down instead of six loose arguments.

    Greedy by default. With ``do_sample`` the tokens are drawn from the
    softmax of the logits over ``temperature``, restricted to the ``top_k``
    most likely (0: all) and to the smallest set holding ``top_p`` of the
    probability (1.0: all), seeded by ``seed``. The course samples with the
    defaults: the model's own distribution, untouched, so what is sampled is
    what the model learned.
    """

    max_new_tokens: int = 100
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def greedy(self) -> "Decoding":
        return replace(self, do_sample=False)

    def sampled(self) -> "Decoding":
        return replace(self, do_sample=True)

    def sampling(self) -> dict[str, float]:
        """The settings that shape the distribution a sample is drawn from (for reports)."""
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}


SMALL_MODEL = 10_000_000  # parameters; below this, decoding on a CPU uses one thread


# ----------------------------------------------------------------- devices and threads


def place(model: GPT, device: str | torch.device | None) -> torch.device:
    """Where to compute: the given device (the model moves there) or where the model already is."""
    if device is None:
        return next(model.parameters()).device
    device = torch.device(device)
    model.to(device)
    return device


@contextlib.contextmanager
def decoding_threads(model: GPT, device: torch.device) -> Iterator[None]:
    """One CPU thread while a small model decodes, then the previous setting again.

    A decoding step of the lesson model multiplies a handful of 64-wide rows:
    far too little work to share between threads, so a second thread only
    adds a wait at every step, and a long one when other programs hold the
    cores. Measured on the 2-core course machine with other jobs running,
    greedy decoding of 16 x 60 tokens took 0.27 s on one thread and 2-9 s on
    two. Models of 10M parameters and more (gpt2 has 124M) keep every thread.
    """
    small = device.type == "cpu" and sum(p.numel() for p in model.parameters()) < SMALL_MODEL
    before = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


def _scored_loss(model: GPT, batch: Mapping[str, torch.Tensor], chunk: int) -> tuple[float, int]:
    """Summed next-token loss and the number of scored tokens of one batch.

    Uses the chunked loss of :mod:`helpers.model`, the very computation the
    training loop validates with: only tokens with a label are projected onto
    the vocabulary, so a long instruction prompt costs no output-layer work.
    """
    hidden, _, _ = model.hidden_states(batch["input_ids"], attention_mask=batch.get("attention_mask"),
                                       position_ids=batch.get("position_ids"))
    loss_sum, count = lm_loss(hidden, model.lm_head.weight, batch["labels"], chunk)
    return float(loss_sum), int(count)


def _sum_losses(model, batches, n_batches: int, device, progress: bool, desc: str) -> tuple[float, int]:
    chunk = default_loss_chunk(device.type)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in progress_bar(batches, total=n_batches, desc=desc, unit="batch", disable=not progress, leave=False):
            batch = {k: v.to(device) if v is not None else None for k, v in batch.items()}
            loss_sum, n = _scored_loss(model, batch, chunk)
            total += loss_sum
            count += n
    return total, count


# ----------------------------------------------------------------- perplexity


def perplexity(model: GPT, batches_source: TokenBlocks | InstructionSet, *,
               batch_size: int = 32, device: str | torch.device | None = None,
               progress: bool = True) -> dict[str, float]:
    """Token-weighted mean next-token loss over all of ``batches_source``, and its exp.

    ``TokenBlocks`` (pretraining data): every token of a block but the first
    is predicted. ``InstructionSet`` (finetuning data): only response tokens
    are scored, the prompt carries label -100, as in training; examples are
    right-padded per batch and padding is masked. The loss is the sum over
    every scored token divided by their number (Trainer's ``eval_loss`` is the
    same for equal-length blocks; for instruction data it averages batch
    means instead). Returns ``loss`` (nats per token), ``perplexity`` and
    ``tokens`` (how many were scored).
    """
    device = place(model, device)
    if isinstance(batches_source, TokenBlocks):
        array = batches_source.array
        n = len(array)

        def blocks():
            for start in range(0, n, batch_size):
                ids = torch.from_numpy(np.asarray(array[start:start + batch_size]).astype(np.int64))
                yield {"input_ids": ids, "attention_mask": None, "labels": ids}

        batches = blocks()
    elif isinstance(batches_source, InstructionSet):
        examples = batches_source.examples
        n = len(examples)
        pad = model.config.eos_token_id or 0  # masked out; any valid id will do
        offset = batches_source.position_offset
        batches = (pad_batch(examples[start:start + batch_size], pad, offset) for start in range(0, n, batch_size))
    else:
        raise TypeError(f"perplexity expects TokenBlocks or InstructionSet, got {type(batches_source).__name__}")
    if n == 0:
        raise ValueError("nothing to measure: the data set is empty")
    total, count = _sum_losses(model, batches, math.ceil(n / batch_size), device, progress, "perplexity")
    loss = total / count
    return {"loss": loss, "perplexity": perplexity_from_loss(loss), "tokens": count}


def text_perplexity(model: GPT, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *,
                    block_size: int = 128, batch_size: int = 16, device: str | torch.device | None = None,
                    progress: bool = True) -> dict[str, float]:
    """Perplexity of raw texts under a model and its own tokenizer, per token and per word.

    Per-token perplexity cannot compare two tokenizers: gpt2 splits a story
    into pieces of a 50257-token vocabulary, the lesson model into pieces of a
    2048-token story BPE, so "one token" is a different amount of text. The
    total surprise of a text in nats, ``-log p(text)``, does not depend on
    how it was cut, so ``word_perplexity = exp(total nats / words)``, with
    words counted by whitespace, puts both models on one scale.

    Each text is preceded by the end-of-text token (as a story follows one in
    training), so its first token is predicted too, and it is cut into
    windows of ``block_size`` tokens that overlap by one: every token of the
    text is predicted exactly once, with at most ``block_size - 1`` tokens of
    context. The end-of-text after the text is not scored (it is no word).
    """
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    device = place(model, device)
    eos = tokenizer.eos_token_id
    windows: list[dict[str, list[int]]] = []
    words = tokens = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        words += len(text.split())
        tokens += len(ids)
        stream = [eos] + ids
        for start in range(0, len(ids), block_size - 1):
            window = stream[start:start + block_size]
            windows.append({"input_ids": window, "labels": window})
    if tokens == 0 or words == 0:
        raise ValueError("nothing to measure: the texts hold no words")
    batches = (pad_batch(windows[i:i + batch_size], eos) for i in range(0, len(windows), batch_size))
    nats, count = _sum_losses(model, batches, math.ceil(len(windows) / batch_size), device, progress,
                              "text perplexity")
    return {"loss": nats / count, "token_perplexity": perplexity_from_loss(nats / count),
            "word_perplexity": perplexity_from_loss(nats / words), "nats": nats,
            "tokens": count, "words": words, "texts": len(texts)}


# ----------------------------------------------------------------- generation


def generate(model: GPT, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
             decoding: Decoding = Decoding(), *, batch_size: int = 16, position_offset: int = 0,
             device: str | torch.device | None = None, progress: bool = True) -> list[str]:
    """Continuations of ``prompts`` (the new text only), decoded by :func:`helpers.gpt.generate` as ``decoding`` says.

    Sampled draws come from a generator seeded with ``decoding.seed``, so the
    same seed and batch size give the same texts and the caller's random
    state is untouched. Prompts of a batch are left-padded with end-of-text
    (GPT-2 has no padding token) under an attention mask; a sequence stops at
    end-of-text, which is not part of the returned text. An empty prompt
    starts from end-of-text. On a CPU a model under 10M parameters decodes on
    one thread (faster). ``position_offset`` reads each prompt that many
    positions further right, as a model finetuned with ``data.position_offset``
    was trained.
    """
    device = place(model, device)
    model.eval()
    eos = tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] or [eos] for p in prompts]
    temperature = decoding.temperature if decoding.do_sample else 0.0
    generator = torch.Generator(device=device).manual_seed(decoding.seed)
    texts: list[str] = []
    with decoding_threads(model, device):
        starts = range(0, len(encoded), batch_size)
        for start in progress_bar(starts, desc="generating", unit="batch", disable=not progress, leave=False):
            chunk = encoded[start:start + batch_size]
            width = max(len(ids) for ids in chunk)
            ids = torch.full((len(chunk), width), eos, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, prompt_ids in enumerate(chunk):
                ids[row, width - len(prompt_ids):] = torch.tensor(prompt_ids)
                mask[row, width - len(prompt_ids):] = 1
            out = decode(model, ids.to(device), decoding.max_new_tokens, attention_mask=mask.to(device),
                         position_offset=position_offset, temperature=temperature, top_k=decoding.top_k,
                         top_p=decoding.top_p, generator=generator, eos_token_id=eos)
            for row in out[:, width:].tolist():
                if eos in row:
                    row = row[:row.index(eos)]
                texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts


def load_run(run_dir: str | Path, profile: Profile, device: str) -> tuple[GPT, PreTrainedTokenizerBase]:
    """The model of a run folder on ``device``, in eval mode, with the tokenizer saved beside it.

    A bare model folder without tokenizer files gets the profile's tokenizer.
    """
    run_dir = Path(run_dir)
    model = load_model(run_dir).to(device).eval()
    if (run_dir / "tokenizer.json").exists() or (run_dir / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    else:
        tokenizer = load_tokenizer(profile.data)
    return model, tokenizer
