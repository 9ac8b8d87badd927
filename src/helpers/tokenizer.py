"""Tokenizers: GPT-2's byte-level BPE (the paper's), and a small BPE trained on the embedded stories.

``load_tokenizer`` answers for a profile's ``data.tokenizer``: ``"gpt2"``
(from ``$HELPERS_TOKENIZER``, the local Hugging Face cache or the hub, and
otherwise from the copy of GPT-2's files shipped in ``gpt2_tokenizer/``, so
nothing needs the network), any folder or hub id ``AutoTokenizer`` can read,
or ``"story-bpe"``, which trains a byte-level BPE of ``data.story_vocab_size``
tokens on the embedded stories once and caches it. ``profile_tokenizer`` also
checks that the tokenizer fits the profile's model.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from huggingface_hub import constants, try_to_load_from_cache
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .config import DataConfig, Profile
from .data import cache_root
from .hub import hub_unreachable
from .prompts import format_prompt
from .sources import EOT, DataError, story_questions
from .stories import corpus, corpus_version

__all__ = ["SHIPPED_GPT2", "tokenizer_source", "load_tokenizer", "train_story_tokenizer", "profile_tokenizer"]

# GPT-2's vocab.json and merges.txt as OpenAI released them (see the folder's README and LICENSE).
SHIPPED_GPT2 = Path(__file__).with_name("gpt2_tokenizer")


def tokenizer_source(name: str) -> str:
    """The hub id or folder to load for ``data.tokenizer = name``.

    ``"gpt2"`` is, in this order: the folder ``$HELPERS_TOKENIZER`` names; the
    hub's ``gpt2`` when it is in the local Hugging Face cache or the hub
    answers; else the copy shipped with this package (the same files). Any
    other name is used as it is.
    """
    if name != "gpt2":
        return name
    if os.environ.get("HELPERS_TOKENIZER"):
        return os.environ["HELPERS_TOKENIZER"]
    return "gpt2" if _hub_gpt2_available() else str(SHIPPED_GPT2)


@functools.cache
def _hub_gpt2_available() -> bool:
    """The hub's gpt2 tokenizer is cached on this machine, or the hub answers (asked once per process)."""
    if isinstance(try_to_load_from_cache("gpt2", "tokenizer_config.json"), str):
        return True
    return not constants.HF_HUB_OFFLINE and hub_unreachable() is None


def load_tokenizer(cfg: DataConfig) -> PreTrainedTokenizerBase:
    """GPT-2's BPE (hub or folder), or the small story BPE trained and cached on first use."""
    if cfg.tokenizer == "story-bpe":
        source = str(train_story_tokenizer(cfg))
    else:
        source = tokenizer_source(cfg.tokenizer)
    path = Path(source).expanduser()
    if path.is_dir():
        source = str(path)
    elif source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise DataError(f"tokenizer folder {source!r} does not exist")
    # AutoTokenizer reads tokenizer.json; building GPT2TokenizerFast from
    # vocab/merges files silently gives an empty tokenizer on transformers 5.
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise DataError(
            f"could not load tokenizer {source!r} ({err.__class__.__name__}); without the hub, "
            "point HELPERS_TOKENIZER or data.tokenizer at a local folder"
        ) from None
    tok.model_max_length = int(1e9)  # we cut blocks ourselves; silence length warnings
    return tok


def train_story_tokenizer(cfg: DataConfig, stories: int = 5000) -> Path:
    """Train (once) a byte-level BPE of ``cfg.story_vocab_size`` tokens on embedded stories.

    Byte-level like GPT-2's, so any text round-trips exactly; id 0 is
    ``<|endoftext|>``, which also serves as beginning, end and padding. With
    ``story_vocab_questions``, that many training story questions (prompt in
    the paper's template, then the answer) join the training texts.
    """
    questions = f"-q{cfg.story_vocab_questions}" if cfg.story_vocab_questions else ""
    name = f"story-bpe-{cfg.story_vocab_size}-seed{cfg.corpus_seed}-n{stories}{questions}-{corpus_version()}"
    folder = cache_root(cfg) / "tokenizers" / name
    if (folder / "tokenizer.json").exists():
        return folder
    texts = [s.text for s in corpus("train", stories, seed=cfg.corpus_seed)]
    texts += [format_prompt(r) + r["output"] for r in story_questions("train", cfg.story_vocab_questions, cfg.corpus_seed)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.story_vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=EOT, eos_token=EOT, unk_token=EOT)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    fast.save_pretrained(str(tmp))
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process (a second test worker, a notebook) saved it first: keep its copy
        if not (folder / "tokenizer.json").exists():
            raise
        shutil.rmtree(tmp)
    return folder


def profile_tokenizer(profile: Profile) -> PreTrainedTokenizerBase:
    """The profile's tokenizer, checked against the model's vocabulary and end-of-text id."""
    tok = load_tokenizer(profile.data)
    if len(tok) != profile.model.vocab_size:
        raise DataError(
            f"tokenizer {profile.data.tokenizer!r} has {len(tok)} tokens but model.vocab_size is "
            f"{profile.model.vocab_size}; set model.vocab_size={len(tok)}"
        )
    if tok.eos_token_id != profile.model.eos_token_id:
        raise DataError(
            f"tokenizer {profile.data.tokenizer!r} ends text with id {tok.eos_token_id} but "
            f"model.eos_token_id is {profile.model.eos_token_id}"
        )
    return tok
