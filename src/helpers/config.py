"""The paper's settings as plain data, in named profiles.

A profile holds four sections: ``model`` (the GPT-2 shape), ``data`` (where
stories, instructions and the tokenizer come from), ``pretrain`` and
``finetune`` (one training recipe each). Two profiles ship:

``paper``
    The values printed in the paper: GPT-2's 50257-token BPE, width 64, 6
    layers, 8 heads, context 128; pretraining with batch 32 x accumulation 8,
    lr 5e-4, cosine schedule after 100 warm-up steps, weight decay 0.1, fp16;
    finetuning on Alpaca with max length 512, lr 2e-5, 3 epochs, bf16.
    Meant for a GPU and the Hugging Face hub's TinyStories and Alpaca.

``lesson``
    Same width, depth and heads, shrunk amounts so pretraining ends in a few
    minutes on a 2-core laptop CPU. What differs from the paper, and why:

    * tokenizer: a 2048-token byte-level BPE trained on the embedded story
      corpus instead of GPT-2's 50257 tokens. With 50257 tokens, about 60% of
      every CPU training step is the output layer and its softmax, and the
      model reaches only ~1,000 tokens/s on 2 cores. The small vocabulary
      keeps the transformer blocks identical and makes the lesson ~10x faster.
    * data: the embedded procedural story corpus (offline) instead of
      TinyStories, and story questions instead of Alpaca for finetuning.
    * no dropout: a lesson run sees less than one pass over its stories, so
      there is nothing to regularise yet; dropout 0.1 (the paper's) slowed
      learning and cost about 40% of each CPU step. Measured on 2 cores:
      1000 steps reach validation loss 0.78 in 2.5-3.5 minutes, and 84% of
      greedy sentences are grammatical, against 1.44 and under 10% with
      dropout 0.1 and learning rate 2e-3 after 600 steps.
    * amounts: a fixed number of steps with a smaller batch and a higher
      learning rate, fp32 (autocasting the small blocks to half precision
      makes a CPU step slower; ``precision="bf16"`` on a CPU with native
      bf16 computes only the output layer in bf16, which pays with GPT-2's
      vocabulary, not with 2048 tokens), evaluation on a slice of the
      validation split.

Every value can be overridden with ``"section.key": value`` pairs, from a
papermill parameter (typed values) or a command-line ``--set key=value``
(strings, parsed by the field's type). Unknown keys and wrong types raise
:class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

__all__ = [
    "ConfigError",
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "Profile",
    "PROFILES",
    "get_profile",
    "apply_overrides",
    "parse_overrides",
]

Precision = Literal["auto", "fp32", "bf16", "fp16"]


class ConfigError(ValueError):
    """A setting that does not exist or has a value of the wrong type."""


@dataclass
class ModelConfig:
    """GPT-2 shape, as in the paper's Hugging Face ``config.json``."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 64
    n_layer: int = 6
    n_head: int = 8
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    bos_token_id: int = 50256
    eos_token_id: int = 50256


@dataclass
class DataConfig:
    """Where text comes from and how it becomes token blocks.

    ``stories``: ``"embedded"`` (the offline procedural corpus), ``"hub"``
    (``roneneldan/TinyStories``) or a local file (``.txt`` with
    ``<|endoftext|>`` lines, ``.json``/``.jsonl``/``.parquet`` with ``text``).
    ``instructions``: ``"embedded"`` (story questions), ``"hub"``
    (``tatsu-lab/alpaca``) or a local ``alpaca_data.json``.
    ``tokenizer``: a hub id or folder for ``AutoTokenizer`` (``"gpt2"``), or
    ``"story-bpe"`` to train a small BPE on the embedded corpus. The
    environment variable ``HELPERS_TOKENIZER`` replaces ``"gpt2"`` with a
    local folder.
    """

    stories: str = "embedded"
    val_stories: str | None = None
    instructions: str = "embedded"
    tokenizer: str = "gpt2"
    story_vocab_size: int = 4096
    # story-bpe only: also learn the merges of this many training story questions written in the
    # paper's template, so that words like "Instruction" and "Response" become tokens of their own.
    story_vocab_questions: int = 0
    corpus_seed: int = 0
    train_stories: int | None = None
    val_stories_count: int | None = None
    val_fraction: float = 0.05
    block_size: int = 128
    packing: Literal["concat", "per_story"] = "concat"
    instruction_max_length: int = 512
    instruction_limit: int | None = None
    instruction_val_fraction: float = 0.1
    # Read every finetuning example this many positions further right (0: from position 0). Lesson 4
    # sets it to the pretraining block size, so the same examples sit at positions pretraining never used.
    position_offset: int = 0
    cache_dir: str | None = None


@dataclass
class TrainConfig:
    """One training recipe; field names follow ``TrainingArguments`` where one exists."""

    batch_size: int = 32
    eval_batch_size: int = 32
    grad_accum: int = 8
    epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 100
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    precision: Precision = "fp16"
    tf32: bool = False
    log_every: int = 100
    eval_every: int = 100  # 0: never evaluate (benchmarks)
    save_every: int = 100  # 0: no checkpoints, only the final model
    keep_checkpoints: int = 3
    eval_max_batches: int | None = None
    seed: int = 42
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    # How the fast engine computes the output layer and its cross-entropy:
    # "chunked" (this package, never holds all logits), "full" (GPT2LMHeadModel's
    # own loss), or the optional GPU libraries "cce" (Cut Cross-Entropy) and
    # "liger" (Liger Kernel's fused linear cross-entropy).
    loss: Literal["chunked", "full", "cce", "liger"] = "chunked"
    loss_chunk: int = 0  # rows of logits per chunk; 0 picks one for the device
    # Live curves beside metrics.jsonl: "none", "tensorboard", "wandb" or both, comma-separated
    # (the paper reported to wandb; both viewers are optional packages).
    report_to: str = "none"


@dataclass
class Profile:
    """A named set of all settings; ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Profile":
        """Rebuild a profile saved by :meth:`to_dict` (checked like overrides)."""
        profile = cls(name=str(data.get("name", "custom")))
        flat = {
            f"{section}.{key}": value
            for section, values in data.items()
            if isinstance(values, Mapping)
            for key, value in values.items()
        }
        if "device" in data:
            flat["device"] = data["device"]
        return apply_overrides(profile, flat)


def _paper() -> Profile:
    pretrain = TrainConfig(
        batch_size=32, eval_batch_size=32, grad_accum=8, epochs=1.0,
        learning_rate=5e-4, weight_decay=0.1, warmup_steps=100,
        precision="fp16", log_every=100, eval_every=100, save_every=100,
        seed=42,
    )
    # The paper's finetuning arguments come from the Stanford Alpaca script.
    # It names no per-device batch, so TrainingArguments' default (8) holds;
    # with logging_steps=1 and eval strategy "steps", Trainer evaluates every
    # step (eval_steps falls back to logging_steps).
    finetune = TrainConfig(
        batch_size=8, eval_batch_size=8, grad_accum=8, epochs=3.0,
        learning_rate=2e-5, weight_decay=0.0, warmup_steps=0, warmup_ratio=0.03,
        precision="bf16", tf32=True, log_every=1, eval_every=1, save_every=500,
        seed=42,
    )
    # The paper cut each story alone into 128-token pieces (the Hugging Face course's recipe it followed).
    data = DataConfig(stories="hub", instructions="hub", tokenizer="gpt2", packing="per_story")
    return Profile(name="paper", model=ModelConfig(), data=data,
                   pretrain=pretrain, finetune=finetune)


def _lesson() -> Profile:
    model = ModelConfig(vocab_size=2048, bos_token_id=0, eos_token_id=0,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    # Every finetuning example lies inside the context pretraining trains: the story BPE also learns the
    # template's words (about 45 tokens instead of 111), and blocks are 288 tokens, longer than the
    # longest story question (lesson 4 shows what happens to answers beyond the trained positions).
    data = DataConfig(
        stories="embedded", instructions="embedded", tokenizer="story-bpe",
        story_vocab_size=2048, story_vocab_questions=6000, train_stories=20000, val_stories_count=400,
        block_size=288, instruction_max_length=512, instruction_limit=20000,
    )
    pretrain = TrainConfig(  # 7 blocks of 288 tokens: 2,016 tokens a step
        batch_size=7, eval_batch_size=32, grad_accum=1, max_steps=1000,
        learning_rate=3e-3, weight_decay=0.1, warmup_steps=50,
        precision="fp32", log_every=10, eval_every=100, save_every=100,
        keep_checkpoints=10, eval_max_batches=8, seed=42,
    )
    finetune = TrainConfig(  # a checkpoint every 50 steps, all kept: answers are measured at each
        batch_size=8, eval_batch_size=16, grad_accum=1, max_steps=400,
        learning_rate=2e-3, weight_decay=0.0, warmup_steps=0, warmup_ratio=0.03,
        precision="fp32", log_every=10, eval_every=50, save_every=50,
        keep_checkpoints=8, eval_max_batches=10, seed=42,
    )
    return Profile(name="lesson", model=model, data=data,
                   pretrain=pretrain, finetune=finetune)


PROFILES = {"paper": _paper, "lesson": _lesson}


def get_profile(name: str = "lesson", overrides: Mapping[str, Any] | None = None) -> Profile:
    """A fresh copy of profile ``name`` with ``overrides`` applied."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    profile = PROFILES[name]()
    return apply_overrides(profile, overrides or {})


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Turn command-line ``key=value`` strings into a dict (values stay strings)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def apply_overrides(profile: Profile, overrides: Mapping[str, Any]) -> Profile:
    """Set ``"section.key"`` (or ``"device"``) values in place and return the profile."""
    for key, value in overrides.items():
        target, name = _resolve(profile, key)
        hint = _field_types(type(target))[name]
        setattr(target, name, _coerce(key, value, hint))
    return profile


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _suggest(name: str, names: list[str]) -> list[str]:
    """Field names a mistyped ``name`` probably meant (close spelling or initials, e.g. lr)."""
    initials = [n for n in names if "".join(part[0] for part in n.split("_")) == name]
    return list(dict.fromkeys(initials + difflib.get_close_matches(name, names, n=2)))


def _resolve(profile: Profile, key: str) -> tuple[Any, str]:
    sections = ("model", "data", "pretrain", "finetune")
    if key == "device":
        return profile, "device"
    section, dot, name = key.partition(".")
    if not dot or section not in sections:
        field_name = name if dot else key
        owners = [f"{s}.{field_name}" for s in sections
                  if field_name in {f.name for f in dataclasses.fields(getattr(profile, s))}]
        hint = f" (did you mean {' or '.join(repr(o) for o in owners)}?)" if owners else ""
        raise ConfigError(f"unknown setting {key!r}: keys look like 'section.name' with a section in "
                          f"{list(sections)}, or 'device'{hint}")
    target = getattr(profile, section)
    names = [f.name for f in dataclasses.fields(target)]
    if name not in names:
        close = _suggest(name, names)
        hint = f" (did you mean {' or '.join(repr(f'{section}.{c}') for c in close)}?)" if close else ""
        raise ConfigError(f"unknown setting {key!r}{hint}")
    return target, name


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check (typed values) or parse (strings) ``value`` against a type hint."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        allowed = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null"}):
            if type(None) in args:
                return None
        return _coerce(key, value, allowed[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"setting {key!r} must be one of {list(args)}, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"setting {key!r} expects true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"setting {key!r} expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"setting {key!r} expects an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"setting {key!r} expects a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"setting {key!r} expects a string, got {value!r}")
    raise ConfigError(f"setting {key!r} has an unsupported type {hint!r}")
