"""Setting the small model beside another one (the paper's gpt2, 124M parameters) on equal terms.

The same stories for perplexity (compared per word, since the tokenizers
differ), the same prompts, the same decoding, the same repetition measures,
and optionally the same judge. A model that cannot be loaded (no hub, not in
the cache) is skipped with one printed line, so a lesson goes on offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from huggingface_hub import constants
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .gpt import GPT, hf_quiet
from .hub import hub_unreachable
from .inference import Decoding, generate, text_perplexity
from .judge import DEFAULT_MODEL, judge_many, summarise
from .text_metrics import repetition_table

__all__ = ["load_comparison", "compare_models"]


def load_comparison(name_or_path: str | Path) -> tuple[GPT, PreTrainedTokenizerBase] | None:
    """A GPT-2 to compare with (``"gpt2"``, another hub id, or a folder) as a :class:`GPT`, or ``None``.

    Order: a local folder is loaded as it is; a hub id is first looked up in
    the local Hugging Face cache (no network). Only if it is not there, and
    ``HF_HUB_OFFLINE`` is not set, is the hub probed with one 3-second
    connection and then downloaded from. Without this, an unreachable hub
    costs ``from_pretrained`` about 23 s of retries. When nothing loads, one
    line saying why the comparison is skipped is printed and ``None``
    returned, so a notebook goes on.
    """
    source = str(name_or_path)

    def attempt(**options):
        model = GPT.from_pretrained(source, **options)
        with hf_quiet():
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
    problem = hub_unreachable()
    if problem:
        return skip(f"it is not in the local Hugging Face cache and the hub is unreachable: {problem}")
    try:
        return attempt()
    except Exception as err:  # noqa: BLE001
        return skip(f"the hub could not provide it ({why(err)})")


def compare_models(models: Mapping[str, tuple[GPT, PreTrainedTokenizerBase]],
                   texts: Sequence[str], prompts: Sequence[str], *, decoding: Decoding = Decoding(),
                   judge: bool = False, judge_model: str = DEFAULT_MODEL, judge_cache: str | Path | None = None,
                   device: str | torch.device | None = None, progress: bool = True) -> dict[str, Any]:
    """The same measurements for several models, each with its own tokenizer.

    Per model: :func:`text_perplexity` on ``texts`` (compare the
    ``word_perplexity``; token perplexities use different tokens), greedy and
    sampled continuations of the same ``prompts`` (``decoding``'s length, seed
    and sampling settings), and their
    :func:`repetition_table` rows. With ``judge``, the greedy continuations
    are graded by :func:`helpers.judge.judge_many` in one call for all models
    (so an unconfigured judge prints its skip line once).
    """
    out: dict[str, Any] = {"prompts": list(prompts), "texts": len(texts), "perplexity": {},
                           "generations": {}, "repetition": [], "judge": None}
    for name, (model, tokenizer) in models.items():
        out["perplexity"][name] = text_perplexity(model, tokenizer, texts, device=device, progress=progress)
        greedy = generate(model, tokenizer, prompts, decoding.greedy(), device=device, progress=progress)
        sampled = generate(model, tokenizer, prompts, decoding.sampled(), device=device, progress=progress)
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
