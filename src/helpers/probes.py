"""Asking a model to do something and scoring what it does: answer story questions, continue stories.

Each probe generates with :mod:`helpers.inference` and scores with
:mod:`helpers.text_metrics`, so a lesson, the evaluation of a run and the
learning-order sweep measure a model the same way.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .data import before_verdict, pad_batch
from .inference import Decoding, generate, place
from .stats import share
from .story_cloze import ClozeItem
from .paper import PAPER_STORY_PROMPT
from .prompts import model_prompt
from .stories import story_prompts
from .text_metrics import STORY_SENTENCES, consistency_share, grammar_share, score_answers

__all__ = ["qa_accuracy", "story_generations", "cloze_accuracy", "cloze_accuracies", "verdict_check",
           "last_log_probs"]


def qa_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[dict], *,
                max_new_tokens: int = 16, batch_size: int = 16, examples: int = 5, position_offset: int = 0,
                device: str | torch.device | None = None, progress: bool = True) -> dict[str, Any]:
    """Exact-match accuracy of greedy answers to instruction records, overall and per ``kind``.

    Each record is asked as the model reads it in the paper's template
    (:func:`helpers.prompts.model_prompt`) and answered greedily;
    :func:`helpers.text_metrics.score_answers` scores the answers (exact
    match after normalising, and ``right_form``: the share of answers of the
    form their kind asks for, the paper's "template of an answer" as a number).
    """
    if not records:
        raise ValueError("qa_accuracy needs at least one record")
    prompts = [model_prompt(r) for r in records]
    answers = generate(model, tokenizer, prompts, Decoding(max_new_tokens=max_new_tokens), batch_size=batch_size,
                       position_offset=position_offset, device=device, progress=progress)
    return score_answers(records, answers, examples=examples)


def story_generations(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, corpus_seed: int, samples: int,
                      decoding: Decoding, device: str, progress: bool) -> tuple[dict, dict, dict]:
    """The paper's story prompt and ``samples`` held-out beginnings, greedy and sampled, with their measures.

    ``decoding`` gives the length, the seed and the sampling settings; each
    prompt is continued once greedily and once sampled. Returns the
    generations, then the grammar and consistency shares per decoding.
    """
    greedy, sampled = decoding.greedy(), decoding.sampled()
    opening = PAPER_STORY_PROMPT
    paper = {"prompt": opening,
             "greedy": generate(model, tokenizer, [opening], greedy, device=device, progress=False)[0],
             "sampled": generate(model, tokenizer, [opening] * 3, sampled, device=device, progress=False)}
    prompts = story_prompts(samples, seed=corpus_seed, n_sentences=STORY_SENTENCES)
    beginnings = [b for b, _ in prompts]
    decoded = {"greedy": generate(model, tokenizer, beginnings, greedy, device=device, progress=progress),
               "sampled": generate(model, tokenizer, beginnings, sampled, device=device, progress=progress)}
    stories = [{"beginning": b, "hero": s.hero, "greedy": g, "sampled": x}
               for (b, s), g, x in zip(prompts, decoded["greedy"], decoded["sampled"])]
    grammar = {k: grammar_share(v) for k, v in decoded.items()}
    consistency = {k: consistency_share([(s, c) for (_, s), c in zip(prompts, v)]) for k, v in decoded.items()}
    return {"paper_prompt": paper, "stories": stories}, grammar, consistency


def cloze_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, items: Sequence[ClozeItem], *,
                   batch_size: int = 32, device: str | torch.device | None = None) -> dict[str, Any]:
    """How often the model ranks the story's answer first among the story's candidates, per kind.

    The model reads each item's context (story, line break, cue); a
    candidate's score is the log-probability of its first token after the
    context, which names it uniquely when the candidates start differently;
    when two candidates share a first token, their whole words are scored
    (summed log-probabilities). A tie counts as wrong. Returns, per kind and
    for ``"all"``, the share right with its 95% interval, and the mean
    chance ``1 / candidates``.
    """
    return cloze_accuracies(model, tokenizer, {"items": items}, batch_size=batch_size, device=device)["items"]


def cloze_accuracies(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     sets: Mapping[str, Sequence[ClozeItem]], *, batch_size: int = 32,
                     device: str | torch.device | None = None) -> dict[str, dict[str, Any]]:
    """:func:`cloze_accuracy` of each set of items, every distinct context read once.

    The two cloze designs ask the same blanks after the same contexts and
    differ only in the candidates, so scoring them together halves the work.
    """
    device = place(model, device)
    model.eval()
    items = [item for group in sets.values() for item in group]
    candidates = [" " + c for item in items for c in item.candidates]
    spelled = iter(tokenizer(candidates, add_special_tokens=False)["input_ids"])
    spellings = [[next(spelled) for _ in item.candidates] for item in items]  # each candidate's tokens, per item
    encoded = tokenizer([item.context for item in items], add_special_tokens=False)["input_ids"]
    contexts = [tuple(ids) for ids in encoded]
    distinct = sorted(set(contexts), key=len)  # batches of like lengths pad little
    after, right = {}, []  # next-token log-probabilities after each distinct context; each item right or not
    with torch.no_grad():
        for start in range(0, len(distinct), batch_size):
            batch = distinct[start:start + batch_size]
            after.update(zip(batch, last_log_probs(model, [list(ids) for ids in batch], device)))
        for item, context, spelling in zip(items, contexts, spellings):
            scores = [float(after[context][ids[0]]) for ids in spelling]
            if len({ids[0] for ids in spelling}) < len(spelling):
                scores = _word_log_probs(model, list(context), spelling, device)
            best = max(scores)
            right.append(scores[item.candidates.index(item.answer)] == best and scores.count(best) == 1)
    results, done = {}, 0
    for name, group in sets.items():
        results[name] = _per_kind(group, right[done:done + len(group)])
        done += len(group)
    return results


def verdict_check(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[dict], *,
                  batch_size: int = 64, device: str | torch.device | None = None) -> dict[str, Any]:
    """Can the model tell two words apart when nothing else is asked? Each yes/no record written the compared way
    is read as a verdict drill reads it (:func:`helpers.data.verdict_examples`: end-of-text, the answer cut before
    its verdict, no story, no question); right when the right one of " yes" and " no" is the likelier next token.

    Returns the share right with its 95% interval and, beside it, what
    always saying "no" scores on the same records (chance for a reader
    that cannot compare).
    """
    asked = [record for record in records if "verdict" in record]
    if not asked:
        raise ValueError("verdict_check needs yes/no records written with data.yes_no_fact=compared")
    device = place(model, device)
    model.eval()
    yes, no = (tokenizer(" " + word, add_special_tokens=False)["input_ids"][0] for word in ("yes", "no"))
    contexts = [[tokenizer.eos_token_id] + tokenizer(" " + before_verdict(r["output"]), add_special_tokens=False)[
        "input_ids"] for r in asked]
    right = 0
    with torch.no_grad():
        for start in range(0, len(asked), batch_size):
            after = last_log_probs(model, contexts[start:start + batch_size], device)
            said_yes = (after[:, yes] > after[:, no]).tolist()
            right += sum(s == (r["verdict"] == "yes") for s, r in zip(said_yes, asked[start:start + batch_size]))
    return {**share(right, len(asked)), "always_no": share(sum(r["verdict"] == "no" for r in asked), len(asked))}


def last_log_probs(model: nn.Module, contexts: Sequence[Sequence[int]], device: str | torch.device,
                   position_offset: int = 0) -> torch.Tensor:
    """Next-token log-probabilities after each context (right-padded into one batch), one row per context."""
    batch = pad_batch([{"input_ids": list(ids), "labels": list(ids)} for ids in contexts], pad_id=0,
                      position_offset=position_offset)
    positions = {"position_ids": batch["position_ids"].to(device)} if position_offset else {}
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                   **positions).logits
    ends = torch.tensor([len(ids) - 1 for ids in contexts], device=logits.device)
    return torch.log_softmax(logits[torch.arange(len(contexts), device=logits.device), ends].float(), dim=-1)


def _word_log_probs(model, context: list[int], words: list[list[int]], device) -> list[float]:
    """Each word's summed log-probability after ``context``: the context followed by each word, one padded batch."""
    batch = pad_batch([{"input_ids": context + word, "labels": context + word} for word in words], pad_id=0)
    logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return [float(sum(log_probs[row, len(context) - 1 + k, token] for k, token in enumerate(word)))
            for row, word in enumerate(words)]


def _per_kind(items: Sequence[ClozeItem], right: list[bool]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in [*dict.fromkeys(item.kind for item in items), "all"]:
        chosen = [i for i, item in enumerate(items) if kind in ("all", item.kind)]
        out[kind] = {**share(sum(right[i] for i in chosen), len(chosen)),
                     "chance": sum(items[i].chance for i in chosen) / len(chosen)}
    return out
