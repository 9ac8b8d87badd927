"""From text to training tensors: token blocks for pretraining, encoded instructions, padded batches.

The texts come from :mod:`helpers.sources`; this module turns them into what
the model trains on.

Pretraining blocks
    Stories are joined with the end-of-text token and cut into 128-token
    blocks (``packing="concat"``), so no token is wasted; or, as the paper's
    code did after the Hugging Face course, each story is tokenised alone and
    cut into blocks with its short last piece dropped (``"per_story"``). The
    blocks are cached as a uint16 memory-mapped file beside a small JSON
    description, and reused while source, tokenizer and settings are
    unchanged.

Finetuning examples
    The paper's prompt template, the response and an end-of-text token;
    labels are -100 on every prompt token so only the response is learned.
    GPT-2 has no padding token: batches are right-padded with end-of-text,
    and the padding is masked out of attention and labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from .config import DataConfig
from .progress import progress_bar
from .prompts import follow_up_prompt, model_prompt, response_text
from .runs import write_bytes
from .sources import DataError, is_file_source, load_instructions, load_stories
from .stories import corpus_version

__all__ = [
    "cache_root",
    "tokenizer_fingerprint",
    "pack_concat",
    "pack_per_story",
    "copy_drills",
    "qa_blocks",
    "copy_examples",
    "dense_examples",
    "verdict_examples",
    "before_verdict",
    "TokenBlocks",
    "pretraining_blocks",
    "encode_instruction",
    "InstructionSet",
    "finetuning_examples",
    "pad_batch",
]

# Part of every block cache key: raise it whenever a change to the tokenising or packing code below
# changes what a cached file would hold, so files written by the old code are never read again.
PACKING_VERSION = 1
# Copy drills: spans of this many random tokens (inclusive range), each written twice in a row.
COPY_SPAN = (10, 100)
# The finetuning drills' one span: short, so that the answers keep a fair share of the scored tokens.
FINETUNE_COPY_SPAN = (10, 40)

# --------------------------------------------------------------------------- paths


def cache_root(cfg: DataConfig) -> Path:
    """Where prepared data lives: ``data.cache_dir``, ``$HELPERS_CACHE`` or ``~/.cache/story-gpt``."""
    root = cfg.cache_dir or os.environ.get("HELPERS_CACHE") or Path.home() / ".cache" / "story-gpt"
    return Path(root).expanduser()


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokenizer_fingerprint(tok: PreTrainedTokenizerBase) -> str:
    """A digest of a tokenizer's whole definition, part of every cache key of tokenised data."""
    return hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()[:16]


# ------------------------------------------------------------------ packing


def pack_concat(token_lists: Iterable[Sequence[int]], eos_id: int, block_size: int) -> tuple[np.ndarray, dict]:
    """Join stories with end-of-text and cut the stream into full blocks.

    Each story is followed by one end-of-text token; the stream's last
    partial block is dropped. Returns the (blocks, block_size) uint16 array
    and counts.
    """
    stream: list[int] = []
    n_stories = 0
    for ids in token_lists:
        stream.extend(ids)
        stream.append(eos_id)
        n_stories += 1
    total = len(stream)
    n_blocks = total // block_size
    arr = np.asarray(stream[: n_blocks * block_size], dtype=np.uint16).reshape(n_blocks, block_size)
    return arr, {"stories": n_stories, "tokens": total, "blocks": n_blocks,
                 "tokens_dropped": total - n_blocks * block_size}


def copy_drills(n_blocks: int, block_size: int, token_ids: Sequence[int], eos_id: int, seed: int) -> np.ndarray:
    """Blocks that only copying can predict: end-of-text, then random spans each written twice, to the end.

    A span is ``COPY_SPAN`` random tokens drawn uniformly from ``token_ids``;
    its first writing is unpredictable (the loss of a uniform guess), its
    second is predictable only by finding the first and reading on from there,
    which is the skill (an induction head) that answering from a story needs.
    The last span is cut at the end of the block. Same seed, same blocks.
    """
    rng = np.random.default_rng(seed)
    pool = np.asarray(token_ids, dtype=np.int64)
    out = np.empty((n_blocks, block_size), dtype=np.uint16)
    for b in range(n_blocks):
        row = [eos_id]
        while len(row) < block_size:
            span = pool[rng.integers(0, len(pool), rng.integers(COPY_SPAN[0], COPY_SPAN[1] + 1))].tolist()
            row += span + span
        out[b] = row[:block_size]
    return out


def qa_blocks(n_blocks: int, block_size: int, records: Sequence[dict], tokenizer: PreTrainedTokenizerBase,
              max_length: int) -> np.ndarray:
    """Blocks of question records written as finetuning writes them (:func:`encode_instruction`: template, story,
    answer, end-of-text, cut to ``max_length``), one after another in the records' order, from the first again
    when they run out.

    Pretraining on them teaches the answers together with the stories,
    where a separate finetuning wipes out what pretraining learned.
    """
    if not records:
        raise DataError("data.qa_share needs training questions; the instructions have none")
    stream: list[int] = []
    n = 0
    while len(stream) < n_blocks * block_size:
        stream += encode_instruction(records[n % len(records)], tokenizer, max_length)["input_ids"]
        n += 1
    return np.asarray(stream[: n_blocks * block_size], dtype=np.uint16).reshape(n_blocks, block_size)


def pack_per_story(token_lists: Iterable[Sequence[int]], block_size: int) -> tuple[np.ndarray, dict]:
    """The paper's way: each story alone, cut into blocks, the short last piece dropped.

    As in the Hugging Face course's causal-LM chapter (tokenise with
    truncation and overflow, keep only pieces of exactly ``block_size``).
    Stories shorter than one block vanish entirely.
    """
    blocks: list[Sequence[int]] = []
    total = n_stories = 0
    for ids in token_lists:
        n_stories += 1
        total += len(ids)
        for start in range(0, len(ids) - block_size + 1, block_size):
            blocks.append(ids[start:start + block_size])
    arr = np.asarray(blocks, dtype=np.uint16).reshape(len(blocks), block_size)
    kept = arr.size
    return arr, {"stories": n_stories, "tokens": total, "blocks": len(blocks), "tokens_dropped": total - kept}


@dataclass
class TokenBlocks:
    """Packed pretraining blocks in a memory-mapped uint16 file, with their description."""

    path: Path
    meta: dict

    @property
    def array(self) -> np.ndarray:
        return np.memmap(self.path, dtype=np.uint16, mode="r",
                         shape=(self.meta["blocks"], self.meta["block_size"]))

    def __len__(self) -> int:
        return int(self.meta["blocks"])


def _instructions_fingerprint(cfg: DataConfig) -> dict:
    """What the training questions of ``data.qa_share`` depend on: their source (a file by size and time), the
    seed and limit that pick them, the share held out and the length they are cut to."""
    info: dict[str, Any] = {"source": cfg.instructions, "seed": cfg.corpus_seed, "limit": cfg.instruction_limit,
                            "val_fraction": cfg.instruction_val_fraction, "max_length": cfg.instruction_max_length}
    if is_file_source(cfg.instructions):
        stat = Path(cfg.instructions).expanduser().resolve().stat()
        info.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    if cfg.instructions == "embedded":
        info["corpus"] = corpus_version()
        if cfg.yes_no_fact != "none":
            info["yes_no_fact"] = cfg.yes_no_fact
    return info


def _source_fingerprint(cfg: DataConfig, split: str) -> dict:
    source = cfg.val_stories if (split == "validation" and cfg.val_stories) else cfg.stories
    info: dict[str, Any] = {"source": source, "split": split}
    if is_file_source(source):
        path = Path(source).expanduser().resolve()
        if not path.exists():
            raise DataError(f"stories file {str(path)!r} does not exist")
        stat = path.stat()
        info.update(path=str(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                    val_fraction=None if cfg.val_stories else cfg.val_fraction)
    if source == "embedded":
        info.update(seed=cfg.corpus_seed, corpus=corpus_version())
    info["limit"] = cfg.train_stories if split == "train" else cfg.val_stories_count
    return info


def pretraining_blocks(cfg: DataConfig, split: str, tokenizer: PreTrainedTokenizerBase,
                       progress: bool = True) -> TokenBlocks:
    """Tokenise and pack a split once; later calls reuse the cached file.

    The file is named by everything its blocks depend on: the texts, the
    tokenizer's whole definition (vocabulary, merges, special tokens; not
    its name, which two different tokenizers can share), the end-of-text id
    packing puts between stories, the block size and packing, and the
    version of this code.
    """
    key = {
        "version": PACKING_VERSION,
        "source": _source_fingerprint(cfg, split),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "eos_id": tokenizer.eos_token_id,
        "block_size": cfg.block_size,
        "packing": cfg.packing,
        **({"copy_share": cfg.copy_share, "copy_span": COPY_SPAN} if split == "train" and cfg.copy_share else {}),
        **({"qa_share": cfg.qa_share, "questions": _instructions_fingerprint(cfg)} if split == "train" and cfg.qa_share
           else {}),
    }
    name = f"blocks-{split}-{_digest(key)}"
    folder = cache_root(cfg) / "blocks"
    bin_path, meta_path = folder / f"{name}.bin", folder / f"{name}.json"
    if meta_path.exists() and bin_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == json.loads(json.dumps(key)):
            return TokenBlocks(bin_path, meta)
    if len(tokenizer) > 65536:
        raise DataError(f"tokenizer has {len(tokenizer)} tokens; uint16 blocks hold at most 65536")
    texts = load_stories(cfg, split)
    token_lists = _tokenize(texts, tokenizer, progress, desc=f"tokenising {split}")
    if cfg.packing == "concat":
        arr, counts = pack_concat(token_lists, tokenizer.eos_token_id, cfg.block_size)
    else:
        arr, counts = pack_per_story(token_lists, cfg.block_size)
    if counts["blocks"] == 0:
        raise DataError(f"{split} split of {cfg.stories!r} is too short for one {cfg.block_size}-token block")
    story_blocks = counts["blocks"]
    if split == "train" and cfg.copy_share:
        drills = round(story_blocks * cfg.copy_share / (1 - cfg.copy_share - cfg.qa_share))
        drilled = copy_drills(drills, cfg.block_size, _plain_ids(tokenizer), tokenizer.eos_token_id, cfg.corpus_seed)
        arr = np.concatenate([arr, drilled])
        counts = {**counts, "blocks": len(arr), "copy_drills": drills}
    if split == "train" and cfg.qa_share:
        questions = round(story_blocks * cfg.qa_share / (1 - cfg.copy_share - cfg.qa_share))
        records = load_instructions(cfg)[0]
        arr = np.concatenate([arr, qa_blocks(questions, cfg.block_size, records, tokenizer, cfg.instruction_max_length)])
        counts = {**counts, "blocks": len(arr), "qa_blocks": questions}
    meta = {"key": key, "block_size": cfg.block_size, "dtype": "uint16", **counts}
    write_bytes(bin_path, arr.tobytes())
    write_bytes(meta_path, json.dumps(meta, indent=2).encode())
    return TokenBlocks(bin_path, meta)


def _tokenize(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, progress: bool, desc: str,
              batch: int = 1000) -> list[list[int]]:
    out: list[list[int]] = []
    bar = progress_bar(total=len(texts), desc=desc, unit="story", disable=not progress or len(texts) < 5000)
    for start in range(0, len(texts), batch):
        piece = texts[start:start + batch]
        out.extend(tokenizer(list(piece), add_special_tokens=False)["input_ids"])
        bar.update(len(piece))
    bar.close()
    return out


# ------------------------------------------------------------------ instructions


def encode_instruction(record: dict, tokenizer: PreTrainedTokenizerBase, max_length: int) -> dict[str, list[int]]:
    """Token ids and labels of prompt + response + end-of-text, cut to ``max_length``.

    Prompt and response are tokenised separately and joined, so the label
    mask covers exactly the prompt's tokens, and the prompt's tokens are
    exactly what the model sees at generation time (:func:`helpers.prompts.model_prompt`:
    the template's final space starts the response).
    """
    prompt = tokenizer(model_prompt(record), add_special_tokens=False)["input_ids"]
    response = _answer_ids(record, tokenizer)
    ids = (prompt + response)[:max_length]
    labels = ([-100] * len(prompt) + response)[:max_length]
    return {"input_ids": ids, "labels": labels}


def _answer_ids(record: dict, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """What a model learns to write for ``record``: its response (:func:`helpers.prompts.response_text`), end-of-text."""
    return tokenizer(response_text(record), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


@dataclass
class InstructionSet:
    """Encoded finetuning examples and what was dropped on the way."""

    examples: list[dict[str, list[int]]]
    records: list[dict]
    dropped: int
    position_offset: int = 0  # the position of each example's first token (data.position_offset)
    copy_drills: int = 0  # how many of the examples (the last ones) are copy drills (data.finetune_copy_share)
    dense: int = 0  # how many are answer-dense (data.finetune_dense_share), just before the copy drills
    verdict_drills: int = 0  # how many are verdict drills (data.finetune_verdict_share), after the copy drills

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def tokens(self) -> int:
        return sum(len(e["input_ids"]) for e in self.examples)


def finetuning_examples(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[InstructionSet, InstructionSet]:
    """Encoded train and validation sets; records whose response is cut away entirely are dropped.

    With ``data.finetune_dense_share``, ``data.finetune_copy_share`` and
    ``data.finetune_verdict_share``, answer-dense examples
    (:func:`dense_examples`), copy drills (:func:`copy_examples`) and verdict
    drills (:func:`verdict_examples`) follow the training examples in that
    order (the loader shuffles them in), each that share of the whole training
    set; the validation set stays answers only.
    """
    records = load_instructions(cfg)
    train, val = (_encode_all(part, tokenizer, cfg.instruction_max_length, cfg.position_offset) for part in records)
    answers = len(train)
    rest = 1 - cfg.finetune_dense_share - cfg.finetune_copy_share - cfg.finetune_verdict_share
    if cfg.finetune_dense_share:
        train.dense = round(answers * cfg.finetune_dense_share / rest)
        train.examples = train.examples + dense_examples(train.dense, train.records, tokenizer,
                                                         cfg.instruction_max_length, cfg.corpus_seed)
    if cfg.finetune_copy_share:
        train.copy_drills = round(answers * cfg.finetune_copy_share / rest)
        train.examples = train.examples + copy_examples(train.copy_drills, _plain_ids(tokenizer),
                                                        tokenizer.eos_token_id, cfg.corpus_seed)
    if cfg.finetune_verdict_share:
        train.verdict_drills = round(answers * cfg.finetune_verdict_share / rest)
        train.examples = train.examples + verdict_examples(train.verdict_drills, train.records, tokenizer,
                                                           cfg.corpus_seed)
    return train, val


def dense_examples(n: int, records: Sequence[dict], tokenizer: PreTrainedTokenizerBase, max_length: int,
                   seed: int) -> list[dict[str, list[int]]]:
    """Finetuning examples dense in answers: one story read once, then as many of its questions as fit.

    An ordinary example scores one answer after a whole story; here the
    first question is written as finetuning writes it
    (:func:`encode_instruction`), and further questions about the same story
    follow, each in :func:`helpers.prompts.follow_up_prompt` with its answer
    and end-of-text, while the example stays within ``max_length`` tokens.
    Only answers and end-of-texts are scored.
    Stories (their records grouped by ``input``) come in a shuffled order,
    each with its questions shuffled, from the first again in a new order
    when they run out. Same seed, same examples.
    """
    stories: dict[str, list[dict]] = {}
    for record in records:
        stories.setdefault(record["input"], []).append(record)
    if not stories:
        raise DataError("data.finetune_dense_share needs training questions; the instructions have none")
    rng, groups, out = random.Random(seed), list(stories.values()), []
    while len(out) < n:
        for group in rng.sample(groups, len(groups))[:n - len(out)]:
            asked = rng.sample(group, len(group))
            example = encode_instruction(asked[0], tokenizer, max_length)
            for record in asked[1:]:
                prompt = tokenizer(follow_up_prompt(record), add_special_tokens=False)["input_ids"]
                answer = _answer_ids(record, tokenizer)
                if len(example["input_ids"]) + len(prompt) + len(answer) > max_length:
                    break
                example["input_ids"] += prompt + answer
                example["labels"] += [-100] * len(prompt) + answer
            out.append(example)
    return out


def _plain_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every token id but the special ones: what copy drills draw their random spans from."""
    return [i for i in range(len(tokenizer)) if i not in tokenizer.all_special_ids]


def copy_examples(n: int, token_ids: Sequence[int], eos_id: int, seed: int) -> list[dict[str, list[int]]]:
    """Finetuning examples only copying can answer: end-of-text, a random span of ``FINETUNE_COPY_SPAN`` tokens
    drawn from ``token_ids``, the same span again; as with an answer, only the second writing is scored."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(token_ids, dtype=np.int64)
    out = []
    for _ in range(n):
        span = pool[rng.integers(0, len(pool), rng.integers(FINETUNE_COPY_SPAN[0], FINETUNE_COPY_SPAN[1] + 1))].tolist()
        out.append({"input_ids": [eos_id] + span + span, "labels": [-100] * (1 + len(span)) + span})
    return out


def before_verdict(answer: str) -> str:
    """A yes/no answer that ends in its verdict (as ``data.yes_no_fact`` "compared" and "before" write them) cut
    before it: "At the beach? The story says at the park, so no." gives "At the beach? The story says at the park,
    so"."""
    head, _, verdict = answer.rpartition(" ")
    if verdict not in ("yes.", "no.") or not head.endswith(", so"):
        raise ValueError(f"not a yes/no answer ending in its verdict (', so yes.' or ', so no.'): {answer!r}")
    return head


def verdict_examples(n: int, records: Sequence[dict], tokenizer: PreTrainedTokenizerBase,
                     seed: int) -> list[dict[str, list[int]]]:
    """Finetuning examples that ask for the check alone: end-of-text, then a training yes/no answer written the
    compared way (after a space, as a response begins) with neither its story nor its question, only the verdict
    (" no." and end-of-text) scored.

    The answers are drawn at random, with replacement, from the yes/no
    ``records`` (those with a ``verdict``), so the two words beside each other
    are the same exactly when the verdict is "yes". Same seed, same examples.
    """
    answers = [record["output"] for record in records if "verdict" in record]
    if not answers:
        raise DataError("data.finetune_verdict_share needs training yes/no answers written with "
                        "data.yes_no_fact=compared; the instructions have none")
    rng, eos, out = random.Random(seed), tokenizer.eos_token_id, []
    for answer in (rng.choice(answers) for _ in range(n)):
        written = " " + before_verdict(answer)
        head = tokenizer(written, add_special_tokens=False)["input_ids"]
        verdict = tokenizer(answer[len(written) - 1:], add_special_tokens=False)["input_ids"] + [eos]
        out.append({"input_ids": [eos] + head + verdict, "labels": [-100] * (1 + len(head)) + verdict})
    return out


def _encode_all(records: list[dict], tokenizer, max_length: int, position_offset: int) -> InstructionSet:
    kept_ex, kept_rec, dropped = [], [], 0
    for record in records:
        example = encode_instruction(record, tokenizer, max_length)
        if all(label == -100 for label in example["labels"][1:]):
            dropped += 1
            continue
        kept_ex.append(example)
        kept_rec.append(record)
    return InstructionSet(kept_ex, kept_rec, dropped, position_offset)


def pad_batch(examples: Sequence[dict[str, list[int]]], pad_id: int, position_offset: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: pad ids, attention mask 0, labels -100.

    With ``position_offset`` the batch also says where its tokens sit:
    ``position_ids`` counting from the offset instead of from 0.
    """
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        mask[row, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if position_offset:
        batch["position_ids"] = torch.arange(position_offset, position_offset + width).expand(len(examples), width)
    return batch
