"""From text to training tensors: stories, instructions, tokenizers, token blocks.

Sources
    Stories come from the embedded procedural corpus (offline, the default),
    from the hub (``roneneldan/TinyStories``) or from a local file: the
    original ``TinyStories-*.txt`` layout (stories separated by
    ``<|endoftext|>`` lines) or ``.json``/``.jsonl``/``.parquet`` rows with a
    ``text`` field. Instructions come from the embedded story questions, the
    hub (``tatsu-lab/alpaca``) or a local ``alpaca_data.json``.

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

import functools
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .config import DataConfig, Profile

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "DataError",
    "EOT",
    "PROMPT_TEMPLATES",
    "cache_root",
    "corpus_version",
    "tokenizer_source",
    "load_tokenizer",
    "train_story_tokenizer",
    "read_story_file",
    "read_instruction_file",
    "load_stories",
    "load_instructions",
    "pack_concat",
    "pack_per_story",
    "TokenBlocks",
    "pretraining_blocks",
    "format_prompt",
    "encode_instruction",
    "InstructionSet",
    "finetuning_examples",
    "pad_batch",
]

EOT = "<|endoftext|>"
FORMAT_VERSION = 1

# The paper's two templates (its Listing 1), character for character. They
# follow Stanford Alpaca's, except that the paper's end with "Response: "
# (a trailing space) where Alpaca's end with "Response:".
PROMPT_TEMPLATES = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response: "
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response: "
    ),
}


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and record."""


# --------------------------------------------------------------------------- paths


def cache_root(cfg: DataConfig) -> Path:
    """Where prepared data lives: ``data.cache_dir``, ``$HELPERS_CACHE`` or ``~/.cache/story-gpt``."""
    root = cfg.cache_dir or os.environ.get("HELPERS_CACHE") or Path.home() / ".cache" / "story-gpt"
    return Path(root).expanduser()


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------- tokenizers


def tokenizer_source(name: str) -> str:
    """The hub id or folder to load; ``$HELPERS_TOKENIZER`` stands in for ``gpt2``."""
    if name == "gpt2" and os.environ.get("HELPERS_TOKENIZER"):
        return os.environ["HELPERS_TOKENIZER"]
    return name


def load_tokenizer(cfg: DataConfig) -> "PreTrainedTokenizerBase":
    """GPT-2's BPE (hub or folder), or the small story BPE trained and cached on first use."""
    from transformers import AutoTokenizer

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
    ``<|endoftext|>``, which also serves as beginning, end and padding.
    """
    name = f"story-bpe-{cfg.story_vocab_size}-seed{cfg.corpus_seed}-n{stories}-{corpus_version()}"
    folder = cache_root(cfg) / "tokenizers" / name
    if (folder / "tokenizer.json").exists():
        return folder
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from .stories import corpus

    texts = [s.text for s in corpus("train", stories, seed=cfg.corpus_seed)]
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
    if folder.exists():  # another process won the race; keep its copy
        import shutil

        shutil.rmtree(tmp)
    else:
        os.replace(tmp, folder)
    return folder


@functools.cache
def corpus_version() -> str:
    """A digest of the story generator's source: any edit to the grammar invalidates cached data."""
    from . import stories

    return hashlib.sha256(Path(stories.__file__).read_bytes()).hexdigest()[:12]


def _tokenizer_fingerprint(tok: "PreTrainedTokenizerBase") -> str:
    return hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()[:16]


# ------------------------------------------------------------------ reading files


def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise DataError(f"{what} file {str(path)!r} does not exist")
    if not path.is_file():
        raise DataError(f"{what} path {str(path)!r} is not a file")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{what} file {str(path)!r} is empty")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{what} file {str(path)!r} is not UTF-8 text: byte 0x{raw[err.start]:02x} "
            f"at offset {err.start} (line {line})"
        ) from None


def _json_error(path: Path, err: json.JSONDecodeError, line_offset: int = 0) -> DataError:
    return DataError(
        f"{str(path)!r} is not valid JSON: {err.msg} at line {err.lineno + line_offset} column {err.colno}"
    )


def read_story_file(path: str | Path) -> list[str]:
    """Stories from a local TinyStories file (.txt, .json, .jsonl or .parquet).

    In ``.txt`` files stories are separated by ``<|endoftext|>`` lines; a
    ``.txt`` without any separator (such as a ``datasets`` export) is split at
    blank lines instead.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        if not path.exists():
            raise DataError(f"stories file {str(path)!r} does not exist")
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise DataError(f"{str(path)!r} has no 'text' column (columns: {table.column_names})")
        rows = table.column("text").to_pylist()
        stories = [_story_field(path, i, {"text": r}) for i, r in enumerate(rows)]
    elif suffix == ".jsonl":
        text = _read_text(path, "stories")
        stories = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise _json_error(path, err, line_offset=number - 1) from None
            stories.append(_story_field(path, number, record, unit="line"))
    elif suffix == ".json":
        stories = [_story_field(path, i, r) for i, r in enumerate(_json_list(path, "stories"))]
    elif suffix == ".txt":
        text = _read_text(path, "stories").replace("\r\n", "\n")
        if EOT in text:
            pieces = [p.strip() for p in text.split(EOT)]
        else:
            pieces = [p.strip() for p in text.split("\n\n")]
        stories = [p for p in pieces if p]
    else:
        raise DataError(f"stories file {str(path)!r}: unsupported type {suffix or '(none)'}; "
                        "use .txt, .json, .jsonl or .parquet")
    stories = [s for s in stories if s.strip()]
    if not stories:
        raise DataError(f"stories file {str(path)!r} holds no stories")
    return stories


def _json_list(path: Path, what: str) -> list[Any]:
    """The JSON list a ``.json`` file holds, or one error naming the file (and where its syntax breaks)."""
    try:
        records = json.loads(_read_text(path, what))
    except json.JSONDecodeError as err:
        raise _json_error(path, err) from None
    if not isinstance(records, list):
        raise DataError(f"{str(path)!r} must hold a JSON list of records, got {type(records).__name__}")
    return records


def _story_field(path: Path, index: int, record: Any, unit: str = "record") -> str:
    if not isinstance(record, dict) or "text" not in record:
        raise DataError(f"{str(path)!r} {unit} {index}: expected an object with a 'text' field")
    if not isinstance(record["text"], str):
        raise DataError(f"{str(path)!r} {unit} {index}: 'text' must be a string, "
                        f"got {type(record['text']).__name__}")
    return record["text"]


def read_instruction_file(path: str | Path) -> list[dict[str, str]]:
    """Records of a local ``alpaca_data.json`` (a JSON list of instruction/input/output)."""
    path = Path(path).expanduser()
    records = _json_list(path, "instructions")
    if not records:
        raise DataError(f"{str(path)!r} holds no records")
    return [validate_instruction(r, f"{str(path)!r} record {i}") for i, r in enumerate(records)]


def validate_instruction(record: Any, where: str) -> dict[str, str]:
    """Check one Alpaca record: ``instruction`` and ``output`` strings, optional ``input``."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object, got {type(record).__name__}")
    for key in ("instruction", "output"):
        if key not in record:
            raise DataError(f"{where} has no {key!r} field")
    clean = {}
    for key in ("instruction", "input", "output"):
        value = record.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise DataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
        clean[key] = value
    if not clean["instruction"].strip():
        raise DataError(f"{where}: 'instruction' is empty")
    for key, value in record.items():
        if key not in clean:
            clean[key] = value
    return clean


# ------------------------------------------------------------------ sources


def _is_path(source: str) -> bool:
    return source not in {"embedded", "hub"}


def load_stories(cfg: DataConfig, split: str) -> list[str]:
    """Story texts of ``split`` ("train" or "validation") from the configured source."""
    if split not in {"train", "validation"}:
        raise DataError(f"unknown split {split!r}; use 'train' or 'validation'")
    limit = cfg.train_stories if split == "train" else cfg.val_stories_count
    if cfg.stories == "embedded":
        from .stories import corpus

        count = limit if limit is not None else (100_000 if split == "train" else 2_000)
        return [s.text for s in corpus(split, count, seed=cfg.corpus_seed)]
    if cfg.stories == "hub":
        return _hub_texts("roneneldan/TinyStories", split, limit)
    if split == "validation" and cfg.val_stories:
        stories = read_story_file(cfg.val_stories)
    else:
        stories = read_story_file(cfg.stories)
        if not cfg.val_stories:  # hold out the last share of the file
            n_val = max(1, round(len(stories) * cfg.val_fraction))
            if len(stories) < 2:
                raise DataError(f"stories file {cfg.stories!r} needs at least 2 stories to hold one out")
            stories = stories[-n_val:] if split == "validation" else stories[:-n_val]
    return stories[:limit] if limit is not None else stories


def _hub_texts(name: str, split: str, limit: int | None) -> list[str]:
    from datasets import load_dataset

    if limit is not None:  # stream only what is needed
        rows = load_dataset(name, split=split, streaming=True)
        return [row["text"] for _, row in zip(range(limit), rows)]
    return list(load_dataset(name, split=split)["text"])


def load_instructions(cfg: DataConfig) -> tuple[list[dict], list[dict]]:
    """Train and validation instruction records.

    Embedded: questions about training-split stories for training, about
    validation-split stories for validation (no story is in both). Alpaca
    (hub or file): a seeded shuffle, then ``instruction_val_fraction`` held
    out, as the paper split 1/10 off for validation.
    """
    if cfg.instructions == "embedded":
        n_train = cfg.instruction_limit or 20_000
        n_val = max(1, round(n_train * cfg.instruction_val_fraction))
        return _story_questions("train", n_train, cfg.corpus_seed), _story_questions("validation", n_val, cfg.corpus_seed)
    if cfg.instructions == "hub":
        from datasets import load_dataset

        rows = load_dataset("tatsu-lab/alpaca", split="train")
        records = [validate_instruction(dict(r), f"tatsu-lab/alpaca record {i}") for i, r in enumerate(rows)]
    else:
        records = read_instruction_file(cfg.instructions)
    order = list(range(len(records)))
    random.Random(cfg.corpus_seed).shuffle(order)
    records = [records[i] for i in order]
    if cfg.instruction_limit is not None:
        records = records[: cfg.instruction_limit]
    if len(records) < 2:
        raise DataError(f"instructions {cfg.instructions!r}: need at least 2 records to hold one out")
    n_val = max(1, round(len(records) * cfg.instruction_val_fraction))
    return records[n_val:], records[:n_val]


def _story_questions(split: str, n: int, seed: int) -> list[dict]:
    """The first ``n`` question records about stories of ``split``, story by story."""
    from .stories import iter_corpus, qa_records

    out: list[dict] = []
    for story in iter_corpus(split, seed=seed):
        out.extend(qa_records(story))
        if len(out) >= n:
            break
    return out[:n]


# ------------------------------------------------------------------ packing


def pack_concat(token_lists: Iterable[Sequence[int]], eos_id: int, block_size: int) -> tuple["np.ndarray", dict]:
    """Join stories with end-of-text and cut the stream into full blocks.

    Each story is followed by one end-of-text token; the stream's last
    partial block is dropped. Returns the (blocks, block_size) uint16 array
    and counts.
    """
    import numpy as np

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


def pack_per_story(token_lists: Iterable[Sequence[int]], block_size: int) -> tuple["np.ndarray", dict]:
    """The paper's way: each story alone, cut into blocks, the short last piece dropped.

    As in the Hugging Face course's causal-LM chapter (tokenise with
    truncation and overflow, keep only pieces of exactly ``block_size``).
    Stories shorter than one block vanish entirely.
    """
    import numpy as np

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
    def array(self) -> "np.ndarray":
        import numpy as np

        return np.memmap(self.path, dtype=np.uint16, mode="r",
                         shape=(self.meta["blocks"], self.meta["block_size"]))

    def __len__(self) -> int:
        return int(self.meta["blocks"])


def _source_fingerprint(cfg: DataConfig, split: str) -> dict:
    source = cfg.val_stories if (split == "validation" and cfg.val_stories) else cfg.stories
    info: dict[str, Any] = {"source": source, "split": split}
    if _is_path(source):
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


def pretraining_blocks(cfg: DataConfig, split: str, tokenizer: "PreTrainedTokenizerBase",
                       progress: bool = True) -> TokenBlocks:
    """Tokenise and pack a split once; later calls reuse the cached file."""
    key = {
        "version": FORMAT_VERSION,
        "source": _source_fingerprint(cfg, split),
        "tokenizer": _tokenizer_fingerprint(tokenizer),
        "block_size": cfg.block_size,
        "packing": cfg.packing,
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
    meta = {"key": key, "block_size": cfg.block_size, "dtype": "uint16", **counts}
    _atomic_write_bytes(bin_path, arr.tobytes())
    _atomic_write_bytes(meta_path, json.dumps(meta, indent=2).encode())
    return TokenBlocks(bin_path, meta)


def _tokenize(texts: Sequence[str], tokenizer: "PreTrainedTokenizerBase", progress: bool, desc: str,
              batch: int = 1000) -> list[list[int]]:
    from tqdm.auto import tqdm

    out: list[list[int]] = []
    bar = tqdm(total=len(texts), desc=desc, unit="story", disable=not progress or len(texts) < 5000)
    for start in range(0, len(texts), batch):
        piece = texts[start:start + batch]
        out.extend(tokenizer(list(piece), add_special_tokens=False)["input_ids"])
        bar.update(len(piece))
    bar.close()
    return out


# ------------------------------------------------------------------ instructions


def format_prompt(record: dict) -> str:
    """The paper's prompt for one record: with the input block only when input is non-empty."""
    if record.get("input", "").strip():
        return PROMPT_TEMPLATES["prompt_input"].format(instruction=record["instruction"], input=record["input"])
    return PROMPT_TEMPLATES["prompt_no_input"].format(instruction=record["instruction"])


def encode_instruction(record: dict, tokenizer: "PreTrainedTokenizerBase", max_length: int) -> dict[str, list[int]]:
    """Token ids and labels of prompt + response + end-of-text, cut to ``max_length``.

    Prompt and response are tokenised separately and joined, so the label
    mask covers exactly the prompt's tokens, and the prompt's tokens are
    exactly what the model sees at generation time.
    """
    prompt = tokenizer(format_prompt(record), add_special_tokens=False)["input_ids"]
    response = tokenizer(record["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt + response)[:max_length]
    labels = ([-100] * len(prompt) + response)[:max_length]
    return {"input_ids": ids, "labels": labels}


@dataclass
class InstructionSet:
    """Encoded finetuning examples and what was dropped on the way."""

    examples: list[dict[str, list[int]]]
    records: list[dict]
    dropped: int

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def tokens(self) -> int:
        return sum(len(e["input_ids"]) for e in self.examples)


def finetuning_examples(cfg: DataConfig, tokenizer: "PreTrainedTokenizerBase") -> tuple[InstructionSet, InstructionSet]:
    """Encoded train and validation sets; records whose response is cut away entirely are dropped."""
    train, val = load_instructions(cfg)
    return _encode_all(train, tokenizer, cfg.instruction_max_length), _encode_all(val, tokenizer, cfg.instruction_max_length)


def _encode_all(records: list[dict], tokenizer, max_length: int) -> InstructionSet:
    kept_ex, kept_rec, dropped = [], [], 0
    for record in records:
        example = encode_instruction(record, tokenizer, max_length)
        if all(label == -100 for label in example["labels"][1:]):
            dropped += 1
            continue
        kept_ex.append(example)
        kept_rec.append(record)
    return InstructionSet(kept_ex, kept_rec, dropped)


def pad_batch(examples: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, "torch.Tensor"]:
    """Right-pad to the longest example: pad ids, attention mask 0, labels -100."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def profile_tokenizer(profile: Profile) -> "PreTrainedTokenizerBase":
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
