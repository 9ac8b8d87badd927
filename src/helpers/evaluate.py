"""Measuring a trained model the ways the paper does, and a few ways it could not.

The paper judges its 3.6M-parameter GPT-2 by validation perplexity (10.18
after pretraining, 394.8 after instruction tuning), by reading sampled text,
by GPT-3.5 grades, and by setting it beside gpt2 (124M), which it says repeats
itself where the small model does not. Its conclusion is an order of
learning: grammar first, then the template of an answer, hardly any logic.

This module turns each of those into a number that can be recomputed:

* :func:`perplexity` on the exact blocks or instruction examples that training
  validated on, and :func:`text_perplexity`, which also reports a per-word
  perplexity so that models with different tokenizers can be compared;
* :func:`generate`, greedy or seeded sampling, on :data:`PAPER_PROMPTS` or on
  beginnings of held-out stories;
* :func:`repetition` (distinct n-grams, repeated 4-grams) for the paper's claim
  about gpt2's loops;
* :func:`grammar_share`, :func:`consistency_share` and :func:`qa_accuracy`
  (exact answers, and answers of the right form: the "template"), which the
  embedded story corpus can check exactly, and :func:`learning_order`, which
  measures them at every checkpoint;
* :func:`load_comparison` and :func:`compare_models` for the gpt2 comparison;
* :func:`evaluate_run`, which does all of it for one run folder and writes
  ``eval.json`` and ``eval.md`` beside the model.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import socket
import string
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence
from urllib.parse import urlparse

from .config import Profile
from .data import format_prompt

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .data import InstructionSet, TokenBlocks
    from .stories import Story

__all__ = [
    "PAPER_PERPLEXITY",
    "PAPER_PROMPTS",
    "SAMPLING",
    "DEFAULT_SAMPLES",
    "perplexity",
    "text_perplexity",
    "generate",
    "repetition",
    "repetition_table",
    "grammar_share",
    "consistency_share",
    "normalise_answer",
    "answer_fits_kind",
    "qa_accuracy",
    "learning_order",
    "load_comparison",
    "compare_models",
    "evaluate_run",
]

# The paper's two perplexities: section 4.4 (pretrained, TinyStories
# validation) and section 5.3 (finetuned, the held-out tenth of Alpaca).
PAPER_PERPLEXITY = {"pretrain": 10.1827, "finetune": 394.8}

# The paper's prompts: the story opening it compares with gpt2 (section 4.4)
# and its two Alpaca instructions (section 5.3), in its own template.
PAPER_PROMPTS = {
    "story": "Once upon a time,",
    "healthy_tips": format_prompt({"instruction": "Give three tips for staying healthy.", "input": ""}),
    "concise_sentence": format_prompt({
        "instruction": "Edit the following sentence to make it more concise.",
        "input": "He ran to the bus stop in order to catch the bus that was due to arrive in five minutes.",
    }),
}

# Sampling draws from the model's own distribution, untouched (no top-k, no
# nucleus), so what is sampled is what the model learned.
SAMPLING = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}

# Generations per prompt set when evaluate_run is not told otherwise.
DEFAULT_SAMPLES = 16

STORY_SENTENCES = 3  # sentences of a held-out story given as the prompt
SMALL_MODEL = 10_000_000  # parameters; below this, decoding on a CPU uses one thread
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


# ----------------------------------------------------------------- small helpers


def _device(model: "PreTrainedModel", device: "str | torch.device | None") -> "torch.device":
    """Where to compute: the given device (the model moves there) or where the model already is."""
    import torch

    if device is None:
        return next(model.parameters()).device
    device = torch.device(device)
    model.to(device)
    return device


@contextlib.contextmanager
def _decoding_threads(model: "PreTrainedModel", device: "torch.device"):
    """One CPU thread while a small model decodes, then the previous setting again.

    A decoding step of the lesson model multiplies a handful of 64-wide rows:
    far too little work to share between threads, so a second thread only
    adds a wait at every step, and a long one when other programs hold the
    cores. Measured on the 2-core course machine with other jobs running,
    greedy decoding of 16 x 60 tokens took 0.27 s on one thread and 2-9 s on
    two. Models of 10M parameters and more (gpt2 has 124M) keep every thread.
    """
    import torch

    small = device.type == "cpu" and sum(p.numel() for p in model.parameters()) < SMALL_MODEL
    before = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _scored_loss(model: "PreTrainedModel", batch: Mapping[str, "torch.Tensor"], chunk: int) -> tuple[float, int]:
    """Summed next-token loss and the number of scored tokens of one batch.

    Uses the chunked loss of :mod:`helpers.model`, the very computation the
    training loop validates with: only tokens with a label are projected onto
    the vocabulary, so a long instruction prompt costs no output-layer work.
    """
    from .model import lm_loss

    outputs = model.base_model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"))
    hidden = outputs.last_hidden_state
    loss_sum, count = lm_loss(hidden, model.get_output_embeddings().weight, batch["labels"], chunk)
    return float(loss_sum), int(count)


def _sum_losses(model, batches, n_batches: int, device, progress: bool, desc: str) -> tuple[float, int]:
    import torch
    from tqdm.auto import tqdm

    from .model import default_loss_chunk

    chunk = default_loss_chunk(device.type)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in tqdm(batches, total=n_batches, desc=desc, unit="batch", disable=not progress, leave=False):
            batch = {k: v.to(device) if v is not None else None for k, v in batch.items()}
            loss_sum, n = _scored_loss(model, batch, chunk)
            total += loss_sum
            count += n
    return total, count


# ----------------------------------------------------------------- perplexity


def perplexity(model: "PreTrainedModel", batches_source: "TokenBlocks | InstructionSet", *,
               batch_size: int = 32, device: "str | torch.device | None" = None,
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
    import numpy as np
    import torch

    from .data import InstructionSet, TokenBlocks, pad_batch

    device = _device(model, device)
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
        batches = (pad_batch(examples[start:start + batch_size], pad) for start in range(0, n, batch_size))
    else:
        raise TypeError(f"perplexity expects TokenBlocks or InstructionSet, got {type(batches_source).__name__}")
    if n == 0:
        raise ValueError("nothing to measure: the data set is empty")
    total, count = _sum_losses(model, batches, math.ceil(n / batch_size), device, progress, "perplexity")
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": count}


def text_perplexity(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", texts: Sequence[str], *,
                    block_size: int = 128, batch_size: int = 16, device: "str | torch.device | None" = None,
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
    from .data import pad_batch

    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    device = _device(model, device)
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
    return {"loss": nats / count, "token_perplexity": math.exp(min(nats / count, 700.0)),
            "word_perplexity": math.exp(min(nats / words, 700.0)), "nats": nats,
            "tokens": count, "words": words, "texts": len(texts)}


# ----------------------------------------------------------------- generation


def generate(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", prompts: Sequence[str], *,
             max_new_tokens: int = 100, do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, seed: int = 0, batch_size: int = 16,
             device: "str | torch.device | None" = None, progress: bool = True) -> list[str]:
    """Continuations of ``prompts`` (the new text only), through ``model.generate``.

    Greedy by default; with ``do_sample`` the draws come from
    ``torch.manual_seed(seed)`` inside a forked random state, so the same
    seed and batch size give the same texts and the caller's random state is
    untouched. ``top_k=0`` and ``top_p=1.0`` leave the distribution as it is.
    Prompts of a batch are left-padded with end-of-text (GPT-2 has no padding
    token) under an attention mask; a sequence stops at end-of-text, which is
    not part of the returned text. An empty prompt starts from end-of-text.
    On a CPU a model under 10M parameters decodes on one thread (faster).
    """
    import torch
    from tqdm.auto import tqdm

    device = _device(model, device)
    model.eval()
    eos = tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] or [eos] for p in prompts]
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    longest = max((len(ids) for ids in encoded), default=0)
    if limit is not None and longest + max_new_tokens > limit:
        raise ValueError(f"a prompt of {longest} tokens plus {max_new_tokens} new tokens exceeds the "
                         f"model's {limit} positions")
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                               "pad_token_id": eos, "eos_token_id": eos}
    if do_sample:
        options.update(temperature=temperature, top_k=top_k, top_p=top_p)
    texts: list[str] = []
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork), torch.no_grad(), _decoding_threads(model, device):
        torch.manual_seed(seed)
        starts = range(0, len(encoded), batch_size)
        for start in tqdm(starts, desc="generating", unit="batch", disable=not progress, leave=False):
            chunk = encoded[start:start + batch_size]
            width = max(len(ids) for ids in chunk)
            ids = torch.full((len(chunk), width), eos, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, prompt_ids in enumerate(chunk):
                ids[row, width - len(prompt_ids):] = torch.tensor(prompt_ids)
                mask[row, width - len(prompt_ids):] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **options)
            for row in out[:, width:].tolist():
                if eos in row:
                    row = row[:row.index(eos)]
                texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts


# ----------------------------------------------------------------- repetition


_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def _words(text: str) -> list[str]:
    """Lower-cased words; punctuation is dropped, inner apostrophes kept ("don't")."""
    return _WORD.findall(text.lower())


def repetition(text: str) -> dict[str, float | int | None]:
    """How much a text repeats itself.

    ``distinct_n`` is the number of different word n-grams over the number of
    n-grams (1.0: nothing repeats); ``repeated_4gram_share`` is the share of
    4-gram occurrences that repeat a 4-gram seen earlier in the same text
    (0.0: no phrase comes back). Words are lower-cased and punctuation is
    ignored. A text too short for any n-gram gets ``None`` for that measure.
    """
    words = _words(text)
    out: dict[str, float | int | None] = {"words": len(words)}
    for n in (1, 2, 3, 4):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        distinct = len(set(grams)) / len(grams) if grams else None
        if n < 4:
            out[f"distinct_{n}"] = distinct
        else:
            out["repeated_4gram_share"] = None if distinct is None else 1.0 - distinct
    return out


def repetition_table(texts_by_model: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """One row per model: :func:`repetition` measures averaged over its texts.

    A measure that is undefined for a text (too short) is averaged over the
    other texts; ``None`` when it is undefined for all of them.
    """
    keys = ("distinct_1", "distinct_2", "distinct_3", "repeated_4gram_share")
    rows = []
    for name, texts in texts_by_model.items():
        scores = [repetition(t) for t in texts]
        row: dict[str, Any] = {"model": name, "texts": len(scores)}
        for key in keys:
            values = [s[key] for s in scores if s[key] is not None]
            row[key] = sum(values) / len(values) if values else None
        rows.append(row)
    return rows


# ----------------------------------------------------------------- learning-order measures


_CLOSED = re.compile(r'[.!?]"?$')


def _complete(sentence: str) -> bool:
    """Ends in . ! or ? (perhaps inside a closing quote) with every quote closed."""
    return bool(_CLOSED.search(sentence)) and sentence.count('"') % 2 == 0


def grammar_share(texts: Sequence[str]) -> float:
    """Share of complete generated sentences that the story grammar produces exactly.

    Texts are cut with :func:`helpers.stories.split_sentences`. The last piece
    of a text is left out when it is unfinished (no closing ``.``, ``!`` or
    ``?``, or an open quote): generation was cut off there by
    ``max_new_tokens``, not by the model. Every other piece counts, finished
    or not. With no complete sentence at all the share is 0.0: a model that
    never ends a sentence has not learned to write one.
    """
    from .stories import is_grammatical, split_sentences

    good = total = 0
    for text in texts:
        sentences = split_sentences(text)
        if sentences and not _complete(sentences[-1]):
            sentences = sentences[:-1]
        total += len(sentences)
        good += sum(is_grammatical(s) for s in sentences)
    return good / total if total else 0.0


def _consistent(story: "Story", continuation: str, n_sentences: int) -> bool:
    from .stories import entities

    before, after = entities(story.beginning(n_sentences)), entities(continuation)
    newcomers = after["names"] - before["names"]
    things = before["animals"] | before["objects"]
    return story.hero in after["names"] and len(newcomers) <= 1 and things <= after["animals"] | after["objects"]


def consistency_share(pairs: Sequence[tuple["Story", str]], *, n_sentences: int = STORY_SENTENCES) -> float:
    """Share of continuations that keep the prompt's characters and things.

    A pair is ``(story, continuation)``, where the prompt was
    ``story.beginning(n_sentences)`` (as :func:`helpers.stories.story_prompts`
    makes it) and ``continuation`` is only the generated text. It counts as
    consistent when all three hold, with names, animals and objects found by
    :func:`helpers.stories.entities` (the corpus' words, matched whole):

    1. the hero's name (``story.hero``) occurs in the continuation again;
    2. at most one new name appears (a story may bring in one friend, as the
       corpus' own stories do; a second stranger means the model lost track);
    3. every animal and object named in the prompt is named again.

    Pronouns do not count as a mention; grown-ups ("Mom") are not names. The
    corpus' own continuations score 0.98 on 100 held-out stories (a few never
    mention an object again), so the share reads against a ceiling near 1.
    Returns 0.0 for no pairs.
    """
    if not pairs:
        return 0.0
    return sum(_consistent(story, text, n_sentences) for story, text in pairs) / len(pairs)


_ARTICLE = re.compile(r"^(?:a|an|the)\s+")
_EDGES = string.punctuation + string.whitespace


def normalise_answer(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation, no leading a/an/the."""
    text = " ".join(text.lower().split()).strip(_EDGES)
    return _ARTICLE.sub("", text).strip(_EDGES)


@functools.cache
def _answer_forms() -> dict[str, frozenset[str]]:
    """Every answer the story questions can have, by kind, normalised."""
    from . import stories

    values = stories.SLOT_VALUES
    names = stories.GIRL_NAMES + stories.BOY_NAMES + stories.PARENTS
    things = values["TOY"] + values["FEAR"] + values["MADE"] + values["ANIMAL"] + values["FOOD"]
    coloured = tuple(f"{color} {toy}" for color in values["COLOR"] for toy in values["TOY"])
    forms = {
        "who": names, "where": values["AT_PLACE"] + values["SPOT"],
        "feeling": values["FEELING"] + values["END_FEELING"], "what": things + coloured, "yes_no": ("yes", "no"),
    }
    return {kind: frozenset(normalise_answer(a) for a in answers) for kind, answers in forms.items()}


def answer_fits_kind(kind: str, answer: str) -> bool | None:
    """Whether ``answer`` is the right sort of answer to a story question of ``kind``, true or not.

    "Grandma" fits a who-question; "in the beach" does not fit a
    where-question, "at the beach" would (even about a story set in a park).
    This separates knowing the template of an answer from knowing the
    answer. ``None`` for a kind that is not one of the story questions'.
    """
    forms = _answer_forms().get(kind)
    return None if forms is None else normalise_answer(answer) in forms


def qa_accuracy(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", records: Sequence[dict], *,
                max_new_tokens: int = 16, batch_size: int = 16, examples: int = 5,
                device: "str | torch.device | None" = None, progress: bool = True) -> dict[str, Any]:
    """Exact-match accuracy of greedy answers to instruction records, overall and per ``kind``.

    Each record is asked in the paper's template (:func:`helpers.data.format_prompt`);
    the answer is the generated text up to end-of-text or the first line
    break, compared with ``output`` after :func:`normalise_answer`, so
    "The red ball." matches "a red ball". Records without a ``kind`` are
    counted under "other". ``template`` is the share of answers that have
    the right form for their kind (:func:`answer_fits_kind`), right or wrong,
    over the story-question kinds (``None`` if there are none): the paper's
    "template of an answer" as a number. ``examples`` rows of (question,
    expected, got) are kept to read.
    """
    if not records:
        raise ValueError("qa_accuracy needs at least one record")
    answers = generate(model, tokenizer, [format_prompt(r) for r in records], max_new_tokens=max_new_tokens,
                       batch_size=batch_size, device=device, progress=progress)
    rows = []
    for record, answer in zip(records, answers):
        got = answer.split("\n", 1)[0].strip()
        kind = record.get("kind", "other")
        rows.append({"question": record["instruction"], "kind": kind, "expected": record["output"], "got": got,
                     "correct": normalise_answer(got) == normalise_answer(record["output"]),
                     "fits": answer_fits_kind(kind, got)})

    def tally(group: list[dict]) -> dict[str, Any]:
        right = sum(r["correct"] for r in group)
        judged = [r["fits"] for r in group if r["fits"] is not None]
        return {"accuracy": right / len(group), "correct": right, "n": len(group),
                "template": sum(judged) / len(judged) if judged else None}

    kinds = sorted({r["kind"] for r in rows})
    return {**tally(rows), "by_kind": {k: tally([r for r in rows if r["kind"] == k]) for k in kinds},
            "examples": rows[:examples]}


# ----------------------------------------------------------------- learning order


def _run_info(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _run_profile(run_dir: Path) -> Profile:
    """The settings a run was trained with (the lesson profile for a bare model folder)."""
    from .config import get_profile

    saved = _run_info(run_dir).get("profile")
    return Profile.from_dict(saved) if saved else get_profile("lesson")


def _tokens_at(records: Sequence[dict], step: int) -> int | None:
    """Training tokens seen after ``step``: logged exactly, or interpolated between log lines."""
    points = sorted((r["step"], r["tokens"]) for r in records if r.get("tokens") is not None)
    if not points:
        return None
    below = [p for p in points if p[0] <= step]
    above = [p for p in points if p[0] >= step]
    if below and above:
        (s0, t0), (s1, t1) = below[-1], above[0]
        return t0 if s1 == s0 else round(t0 + (t1 - t0) * (step - s0) / (s1 - s0))
    s, t = (below[-1] if below else above[0])
    return round(t * step / s) if s else t


def _stages(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint in step order, then the final model if it is newer."""
    found = sorted((int(p.name.split("-", 1)[1]), p) for p in run_dir.glob("checkpoint-*")
                   if p.name.split("-", 1)[1].isdigit() and (p / "config.json").exists())
    final_step = _run_info(run_dir).get("total_steps")
    if _has_model(run_dir) and final_step is not None and (not found or found[-1][0] < final_step):
        found.append((int(final_step), run_dir))
    return found


def _story_measures(model, tokenizer, prompts, *, max_new_tokens: int, do_sample: bool, seed: int,
                    device) -> dict[str, float]:
    continuations = generate(model, tokenizer, [b for b, _ in prompts], max_new_tokens=max_new_tokens,
                             do_sample=do_sample, seed=seed, device=device, progress=False, **SAMPLING)
    return {"grammar": grammar_share(continuations),
            "consistency": consistency_share([(s, c) for (_, s), c in zip(prompts, continuations)])}


def learning_order(pretrain_run: str | Path, *, finetune_run: str | Path | None = None, prompts: int = 32,
                   questions: int = 32, max_new_tokens: int = 60, do_sample: bool = True, seed: int = 0,
                   profile: Profile | None = None, device: str | None = None,
                   progress: bool = True) -> list[dict[str, Any]]:
    """Grammar, consistency and answer accuracy at every checkpoint: what is learned when.

    For each ``checkpoint-N`` of ``pretrain_run`` (and its final model when no
    checkpoint has its step), ``prompts`` beginnings of held-out stories are
    continued (sampled with ``seed``, or greedy) and measured with
    :func:`grammar_share` and :func:`consistency_share`. Each row holds
    ``stage``, ``step``, ``tokens`` (training tokens seen, from
    ``metrics.jsonl``) and the two shares. With ``finetune_run``, a row at
    finetuning step 0 measures the model it started from (its ``init``), and
    its checkpoints follow, their ``tokens`` counted on top of the whole
    pretraining, each with ``answers`` (exact-match accuracy) and
    ``answer_template`` (answers of the right form) from :func:`qa_accuracy`
    on ``questions`` held-out story questions (both ``None`` when the run's
    instructions are not the embedded story questions). ``profile``
    defaults to each run's own.
    """
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from .data import load_instructions
    from .model import load_model
    from .stories import story_prompts
    from .train import read_metrics

    pretrain_run = Path(pretrain_run)
    runs: list[tuple[str, Path]] = [("pretrain", pretrain_run)]
    if finetune_run is not None:
        runs.append(("finetune", Path(finetune_run)))
    for _, run in runs:
        _check_run(run)
    plan = [(stage, run, step, folder) for stage, run in runs[:1] for step, folder in _stages(run)]
    for stage, run in runs[1:]:  # step 0 is where finetuning started: no answer taught yet
        init = Path(_run_info(run).get("init") or pretrain_run)
        plan.append((stage, run, 0, init if _has_model(init) else pretrain_run))  # a relative init may not resolve here
        plan += [(stage, run, step, folder) for step, folder in _stages(run)]
    pre_records = read_metrics(pretrain_run)
    pre_total = _tokens_at(pre_records, max(r["step"] for r in pre_records)) or 0
    rows: list[dict[str, Any]] = []
    cache: dict[Path, tuple] = {}
    for stage, run, step, folder in tqdm(plan, desc="learning order", unit="checkpoint", disable=not progress):
        if run not in cache:
            run_profile = profile or _run_profile(run)
            records = read_metrics(run)
            qa = None
            if stage == "finetune" and run_profile.data.instructions == "embedded":
                qa = load_instructions(run_profile.data)[1][:questions]
            story_set = story_prompts(prompts, seed=run_profile.data.corpus_seed, n_sentences=STORY_SENTENCES)
            cache[run] = (AutoTokenizer.from_pretrained(str(run)), records, qa, story_set,
                          _resolve_device(device or run_profile.device))
        tokenizer, records, qa, story_set, dev = cache[run]
        model = load_model(folder).to(dev)
        tokens = 0 if step == 0 else _tokens_at(records, step)
        row: dict[str, Any] = {"stage": stage, "step": step,
                               "tokens": tokens if stage == "pretrain" else pre_total + (tokens or 0)}
        if stage == "finetune":
            answered = qa_accuracy(model, tokenizer, qa, progress=False) if qa else {}
            row.update(answers=answered.get("accuracy"), answer_template=answered.get("template"))
        row.update(_story_measures(model, tokenizer, story_set, max_new_tokens=max_new_tokens,
                                   do_sample=do_sample, seed=seed, device=dev))
        rows.append(row)
    return rows


# ----------------------------------------------------------------- the gpt2 comparison


def _hub_reachable(timeout: float = 3.0) -> str | None:
    """``None`` when the hub answers a TCP connection within ``timeout`` s, else why not.

    The attempt runs in a thread, so even a name lookup that hangs (no DNS
    answer at all) costs at most ``timeout`` seconds.
    """
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(f"{host} unreachable ({err.__class__.__name__}: {err})")

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return outcome[0] if outcome else f"{host} did not answer within {timeout:g} s"


def load_comparison(name_or_path: str | Path) -> "tuple[PreTrainedModel, PreTrainedTokenizerBase] | None":
    """A model to compare with (``"gpt2"``, another hub id, or a folder), or ``None``.

    Order: a local folder is loaded as it is; a hub id is first looked up in
    the local Hugging Face cache (no network). Only if it is not there, and
    ``HF_HUB_OFFLINE`` is not set, is the hub probed with one 3-second
    connection and then downloaded from. Without this, an unreachable hub
    costs ``from_pretrained`` about 23 s of retries. When nothing loads, one
    line saying why the comparison is skipped is printed and ``None``
    returned, so a notebook goes on.
    """
    from huggingface_hub import constants
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .model import hf_quiet

    source = str(name_or_path)

    def attempt(**options):
        with hf_quiet():
            model = AutoModelForCausalLM.from_pretrained(source, **options)
            tokenizer = AutoTokenizer.from_pretrained(source, **options)
        return model.eval(), tokenizer

    def skip(reason: str) -> None:
        print(f"Comparison with {source!r} skipped: {reason}.")

    def why(err: Exception) -> str:
        first = (str(err).strip().splitlines() or [""])[0]
        return f"{err.__class__.__name__}: {first}" if first else err.__class__.__name__

    # Whatever stops a model from loading (missing files, a broken download,
    # a wrong architecture) means no comparison, not a failed lesson.
    path = Path(source).expanduser()
    if path.is_dir():
        try:
            return attempt()
        except Exception as err:  # noqa: BLE001
            return skip(f"the folder holds no loadable model ({why(err)})")
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        return skip("no such folder")
    try:
        return attempt(local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the cache; the hub comes next
        pass
    if constants.HF_HUB_OFFLINE:
        return skip("it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    problem = _hub_reachable()
    if problem:
        return skip(f"it is not in the local Hugging Face cache and the hub is unreachable: {problem}")
    try:
        return attempt()
    except Exception as err:  # noqa: BLE001
        return skip(f"the hub could not provide it ({why(err)})")


def compare_models(models: Mapping[str, tuple["PreTrainedModel", "PreTrainedTokenizerBase"]],
                   texts: Sequence[str], prompts: Sequence[str], *, max_new_tokens: int = 100, seed: int = 0,
                   judge: bool = False, judge_model: str = "gpt-3.5-turbo", judge_cache: str | Path | None = None,
                   device: "str | torch.device | None" = None, progress: bool = True) -> dict[str, Any]:
    """The same measurements for several models, each with its own tokenizer.

    Per model: :func:`text_perplexity` on ``texts`` (compare the
    ``word_perplexity``; token perplexities use different tokens), greedy and
    seeded sampled continuations of the same ``prompts``, and their
    :func:`repetition_table` rows. With ``judge``, the greedy continuations
    are graded by :func:`helpers.judge.judge_many` in one call for all models
    (so an unconfigured judge prints its skip line once).
    """
    from .judge import judge_many, summarise

    out: dict[str, Any] = {"prompts": list(prompts), "texts": len(texts), "perplexity": {},
                           "generations": {}, "repetition": [], "judge": None}
    for name, (model, tokenizer) in models.items():
        out["perplexity"][name] = text_perplexity(model, tokenizer, texts, device=device, progress=progress)
        greedy = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, device=device,
                          progress=progress)
        sampled = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, do_sample=True,
                           seed=seed, device=device, progress=progress, **SAMPLING)
        out["generations"][name] = {"greedy": greedy, "sampled": sampled}
        out["repetition"] += repetition_table({f"{name}, greedy": greedy, f"{name}, sampled": sampled})
    if judge:
        names = list(models)
        items = [(p, c) for name in names for p, c in zip(prompts, out["generations"][name]["greedy"])]
        grades = judge_many(items, model=judge_model, cache_dir=judge_cache)
        if grades:
            per = len(prompts)
            out["judge"] = {name: summarise(grades[i * per:(i + 1) * per]) for i, name in enumerate(names)}
    return out


# ----------------------------------------------------------------- one run, end to end


def _has_model(folder: Path) -> bool:
    return (folder / "config.json").exists() and any((folder / f).exists() for f in WEIGHT_FILES)


def _check_run(run_dir: Path) -> None:
    """Raise ``RunError`` naming the folder and the command that makes what is missing."""
    from .train import RunError

    if not run_dir.is_dir():
        raise RunError(f"run folder {str(run_dir)!r} does not exist; train a model first: "
                       f"python -m helpers pretrain --out {run_dir}")
    if _has_model(run_dir):
        return
    info = _run_info(run_dir)
    stage = info.get("stage")
    if stage is not None:
        init = f" --init {info['init']}" if info.get("init") else ""
        raise RunError(f"run folder {str(run_dir)!r} has no final model (its {stage} run did not finish); "
                       f"finish it: python -m helpers {stage}{init} --out {run_dir} --resume")
    raise RunError(f"folder {str(run_dir)!r} holds no model (config.json and model.safetensors); "
                   f"train one first: python -m helpers pretrain --out {run_dir}")


def _load_run(run_dir: Path, profile: Profile, device: str):
    from transformers import AutoTokenizer

    from .data import load_tokenizer
    from .model import load_model

    model = load_model(run_dir).to(device).eval()
    if (run_dir / "tokenizer.json").exists() or (run_dir / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(run_dir))
    else:
        tokenizer = load_tokenizer(profile.data)
    return model, tokenizer


def _story_generations(model, tokenizer, profile: Profile, samples: int, max_new_tokens: int, seed: int,
                       device: str, progress: bool) -> tuple[dict, dict, dict]:
    """The paper's story prompt and held-out beginnings, greedy and sampled, with their measures."""
    from .stories import story_prompts

    opening = PAPER_PROMPTS["story"]
    paper = {"prompt": opening,
             "greedy": generate(model, tokenizer, [opening], max_new_tokens=max_new_tokens, device=device,
                                progress=False)[0],
             "sampled": generate(model, tokenizer, [opening] * 3, max_new_tokens=max_new_tokens, do_sample=True,
                                 seed=seed, device=device, progress=False, **SAMPLING)}
    prompts = story_prompts(samples, seed=profile.data.corpus_seed, n_sentences=STORY_SENTENCES)
    beginnings = [b for b, _ in prompts]
    decoded = {
        "greedy": generate(model, tokenizer, beginnings, max_new_tokens=max_new_tokens, device=device,
                           progress=progress),
        "sampled": generate(model, tokenizer, beginnings, max_new_tokens=max_new_tokens, do_sample=True,
                            seed=seed, device=device, progress=progress, **SAMPLING),
    }
    stories = [{"beginning": b, "hero": s.hero, "greedy": g, "sampled": x}
               for (b, s), g, x in zip(prompts, decoded["greedy"], decoded["sampled"])]
    grammar = {k: grammar_share(v) for k, v in decoded.items()}
    consistency = {k: consistency_share([(s, c) for (_, s), c in zip(prompts, v)]) for k, v in decoded.items()}
    return {"paper_prompt": paper, "stories": stories}, grammar, consistency


def evaluate_run(run_dir: str | Path, profile: Profile, *, judge: bool = False, judge_model: str = "gpt-3.5-turbo",
                 compare: str | None = None, learning_order: bool = False, samples: int | None = None,
                 max_new_tokens: int = 100, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Evaluate one run folder as the paper does and write ``eval.json`` and ``eval.md`` into it.

    The stage comes from ``run.json`` (a bare model folder counts as
    pretrained). Pretraining runs: perplexity on the profile's validation
    blocks (the paper's 10.18), generations for the paper's story prompt and
    ``samples`` held-out beginnings, repetition, grammar and consistency
    shares. Finetuning runs: perplexity on the held-out instructions (the
    paper's 394.8), answers to the paper's two instructions, story-question
    accuracy per kind (embedded instructions only) and the same story
    measurements. Optional: GPT-3.5-style grades (``judge``; one skip line
    when no judge is configured), a comparison model (``compare``, e.g.
    ``"gpt2"``; one skip line when unavailable) and the learning order over
    checkpoints (also drawn into ``learning_order.png``). The API key is
    never written. Returns the report with ``json_path`` and ``markdown_path``.
    """
    from .data import finetuning_examples, load_instructions, load_stories, pretraining_blocks
    from .judge import judge_many, judge_available, summarise

    started = time.perf_counter()
    run_dir = Path(run_dir)
    _check_run(run_dir)
    info = _run_info(run_dir)
    stage = info.get("stage", "pretrain")
    samples = samples or DEFAULT_SAMPLES
    device = _resolve_device(profile.device)
    timings: dict[str, float] = {}
    mark = [started]

    def lap(name: str) -> None:
        """Seconds since the previous lap, under ``name``."""
        now = time.perf_counter()
        timings[name], mark[0] = round(now - mark[0], 3), now

    model, tokenizer = _load_run(run_dir, profile, device)
    lap("load")

    report: dict[str, Any] = {
        "run": str(run_dir), "stage": stage,
        "settings": {"profile": profile.name, "samples": samples, "max_new_tokens": max_new_tokens, "seed": seed,
                     "sampling": SAMPLING, "story_sentences": STORY_SENTENCES, "judge": judge,
                     "judge_model": judge_model if judge else None, "compare": compare,
                     "learning_order": learning_order, "device": device, "data": profile.to_dict()["data"]},
        "model": {"parameters": sum(p.numel() for p in model.parameters()),
                  "vocab_size": model.config.vocab_size, "trained_steps": info.get("total_steps")},
        "paper": {"perplexity": PAPER_PERPLEXITY[stage]},
        "perplexity": None, "generations": None, "repetition": None, "grammar": None, "consistency": None,
        "instructions": None, "qa": None, "judge": None, "comparison": None, "learning_order": None,
    }
    if stage == "finetune":
        validation = finetuning_examples(profile.data, tokenizer)[1]
        measured = perplexity(model, validation, batch_size=profile.finetune.eval_batch_size, progress=progress)
        report["perplexity"] = {**measured, "data": "held-out instructions", "examples": len(validation)}
    else:
        validation = pretraining_blocks(profile.data, "validation", tokenizer, progress=progress)
        measured = perplexity(model, validation, batch_size=profile.pretrain.eval_batch_size, progress=progress)
        report["perplexity"] = {**measured, "data": "validation stories", "blocks": len(validation)}
    lap("perplexity")

    if stage == "finetune":
        names = [k for k in PAPER_PROMPTS if k != "story"]
        prompts = [PAPER_PROMPTS[k] for k in names]
        greedy = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, device=device, progress=False)
        sampled = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, do_sample=True, seed=seed,
                           device=device, progress=False, **SAMPLING)
        report["instructions"] = [{"name": n, "prompt": p, "greedy": g, "sampled": s}
                                  for n, p, g, s in zip(names, prompts, greedy, sampled)]
        if profile.data.instructions == "embedded":
            records = load_instructions(profile.data)[1][:4 * samples]
            report["qa"] = qa_accuracy(model, tokenizer, records, device=device, progress=progress)
        lap("instructions")

    generations, grammar, consistency = _story_generations(
        model, tokenizer, profile, samples, max_new_tokens, seed, device, progress)
    report.update(generations=generations, grammar=grammar, consistency=consistency,
                  repetition=repetition_table({"greedy": [s["greedy"] for s in generations["stories"]],
                                               "sampled": [s["sampled"] for s in generations["stories"]]}))
    lap("generations")

    if judge:
        items = [(s["beginning"], s["greedy"]) for s in generations["stories"]]
        grades = judge_many(items, model=judge_model, cache_dir=run_dir / "judge-cache")
        report["judge"] = ({"summary": summarise(grades), "grades": [asdict(g) for g in grades]}
                           if grades else {"skipped": "no judge configured (OPENAI_API_KEY / OPENAI_BASE_URL)"})
        lap("judge")

    if compare:
        loaded = load_comparison(compare)
        if loaded is None:
            report["comparison"] = {"skipped": f"{compare!r} could not be loaded"}
        else:
            texts = load_stories(profile.data, "validation")[:8 * samples]
            prompts = ([PAPER_PROMPTS["story"]] + [s["beginning"] for s in generations["stories"]]
                       if stage == "pretrain" else list(PAPER_PROMPTS.values()))
            report["comparison"] = compare_models(
                {"this run": (model, tokenizer), compare: loaded}, texts, prompts, max_new_tokens=max_new_tokens,
                seed=seed, judge=judge and judge_available(), judge_model=judge_model,
                judge_cache=run_dir / "judge-cache", device=device, progress=progress)
        lap("comparison")

    if learning_order:
        report["learning_order"] = _learning_order_section(run_dir, stage, info, profile, samples, seed, device,
                                                           progress)
        lap("learning_order")

    timings["total"] = round(time.perf_counter() - started, 3)
    report["elapsed_s"] = timings
    json_path, markdown_path = run_dir / "eval.json", run_dir / "eval.md"
    report["json_path"], report["markdown_path"] = str(json_path), str(markdown_path)
    _write_text(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _write_text(markdown_path, _markdown(report))
    return report


def _learning_order_section(run_dir: Path, stage: str, info: dict, profile: Profile, samples: int, seed: int,
                            device: str, progress: bool) -> dict[str, Any]:
    """Learning-order rows for this run (and the run it started from) and their figure."""
    from .plots import learning_order_figure

    if stage == "finetune":
        init = Path(info["init"]) if info.get("init") else None
        if init is None or not init.is_dir():
            print(f"Learning order skipped: the pretraining run {str(init)!r} this run started from is not there.")
            return {"skipped": f"pretraining run {str(init)!r} not found"}
        rows = learning_order(init, finetune_run=run_dir, prompts=samples, questions=2 * samples, seed=seed,
                              profile=profile, device=device, progress=progress)
    else:
        rows = learning_order(run_dir, prompts=samples, seed=seed, profile=profile, device=device,
                              progress=progress)
    figure = run_dir / "learning_order.png"
    fig = learning_order_figure(rows, title="What the model learns first", path=figure)
    import matplotlib.pyplot as plt  # only now: plots chooses the backend first

    plt.close(fig)
    return {"rows": rows, "figure": str(figure)}


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file, so a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ----------------------------------------------------------------- markdown


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", "<br>")


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in (text.strip() or "(nothing)").splitlines())


def _markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown tables and quoted generations."""
    from .judge import SCORE_NAMES

    stage = report["stage"]
    ppl = report["perplexity"]
    paper_model = "3.6M GPT-2, TinyStories" if stage == "pretrain" else "3.6M GPT-2 after Alpaca tuning"
    out = [f"# Evaluation of `{report['run']}` ({stage})", "",
           f"{report['model']['parameters']:,} parameters, vocabulary {report['model']['vocab_size']:,}; "
           f"profile `{report['settings']['profile']}`, {report['settings']['samples']} samples, "
           f"{report['settings']['max_new_tokens']} new tokens, seed {report['settings']['seed']}.", "",
           "## Perplexity: paper vs this run", "",
           _table([{"model": f"paper ({paper_model})", "perplexity": report["paper"]["perplexity"]},
                   {"model": f"this run ({ppl['data']})", "loss (nats/token)": ppl["loss"],
                    "perplexity": ppl["perplexity"], "scored tokens": ppl["tokens"]}],
                  ["model", "loss (nats/token)", "perplexity", "scored tokens"]), ""]
    if report["qa"]:
        qa = report["qa"]
        rows = [{"kind": k, **v} for k, v in qa["by_kind"].items()]
        rows.append({"kind": "**all**", **{k: qa[k] for k in ("accuracy", "correct", "n", "template")}})
        out += ["## Story questions (held-out stories)", "",
                "accuracy: exact match; template: answers of the right form for the question, right or wrong.", "",
                _table(rows, ["kind", "accuracy", "correct", "n", "template"]), "",
                _table(qa["examples"], ["question", "expected", "got", "correct"]), ""]
    if report["instructions"]:
        out += ["## The paper's instructions", ""]
        for item in report["instructions"]:
            out += [f"**{item['name']}** (greedy):", "", _quote(item["greedy"]), "",
                    "(sampled):", "", _quote(item["sampled"]), ""]
    gens = report["generations"]
    out += ["## Stories", "", f"Paper prompt `{gens['paper_prompt']['prompt']}`, greedy:", "",
            _quote(gens["paper_prompt"]["prompt"] + gens["paper_prompt"]["greedy"]), ""]
    for text in gens["paper_prompt"]["sampled"]:
        out += ["sampled:", "", _quote(gens["paper_prompt"]["prompt"] + text), ""]
    first = gens["stories"][0]
    out += ["A held-out beginning, continued (greedy, then sampled):", "", _quote(first["beginning"]), "",
            _quote("… " + first["greedy"]), "", _quote("… " + first["sampled"]), "",
            "## Grammar, consistency, repetition", "",
            _table([{"decoding": k, "grammatical sentences": report["grammar"][k],
                     "consistent continuations": report["consistency"][k]} for k in report["grammar"]],
                   ["decoding", "grammatical sentences", "consistent continuations"]), "",
            _table(report["repetition"], ["model", "texts", "distinct_1", "distinct_2", "distinct_3",
                                          "repeated_4gram_share"]), ""]
    judged = report["judge"]
    if judged is not None:
        out += ["## Judge", ""]
        if "skipped" in judged:
            out += [f"Skipped: {judged['skipped']}.", ""]
        else:
            out += [_table([judged["summary"]], [*SCORE_NAMES, "n_items", "n_parsed", "n_failed"]), ""]
    comparison = report["comparison"]
    if comparison is not None:
        out += ["## Comparison", ""]
        if "skipped" in comparison:
            out += [f"Skipped: {comparison['skipped']}.", ""]
        else:
            rows = [{"model": name, **p} for name, p in comparison["perplexity"].items()]
            out += [f"Perplexity on {comparison['texts']} validation stories (each model's own tokenizer; "
                    "compare per word):", "",
                    _table(rows, ["model", "word_perplexity", "token_perplexity", "tokens", "words"]), "",
                    _table(comparison["repetition"], ["model", "texts", "distinct_1", "distinct_2", "distinct_3",
                                                      "repeated_4gram_share"]), ""]
            if comparison["judge"]:
                out += [_table([{"model": n, **s} for n, s in comparison["judge"].items()],
                               ["model", *SCORE_NAMES, "n_parsed"]), ""]
            for name, texts in comparison["generations"].items():
                out += [f"**{name}**, greedy, prompt `{comparison['prompts'][0]}`:", "",
                        _quote(comparison["prompts"][0] + texts["greedy"][0]), ""]
    order = report["learning_order"]
    if order is not None:
        out += ["## Learning order", ""]
        if "skipped" in order:
            out += [f"Skipped: {order['skipped']}.", ""]
        else:
            columns = ["stage", "step", "tokens", "grammar", "consistency", "answers", "answer_template"]
            out += [_table(order["rows"], columns), "",
                    f"![learning order]({Path(order['figure']).name})", ""]
    out += [f"Evaluated in {report['elapsed_s']['total']:.1f} s.", ""]
    return "\n".join(out)
