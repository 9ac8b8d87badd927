"""Does a model's answer to "who?" lean toward the names in the story? A probe finer than exact answers.

Every model trained so far names the main character 0% of the time. Exact
match cannot tell a model that never looks at the story's names from one
that ranks the right name second behind its favourite. This probe reads the
model's next-token scores at the start of the answer to each who-question
whose answer is a name (main character and friend) and ranks the 200 names
of the story grammar there. Per question: is the right name ranked first
among all names (``right_first``), and is the name ranked first one that
the story mentions and the question does not (``story_first``)? A friend
question names the main character ("Who became Leo's new friend?"), so
echoing the question is not counted as reading the story.

Its floor is a control that must fail: the same questions asked about
another story (each record's text swapped with the next record's about a
different story), scored against the first story's names. A model that
reads the text can then only get ``right_first`` by chance (1 in 200), and
``story_first`` falls to the share of all names the absent story mentions. Its
ceiling is a model that prefers any name it has been shown (tests: a
rigged model scores 100% ``story_first``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from .inference import place
from .probes import last_log_probs
from .prompts import model_prompt
from .stats import share
from .story_grammar import NAMES

__all__ = ["ALL_NAMES", "name_tokens", "swapped_stories", "name_lookup"]

ALL_NAMES: tuple[str, ...] = tuple(name for names in NAMES.values() for name in names)


def name_tokens(tokenizer: PreTrainedTokenizerBase, names: Sequence[str] = ALL_NAMES) -> list[int]:
    """The first token of each name as an answer writes it (after a space); names sharing one cannot be told apart."""
    firsts = [ids[0] for ids in tokenizer([" " + name for name in names], add_special_tokens=False)["input_ids"]]
    if len(set(firsts)) < len(firsts):
        shared = [name for name, first in zip(names, firsts) if firsts.count(first) > 1]
        raise ValueError(f"names start with the same token, so their scores cannot be told apart: {shared[:4]}")
    return firsts


def swapped_stories(records: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Each record with the story of the next record about another story (the first one's for the last)."""
    stories = list(dict.fromkeys(r["input"] for r in records))
    if len(stories) < 2:
        raise ValueError("the story-swapped control needs questions about at least two stories")
    following = {story: stories[(k + 1) % len(stories)] for k, story in enumerate(stories)}
    return [{**record, "input": following[record["input"]]} for record in records]


def _mentioned(text: str, names: Sequence[str]) -> set[str]:
    return {name for name in names if re.search(rf"\b{re.escape(name)}\b", text)}


def name_lookup(model: nn.Module, tokenizer: PreTrainedTokenizerBase, records: Sequence[Mapping[str, str]], *,
                control: bool = False, batch_size: int = 16, position_offset: int = 0,
                device: str | torch.device | None = None) -> dict[str, Any]:
    """Per role (hero, friend) and for both: the shares ``right_first`` and ``story_first`` with 95% intervals,
    their chance levels, and the mean rank of the right name among all names (1 is first).

    Only who-records whose answer is one of :data:`ALL_NAMES` are asked.
    With ``control``, each is asked about another story
    (:func:`swapped_stories`); the right name and the story's names stay those
    of the story the question was written for.
    """
    asked = [r for r in records if r.get("kind") == "who" and r["output"] in ALL_NAMES]
    if not asked:
        raise ValueError("name_lookup needs who-questions whose answers are names")
    shown = swapped_stories(asked) if control else asked
    device = place(model, device)
    model.eval()
    tokens = torch.tensor(name_tokens(tokenizer))
    contexts = tokenizer([model_prompt(r) for r in shown], add_special_tokens=False)["input_ids"]
    scores = []
    with torch.no_grad():
        for start in range(0, len(contexts), batch_size):
            log_probs = last_log_probs(model, contexts[start:start + batch_size], device, position_offset)
            scores += log_probs[:, tokens.to(log_probs.device)].cpu().unbind()
    rows = []
    for record, score in zip(asked, scores):
        ranked = [ALL_NAMES[i] for i in torch.argsort(score, descending=True, stable=True).tolist()]
        in_story = _mentioned(record["input"], ALL_NAMES) - _mentioned(record["instruction"], ALL_NAMES)
        rows.append({"role": record.get("role", "who"), "right_first": ranked[0] == record["output"],
                     "story_first": ranked[0] in in_story, "rank": ranked.index(record["output"]) + 1,
                     "story_chance": len(in_story) / len(ALL_NAMES)})
    out = {}
    for role in [*dict.fromkeys(row["role"] for row in rows), "all"]:
        chosen = [row for row in rows if role in ("all", row["role"])]
        out[role] = {"right_first": share(sum(r["right_first"] for r in chosen), len(chosen)),
                     "story_first": share(sum(r["story_first"] for r in chosen), len(chosen)),
                     "right_chance": 1 / len(ALL_NAMES),
                     "story_chance": sum(r["story_chance"] for r in chosen) / len(chosen),
                     "mean_rank": sum(r["rank"] for r in chosen) / len(chosen)}
    return out
