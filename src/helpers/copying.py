"""Does a model copy from its context? Three measures, each with the lines it is read against.

Answering "Who is the main character?" from a story means finding a name in
the context and writing it again. A transformer does that with an *induction
head*: one head marks each token with the token before it, a later head finds
the earlier occurrence of the current token and copies what came next. The
measures here ask whether a model has that skill, without any question:

* :func:`repeated_random` -- random tokens, then the same tokens again. Nothing
  predicts the first writing; only copying predicts the second. The control
  writes *fresh* random tokens the second time, where no model can gain; the
  shifted variant puts fresh tokens between the writings, where a reader of
  a fixed distance back fails.
* :func:`name_mentions` -- the loss on the hero's name in held-out stories, at
  its first mention and at its later ones: a reader that copies finds the
  later ones easy; a model that only knows which names are common does not.
* :func:`far_context` -- how much higher the loss on story text is when the
  context further back than ``window`` tokens (or a little more) is another story's.

:class:`CopyingOracle` is the instrument's known answer: a hand-written model
that copies by rule (no training), so the measures' ceiling is measured, not
assumed; an untrained model and the control give the floor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from .config import Profile
from .inference import place
from .stories import Story, corpus
from .story_grammar import GENDERS, NAMES
from .tokenizer import profile_tokenizer

__all__ = ["SHIFT_GAP", "CopyingOracle", "repeated_random", "saved_beyond_control", "name_mentions", "far_context",
           "copying_probe", "held_out_probe"]

SHIFT_GAP = 17  # fresh random tokens between the two writings of the shifted repeat


@dataclass
class _Logits:
    logits: torch.Tensor


class CopyingOracle(nn.Module):
    """A model that copies by rule: after token ``a``, predict what followed the latest earlier ``a``.

    Puts probability ``1 - miss`` on that token and spreads ``miss`` evenly
    over the rest; with no earlier occurrence every token is equally likely.
    It reads the whole context and ignores positions: on random tokens written
    twice it is the ceiling (``miss`` its only loss on the repeat). On story
    text it copies whatever followed the last occurrence, right or wrong, so
    on the hero's later mentions it is no ceiling (it does worse than at the
    first): a name copier needs to know where a name goes.
    """

    def __init__(self, vocab_size: int, miss: float = 1e-3):
        super().__init__()
        self.vocab_size, self.miss = vocab_size, miss
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)  # no weights; says which device it is on

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, **_: Any) -> _Logits:
        B, T = input_ids.shape
        uniform = torch.full((B, T, self.vocab_size), -math.log(self.vocab_size))
        hit, rest = math.log(1 - self.miss), math.log(self.miss / (self.vocab_size - 1))
        for b in range(B):
            row, seen = input_ids[b].tolist(), {}
            for t, token in enumerate(row):
                if token in seen:
                    uniform[b, t] = rest
                    uniform[b, t, row[seen[token] + 1]] = hit
                if t + 1 < T:
                    seen[token] = t  # "what followed it" is known once position t + 1 exists
        return _Logits(uniform.to(self.anchor.device))


def _token_losses(model: nn.Module, ids: torch.Tensor, device, position_ids: torch.Tensor | None = None,
                  rows: int = 8) -> torch.Tensor:
    """(B, T - 1) losses in nats: token t + 1 given tokens up to t.

    Scored ``rows`` sequences at a time: with GPT-2's 50,257 tokens the
    logits of 64 sequences of 150 tokens take almost 2 GB, and allocating
    them costs more than the model's arithmetic.
    """
    model.eval()  # dropout off: a probe scores the model, not one draw of its dropout masks
    losses = []
    with torch.no_grad():
        for start in range(0, len(ids), rows):
            chunk = ids[start:start + rows]
            positions = None if position_ids is None else position_ids[start:start + rows].to(device)
            logits = model(input_ids=chunk.to(device), position_ids=positions).logits[:, :-1].float()
            target = logits.gather(-1, chunk[:, 1:, None].to(logits.device))[..., 0]
            losses.append((logits.logsumexp(-1) - target).cpu())
    return torch.cat(losses)


def repeated_random(model: nn.Module, token_ids: Sequence[int], start_id: int, *, sequences: int = 64,
                    length: int = 50, gap: int = SHIFT_GAP, seed: int = 0,
                    device: str | torch.device | None = None) -> dict[str, float]:
    """Mean loss (nats per token) on random tokens written once, then again: ``first``, ``repeat``, ``gain``.

    Each sequence is ``start_id``, then ``length`` tokens drawn uniformly from
    ``token_ids``, then the same ``length`` tokens again. Both writings are
    scored on their tokens 2..length (the first token of the repeat follows
    the end of the first writing, which nothing predicts). ``gain`` is
    ``first - repeat``; ``control_gain`` is the same with fresh tokens the
    second time (no model can gain there: the floor); ``uniform`` is the loss
    of a uniform guess among ``token_ids``. ``shifted_gain`` is the gain when
    ``gap`` fresh random tokens stand between the two writings: a copier that
    finds the earlier occurrence by what it says gains as much there, while a
    head that reads a fixed distance back (which training on repeats of one
    fixed length can teach) gains nothing.
    """
    device = place(model, device)
    gen = torch.Generator().manual_seed(seed)
    pool = torch.as_tensor(list(token_ids))
    once, fresh = (pool[torch.randint(len(pool), (sequences, length), generator=gen)] for _ in range(2))
    between = pool[torch.randint(len(pool), (sequences, gap), generator=gen)]
    start = torch.full((sequences, 1), start_id)
    scores = {}
    for name, middle, second in (("repeat", [], once), ("control", [], fresh), ("shifted", [between], once)):
        losses = _token_losses(model, torch.cat([start, once, *middle, second], dim=1), device)
        # losses[:, t] scores token t + 1: the first writing is tokens 1..length, the second the last length
        scores[name] = (float(losses[:, 1:length].mean()), float(losses[:, -(length - 1):].mean()))
    (first, repeat), (control_first, control), (_, shifted) = scores["repeat"], scores["control"], scores["shifted"]
    return {"first": first, "repeat": repeat, "gain": first - repeat, "control_gain": control_first - control,
            "shifted_repeat": shifted, "shifted_gain": first - shifted, "gap": gap, "uniform": math.log(len(pool)),
            "sequences": sequences}


def saved_beyond_control(scores: Mapping[str, Any], gain: str = "gain") -> float:
    """The copying score: nats a random repeat (``gain``) or its shifted variant (``shifted_gain``) saves beyond
    the control, from :func:`repeated_random`'s scores. Near 0 for a model that does not copy."""
    return scores[gain] - scores["control_gain"]


def _mention_spans(story: Story) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(rf"\b{re.escape(story.hero)}\b", story.text)]


def name_mentions(model: nn.Module, tokenizer: PreTrainedTokenizerBase, stories: Sequence[Story], *,
                  device: str | torch.device | None = None) -> dict[str, float | int]:
    """Mean loss (nats per name) on the hero's name: at its first mention, and at every later one.

    A name's loss is the summed loss of the tokens that spell it, each given
    the story before it. ``same_gender_uniform`` is a guess among the names
    of the hero's gender (what knowing "a girl's name comes next" is worth);
    ``later - first`` below zero means the model uses the earlier mention.
    Stories that name their hero once count only for ``first``.
    """
    device = place(model, device)
    encoded = [tokenizer(s.text, add_special_tokens=False, return_offsets_mapping=True) for s in stories]
    width = max(len(e["input_ids"]) for e in encoded) + 1
    ids = torch.tensor([[tokenizer.eos_token_id, *e["input_ids"]] + [tokenizer.eos_token_id] * (width - 1 - len(e["input_ids"]))
                        for e in encoded])  # right padding: a causal model's scores of real tokens ignore it
    losses = _token_losses(model, ids, device)  # losses[:, k] scores text token k
    first, later = [], []
    for row, (story, e) in enumerate(zip(stories, encoded)):
        for n, (start, end) in enumerate(_mention_spans(story)):
            spelled = [k for k, (a, b) in enumerate(e["offset_mapping"]) if a < end and b > start]
            (first if n == 0 else later).append(float(losses[row, spelled].sum()))
    uniform = sum(math.log(len(NAMES[s.hero_gender])) for s in stories) / len(stories)
    return {"first": sum(first) / len(first), "later": sum(later) / len(later) if later else float("nan"),
            "first_mentions": len(first), "later_mentions": len(later), "same_gender_uniform": uniform}


def far_context(model: nn.Module, blocks: torch.Tensor, *, window: int = 64, targets: int = 16,
                device: str | torch.device | None = None) -> dict[str, float | int]:
    """Loss (nats per token) on the last ``targets`` tokens of each block: with its own far context, and swapped.

    "Far" is everything before the last ``window + targets`` tokens, so each
    scored token still reads at least ``window`` tokens of its own. The swap
    puts the same stretch of the previous block there: every token keeps its
    position and the model reads as many tokens as before; only what the far
    tokens say changes. (Cutting them off instead also takes away the first
    tokens, on which trained models park attention, and costs a model that
    never reads far content most of a nat.) ``value`` is ``swapped - own``:
    0 for a model that ignores far content.
    """
    device = place(model, device)
    B, T = blocks.shape
    if B < 2:
        raise ValueError("far_context needs at least two blocks, to swap far context between them")
    if not 0 < targets <= T - window - 1:
        raise ValueError(f"blocks of {T} tokens leave no room for {targets} targets after a {window}-token window")
    near = T - window - targets
    swapped_blocks = torch.cat([blocks.roll(1, dims=0)[:, :near], blocks[:, near:]], dim=1)
    own = _token_losses(model, blocks, device)[:, -targets:]
    swapped = _token_losses(model, swapped_blocks, device)[:, -targets:]
    return {"own": float(own.mean()), "swapped": float(swapped.mean()), "value": float(swapped.mean() - own.mean()),
            "window": window, "tokens": B * targets}


def copying_probe(model: nn.Module, tokenizer: PreTrainedTokenizerBase, stories: Sequence[Story], block_size: int, *,
                  sequences: int = 64, seed: int = 0, device: str | torch.device | None = None) -> dict[str, dict]:
    """The three measures on one model: random repeats, hero mentions, far context in the stories' own text.

    The random tokens are every token but the special ones, in ``sequences``
    repeats (each scored over GPT-2's 50,257 tokens costs a little time: a
    rehearsal asks for few); the far-context blocks are the first eight that
    the ``stories`` fill when joined with end-of-text, as pretraining packs them.
    """
    specials = set(tokenizer.all_special_ids)
    pool = [i for i in range(len(tokenizer)) if i not in specials]
    stream: list[int] = []
    for story in stories:
        stream += tokenizer(story.text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    n = min(len(stream) // block_size, 8)
    if n == 0:
        raise ValueError(f"{len(stories)} stories hold {len(stream)} tokens, fewer than one {block_size}-token block")
    blocks = torch.tensor(stream[: n * block_size]).view(n, block_size)
    return {"repeated_random": repeated_random(model, pool, tokenizer.eos_token_id, sequences=sequences, seed=seed,
                                               device=device),
            "name_mentions": name_mentions(model, tokenizer, stories, device=device),
            "far_context": far_context(model, blocks, device=device)}


def held_out_probe(profile: Profile, stories: int) -> Callable[[nn.Module], dict[str, dict]]:
    """:func:`copying_probe` as the studies ask it of every model: with ``profile``'s tokenizer and block size, on
    the first ``stories`` held-out stories of its corpus."""
    tokenizer = profile_tokenizer(profile)
    facts = corpus("validation", stories, seed=profile.data.corpus_seed)
    return lambda model: copying_probe(model, tokenizer, facts, profile.data.block_size)
