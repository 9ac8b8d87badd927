"""Asking a model to do something and scoring what it does: answer story questions, continue stories.

Each probe generates with :mod:`helpers.inference` and scores with
:mod:`helpers.text_metrics`, so a lesson, the evaluation of a run and the
learning-order sweep measure a model the same way.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .data import format_prompt
from .inference import SAMPLING, generate
from .paper import PAPER_PROMPTS
from .stories import Story, story_prompts
from .text_metrics import STORY_SENTENCES, consistency_share, grammar_share, score_answers

__all__ = ["qa_accuracy", "story_measures", "story_generations"]


def qa_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[dict], *,
                max_new_tokens: int = 16, batch_size: int = 16, examples: int = 5,
                device: str | torch.device | None = None, progress: bool = True) -> dict[str, Any]:
    """Exact-match accuracy of greedy answers to instruction records, overall and per ``kind``.

    Each record is asked in the paper's template (:func:`helpers.data.format_prompt`)
    and answered greedily; :func:`helpers.text_metrics.score_answers` scores
    the answers (exact match after normalising, and ``template``: the share
    of answers of the right form, the paper's "template of an answer" as a
    number).
    """
    if not records:
        raise ValueError("qa_accuracy needs at least one record")
    answers = generate(model, tokenizer, [format_prompt(r) for r in records], max_new_tokens=max_new_tokens,
                       batch_size=batch_size, device=device, progress=progress)
    return score_answers(records, answers, examples=examples)


def story_measures(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[tuple[str, Story]],
                   *, max_new_tokens: int, do_sample: bool, seed: int,
                   device: str | torch.device | None = None) -> dict[str, float]:
    """Grammar and consistency shares of the model's continuations of ``(beginning, story)`` prompts."""
    continuations = generate(model, tokenizer, [b for b, _ in prompts], max_new_tokens=max_new_tokens,
                             do_sample=do_sample, seed=seed, device=device, progress=False, **SAMPLING)
    return {"grammar": grammar_share(continuations),
            "consistency": consistency_share([(s, c) for (_, s), c in zip(prompts, continuations)])}


def story_generations(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, corpus_seed: int, samples: int,
                      max_new_tokens: int, seed: int, device: str, progress: bool) -> tuple[dict, dict, dict]:
    """The paper's story prompt and ``samples`` held-out beginnings, greedy and sampled, with their measures.

    Returns the generations, then the grammar and consistency shares per decoding.
    """
    opening = PAPER_PROMPTS["story"]
    paper = {"prompt": opening,
             "greedy": generate(model, tokenizer, [opening], max_new_tokens=max_new_tokens, device=device,
                                progress=False)[0],
             "sampled": generate(model, tokenizer, [opening] * 3, max_new_tokens=max_new_tokens, do_sample=True,
                                 seed=seed, device=device, progress=False, **SAMPLING)}
    prompts = story_prompts(samples, seed=corpus_seed, n_sentences=STORY_SENTENCES)
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
