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
(strings, parsed by the field's type). Every number declares its range and
every free string its choices beside its definition (``allowed(default,
rule)``, :mod:`helpers.settings_check`), and settings that depend on each
other are checked together (blocks within the model's positions, heads that
divide the width, warm-up within the run, ...). Unknown keys, wrong types and
values out of range raise :class:`ConfigError` in one line naming the key,
e.g. ``pretrain.log_every=0: must be >= 1``, when a profile is resolved:
before anything is written.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from .settings_check import SECTIONS, ConfigError, allowed, check_profile

__all__ = [
    "ConfigError",
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "Profile",
    "PROFILES",
    "get_profile",
    "stage_settings",
    "apply_overrides",
    "parse_overrides",
]

Precision = Literal["auto", "fp32", "bf16", "fp16"]
# The activations transformers' GPT-2 can build without arguments (its ACT2FN; tests check the names).
ACTIVATIONS = ("gelu_new", "gelu", "gelu_fast", "gelu_pytorch_tanh", "gelu_accurate", "quick_gelu", "relu", "silu",
               "swish", "tanh", "sigmoid", "mish", "linear")


@dataclass
class ModelConfig:
    """GPT-2 shape, as in the paper's Hugging Face ``config.json``."""

    vocab_size: int = allowed(50257, ">= 1")
    n_positions: int = allowed(1024, ">= 1")
    n_embd: int = allowed(64, ">= 1")  # divisible by n_head
    n_layer: int = allowed(6, ">= 1")
    n_head: int = allowed(8, ">= 1")
    # transformers' ACT2FN names (helpers.gpt, written from scratch, has only gelu_new)
    activation_function: str = allowed("gelu_new", ACTIVATIONS)
    resid_pdrop: float = allowed(0.1, "[0, 1)")
    embd_pdrop: float = allowed(0.1, "[0, 1)")
    attn_pdrop: float = allowed(0.1, "[0, 1)")
    layer_norm_epsilon: float = allowed(1e-5, "> 0")
    initializer_range: float = allowed(0.02, "> 0")  # the standard deviation of the first weights
    bos_token_id: int = allowed(50256, ">= 0")  # < vocab_size
    eos_token_id: int = allowed(50256, ">= 0")  # < vocab_size


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
    # 256 bytes and <|endoftext|> at least; blocks are stored as uint16, so at most 65536 tokens
    story_vocab_size: int = allowed(4096, "[257, 65536]")
    # story-bpe only: also learn the merges of this many training story questions written in the
    # paper's template, so that words like "Instruction" and "Response" become tokens of their own.
    story_vocab_questions: int = allowed(0, ">= 0")
    corpus_seed: int = allowed(0, ">= 0")
    train_stories: int | None = allowed(None, ">= 1")  # None: the whole source (embedded: 100,000)
    val_stories_count: int | None = allowed(None, ">= 1")  # None: the whole split (embedded: 2,000)
    val_fraction: float = allowed(0.05, "(0, 1)")  # share of a local stories file held out (at least one story)
    block_size: int = allowed(128, ">= 2")  # <= model.n_positions; a block predicts block_size - 1 tokens
    packing: Literal["concat", "per_story"] = "concat"
    # Share of the pretraining *training* blocks that are copy drills (random token spans, each written
    # twice; helpers.data.copy_drills), shuffled in among the story blocks: 0 trains on stories only.
    copy_share: float = allowed(0.0, "[0, 1)")
    # Share of them that are training questions as finetuning writes them (template, story, answer, end-of-text;
    # helpers.data.qa_blocks), shuffled in the same way: 0 trains without them. copy_share + qa_share < 1.
    qa_share: float = allowed(0.0, "[0, 1)")
    # Share of the finetuning *training* examples that are copy drills (one random span written twice, only the
    # second writing scored; helpers.data.copy_examples): finetuning on answers alone wipes copying out.
    finetune_copy_share: float = allowed(0.0, "[0, 1)")
    # Share of them that are answer-dense: a training story once, then as many of its questions and answers as fit
    # in instruction_max_length tokens, answers scored (helpers.data.dense_examples). With the drills' share, < 1.
    finetune_dense_share: float = allowed(0.0, "[0, 1)")
    # Share of them that are verdict drills: a training yes/no answer written the compared way, alone, without its
    # story or question, only its verdict scored (helpers.data.verdict_examples): is the check between the two words
    # learnable when nothing else is asked? Needs yes_no_fact="compared". With the two shares above, < 1.
    finetune_verdict_share: float = allowed(0.0, "[0, 1)")
    # Story questions only: how a yes/no answer is written. "none": the bare "yes" or "no"; "before": the fact
    # that decides it, then the verdict ("It happened at the park, so no."); "after": the verdict, then the fact;
    # "asked": what the question asks about, then the verdict and the fact ("At the beach? No, it happened at ...");
    # "compared": what it asks about beside the story's value, then the verdict ("At the beach? The story says ...").
    yes_no_fact: Literal["none", "before", "after", "asked", "compared"] = "none"
    instruction_max_length: int = allowed(512, ">= 2")  # + position_offset <= model.n_positions
    instruction_limit: int | None = allowed(None, ">= 1")
    instruction_val_fraction: float = allowed(0.1, "(0, 1)")
    # Read every finetuning example this many positions further right (0: from position 0). Lesson 4
    # sets it to the pretraining block size, so the same examples sit at positions pretraining never used.
    position_offset: int = allowed(0, ">= 0")
    cache_dir: str | None = None


@dataclass
class TrainConfig:
    """One training recipe; field names follow ``TrainingArguments`` where one exists."""

    batch_size: int = allowed(32, ">= 1")
    eval_batch_size: int = allowed(32, ">= 1")
    grad_accum: int = allowed(8, ">= 1")
    epochs: float = allowed(1.0, "> 0")  # used when max_steps is None
    max_steps: int | None = allowed(None, ">= 1")
    # 0 trains nothing, but runs (a test relies on it). The upper ends lie far beyond any useful value, yet keep
    # AdamW's lr / (1 - beta1) and lr * weight_decay within float32 (larger ones crash inside torch.optim).
    learning_rate: float = allowed(5e-4, "[0, 1e6]")
    weight_decay: float = allowed(0.1, "[0, 1e6]")
    warmup_steps: int = allowed(100, ">= 0")  # <= max_steps; 0: use warmup_ratio
    warmup_ratio: float = allowed(0.0, "[0, 1]")
    max_grad_norm: float = allowed(1.0, "> 0")
    adam_beta1: float = allowed(0.9, "[0, 1)")
    adam_beta2: float = allowed(0.999, "[0, 1)")
    adam_epsilon: float = allowed(1e-8, "> 0")
    precision: Precision = "fp16"
    tf32: bool = False
    log_every: int = allowed(100, ">= 1")
    eval_every: int = allowed(100, ">= 0")  # 0: never evaluate (benchmarks)
    save_every: int = allowed(100, ">= 0")  # 0: no checkpoints, only the final model
    keep_checkpoints: int = allowed(3, ">= 0")  # 0: keep them all
    eval_max_batches: int | None = allowed(None, ">= 1")  # None: the whole validation data
    seed: int = allowed(42, "[0, 4294967295]")  # NumPy's seeds are 32-bit
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    # How the fast engine computes the output layer and its cross-entropy:
    # "chunked" (this package, never holds all logits; on 2 CPU cores also about
    # 8% faster than "full" at the lesson's 2048 tokens, benchmarks/README.md),
    # "full" (GPT.forward's loss over all logits), or the optional GPU libraries
    # "cce" (Cut Cross-Entropy) and "liger" (Liger Kernel's fused linear cross-entropy).
    loss: Literal["chunked", "full", "cce", "liger"] = "chunked"
    loss_chunk: int = allowed(0, ">= 0")  # rows of logits per chunk; 0 picks one for the device
    # Live curves beside metrics.jsonl: "none", "tensorboard", "wandb" or both, comma-separated
    # (the paper reported to wandb; both viewers are optional packages).
    report_to: str = allowed("none", ("none", "tensorboard", "wandb"), comma_list=True)


@dataclass
class Profile:
    """A named set of all settings; ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    device: str = allowed("auto", ("auto", "cpu", "mps", "cuda", "cuda:N"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Profile":
        """Rebuild a profile saved by :meth:`to_dict` (checked like overrides)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a saved profile is a mapping of sections to settings, got {data!r}")
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


# What a pretraining never reads: the finetuning's recipe, how finetuning examples are laid out and (unless
# data.qa_share mixes training questions into the pretraining) the questions themselves.
_FINETUNING_DATA = ("position_offset", "finetune_copy_share", "finetune_dense_share", "finetune_verdict_share")
_QUESTION_DATA = ("instructions", "instruction_limit", "instruction_val_fraction", "instruction_max_length",
                  "yes_no_fact")


def stage_settings(stage: str, profile: Mapping[str, Any], questions: bool | None = None) -> dict[str, Any]:
    """A profile as :meth:`Profile.to_dict` writes it, without what a run of ``stage`` never reads: a pretraining
    stays the same run, and its folder reusable, whatever the finetuning after it is to be. ``questions``: whether
    the pretraining reads the training questions (default: whether its ``data.qa_share`` mixes them in)."""
    if stage != "pretrain":
        return dict(profile)
    questions = bool(profile["data"].get("qa_share")) if questions is None else questions
    unread = _FINETUNING_DATA + (() if questions else _QUESTION_DATA)
    return {**{key: value for key, value in profile.items() if key != "finetune"},
            "data": {key: value for key, value in profile["data"].items() if key not in unread}}


def get_profile(name: str = "lesson", overrides: Mapping[str, Any] | None = None) -> Profile:
    """A fresh copy of profile ``name`` with ``overrides`` applied, every setting checked."""
    if not isinstance(name, str) or name not in PROFILES:
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
    """Set ``"section.key"`` (or ``"device"``) values in place, check the whole profile, return it.

    On any :class:`ConfigError` the profile is left as it was.
    """
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"overrides must map 'section.name' keys to values, got {overrides!r}")
    before = copy.deepcopy(profile)
    try:
        for key, value in overrides.items():
            target, name = _resolve(profile, key)
            hint = _field_types(type(target))[name]
            setattr(target, name, _coerce(key, value, hint))
        check_profile(profile, changed=overrides)
    except ConfigError:
        for section in SECTIONS:
            vars(getattr(profile, section)).update(vars(getattr(before, section)))
        profile.device = before.device
        raise
    return profile


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _suggest(name: str, names: list[str]) -> list[str]:
    """Field names a mistyped ``name`` probably meant (close spelling or initials, e.g. lr)."""
    initials = [n for n in names if "".join(part[0] for part in n.split("_")) == name]
    return list(dict.fromkeys(initials + difflib.get_close_matches(name, names, n=2)))


def _resolve(profile: Profile, key: str) -> tuple[Any, str]:
    sections = SECTIONS
    if not isinstance(key, str):
        raise ConfigError(f"setting names are strings such as 'pretrain.max_steps', got {key!r}")
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
            try:
                return float(value)
            except OverflowError:  # an int beyond any float
                raise ConfigError(f"setting {key!r} expects a number a float can hold, got {value!r}") from None
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
