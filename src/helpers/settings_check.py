"""What each setting allows, and the rules that tie settings together, checked before anything runs.

:mod:`helpers.config` declares every number's range (and every free
string's choices) beside its definition, with :func:`allowed`::

    log_every: int = allowed(100, ">= 1")
    resid_pdrop: float = allowed(0.1, "[0, 1)")
    device: str = allowed("auto", ("auto", "cpu", "mps", "cuda", "cuda:N"))

A rule is plain data: ``">= 1"``, ``"> 0"``, ``"<= 9"``, an interval such as
``"[0, 1)"``, or a tuple of choices in which ``N`` stands for a number
(``"cuda:N"`` allows ``"cuda:0"``, ``"cuda:1"``, ...). ``None`` is allowed
where the type allows it (``int | None``). Floats must also be finite.
:data:`CROSS_RULES` lists what holds between settings (the data must fit
the model's positions, the heads must divide the width, ...).

:func:`check_profile` raises :class:`ConfigError` with one line naming the
key, its value and what is allowed, e.g. ``pretrain.log_every=0: must be >= 1``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Iterable

__all__ = ["ConfigError", "allowed", "rule_of", "describe_rule", "check_value", "check_profile", "CROSS_RULES",
           "SECTIONS"]

SECTIONS = ("model", "data", "pretrain", "finetune")


class ConfigError(ValueError):
    """A setting that does not exist, has a value of the wrong type, or lies outside what it allows."""


def allowed(default: Any, rule: str | tuple[str, ...], *, comma_list: bool = False) -> Any:
    """A dataclass field with its default and the values it allows (see the module docstring).

    ``comma_list``: the value is the first choice alone (``"none"``) or a
    comma-separated list of the others, read as ``tracking.parse_report_to``
    reads it (case and spaces ignored).
    """
    return dataclasses.field(default=default, metadata={"allowed": rule, "comma_list": comma_list})


def rule_of(cls: type, name: str) -> str | tuple[str, ...] | None:
    """The rule declared for field ``name`` of dataclass ``cls`` (None: only its type is checked)."""
    return next(f.metadata.get("allowed") for f in dataclasses.fields(cls) if f.name == name)


_BOUND = re.compile(r"(>=|>|<=|<)\s*(\S+)")
_INTERVAL = re.compile(r"([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])")


def _in_interval(value: float, rule: str) -> bool:
    bound = _BOUND.fullmatch(rule)
    if bound:
        op, limit = bound.group(1), float(bound.group(2))
        return {">=": value >= limit, ">": value > limit, "<=": value <= limit, "<": value < limit}[op]
    interval = _INTERVAL.fullmatch(rule)
    if not interval:
        raise ValueError(f"malformed range {rule!r}")
    left, low, high, right = interval.group(1), float(interval.group(2)), float(interval.group(3)), interval.group(4)
    above = value >= low if left == "[" else value > low
    below = value <= high if right == "]" else value < high
    return above and below


def _is_choice(value: str, choices: Iterable[str], comma_list: bool) -> bool:
    choices = tuple(choices)
    if comma_list:
        if value.strip().lower() in {"", choices[0]}:
            return True
        return all(part.strip().lower() in choices[1:] for part in value.split(","))
    patterns = [re.escape(c).replace("N", r"\d+") for c in choices]
    return any(re.fullmatch(p, value) for p in patterns)


def describe_rule(rule: str | tuple[str, ...], optional: bool = False, comma_list: bool = False) -> str:
    """What a rule allows, as the end of an error message: ``must be >= 1``, ``must be in [0, 1)``."""
    if isinstance(rule, tuple):
        if comma_list:
            text = f"must be {rule[0]!r} or any of {list(rule[1:])}, comma-separated"
        else:
            text = f"must be one of {list(rule)}"
    else:
        text = f"must be {rule}" if _BOUND.fullmatch(rule) else f"must be in {rule}"
    return text.replace("must be ", "must be none or ", 1) if optional else text


def check_value(key: str, value: Any, rule: str | tuple[str, ...] | None, optional: bool = False,
                comma_list: bool = False) -> None:
    """Raise :class:`ConfigError` when ``value`` (already of the field's type) breaks ``rule``."""
    if rule is None or value is None:
        return
    if isinstance(rule, tuple):
        ok = isinstance(value, str) and _is_choice(value, rule, comma_list)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: " + describe_rule(rule, optional).replace("must be ", "must be a finite "
                                                                                       "number ", 1))
    else:
        ok = _in_interval(value, rule)
    if not ok:
        raise ConfigError(f"{key}={value!r}: {describe_rule(rule, optional, comma_list)}")


def _warmup_rules(stage: str) -> tuple[Callable[[Any], bool], dict[str, str]]:
    """A stage's warm-up lies within its run when the run has a fixed number of steps."""
    def holds(p) -> bool:
        cfg = getattr(p, stage)
        return cfg.max_steps is None or cfg.warmup_steps <= cfg.max_steps

    return holds, {f"{stage}.warmup_steps": f"must be <= {stage}.max_steps ({{{stage}.max_steps}})",
                   f"{stage}.max_steps": f"must be none or >= {stage}.warmup_steps ({{{stage}.warmup_steps}})"}


# What must hold between settings: (holds(profile), {key: what is allowed}). The error names the first key
# of the dict that the overrides changed (else the first key); "{section.name}" shows another setting's value.
MAX_PARAMETERS = 2 * 10**9  # above GPT-2 XL's 1.5 billion: a larger model here is a typo, not a plan


def gpt2_parameters(model: Any) -> int:
    """The parameters of a GPT-2 of this shape, output layer tied to the token table (as helpers.model builds it)."""
    d = model.n_embd
    return model.vocab_size * d + model.n_positions * d + model.n_layer * (12 * d * d + 13 * d) + 2 * d


_FINETUNE_SHARES = ("data.finetune_dense_share", "data.finetune_copy_share", "data.finetune_verdict_share")


def _shares_below_one(key: str) -> str:
    """What ``key`` is told when the finetuning's shares of made-up examples add up to 1 or more: the others' values."""
    return " + ".join(k if k == key else f"{k} ({{{k}}})" for k in _FINETUNE_SHARES) + " must be < 1"


_TOO_LARGE = f"makes a GPT-2 of more than {MAX_PARAMETERS:,} parameters (GPT-2 XL has 1.5 billion)"

CROSS_RULES: list[tuple[Callable[[Any], bool], dict[str, str]]] = [
    (lambda p: p.model.n_embd % p.model.n_head == 0,
     {"model.n_head": "model.n_embd ({model.n_embd}) must be divisible by model.n_head",
      "model.n_embd": "must be divisible by model.n_head ({model.n_head})"}),
    (lambda p: p.model.bos_token_id < p.model.vocab_size,
     {"model.bos_token_id": "must be < model.vocab_size ({model.vocab_size})",
      "model.vocab_size": "must be > model.bos_token_id ({model.bos_token_id})"}),
    (lambda p: p.model.eos_token_id < p.model.vocab_size,
     {"model.eos_token_id": "must be < model.vocab_size ({model.vocab_size})",
      "model.vocab_size": "must be > model.eos_token_id ({model.eos_token_id})"}),
    # pretraining blocks use positions 0 .. block_size - 1
    (lambda p: p.data.block_size <= p.model.n_positions,
     {"data.block_size": "must be <= model.n_positions ({model.n_positions})",
      "model.n_positions": "must be >= data.block_size ({data.block_size})"}),
    # a finetuning example (at most instruction_max_length tokens) starts at position position_offset
    (lambda p: p.data.position_offset + p.data.instruction_max_length <= p.model.n_positions,
     {"data.position_offset": "data.position_offset + data.instruction_max_length "
                              "({data.instruction_max_length}) must be <= model.n_positions ({model.n_positions})",
      "data.instruction_max_length": "data.position_offset ({data.position_offset}) + data.instruction_max_length "
                                     "must be <= model.n_positions ({model.n_positions})",
      "model.n_positions": "must be >= data.position_offset + data.instruction_max_length "
                           "({data.position_offset} + {data.instruction_max_length})"}),
    # stories fill what the drills and the questions leave of the training blocks
    (lambda p: p.data.copy_share + p.data.qa_share < 1,
     {"data.copy_share": "data.copy_share + data.qa_share ({data.qa_share}) must be < 1",
      "data.qa_share": "data.copy_share ({data.copy_share}) + data.qa_share must be < 1"}),
    # and the answers what the answer-dense examples and the drills leave of the finetuning examples
    (lambda p: p.data.finetune_dense_share + p.data.finetune_copy_share + p.data.finetune_verdict_share < 1,
     {key: _shares_below_one(key) for key in _FINETUNE_SHARES}),
    # a verdict drill is a yes/no answer written beside the story's value, the verdict last
    (lambda p: not p.data.finetune_verdict_share or p.data.yes_no_fact == "compared",
     {"data.finetune_verdict_share": "needs data.yes_no_fact=compared (the verdict drills are yes/no answers written "
                                     "that way), not {data.yes_no_fact}",
      "data.yes_no_fact": "must be compared while data.finetune_verdict_share ({data.finetune_verdict_share}) is "
                          "above 0"}),
    _warmup_rules("pretrain"),
    _warmup_rules("finetune"),
    (lambda p: gpt2_parameters(p.model) <= MAX_PARAMETERS,
     {key: _TOO_LARGE for key in ("model.n_embd", "model.n_layer", "model.vocab_size", "model.n_positions")}),
]


def _value(profile: Any, key: str) -> Any:
    section, _, name = key.rpartition(".")
    return getattr(getattr(profile, section) if section else profile, name)


def _check_ranges(profile: Any) -> None:
    """Every field against its own rule, section by section, then ``device``."""
    for section in SECTIONS:
        config = getattr(profile, section)
        for f in dataclasses.fields(config):
            optional = "None" in str(f.type)
            check_value(f"{section}.{f.name}", getattr(config, f.name), f.metadata.get("allowed"), optional,
                        f.metadata.get("comma_list", False))
    device = next(f for f in dataclasses.fields(profile) if f.name == "device")
    check_value("device", profile.device, device.metadata.get("allowed"))


def check_profile(profile: Any, changed: Iterable[str] = ()) -> None:
    """Check every setting's range, then every rule of :data:`CROSS_RULES`; raise on the first problem.

    ``changed``: the keys the caller set, so that a broken cross rule is
    reported under the key the user touched (``model.n_head=7: ...``).
    """
    _check_ranges(profile)
    changed = set(changed)
    values = {section: getattr(profile, section) for section in SECTIONS}
    for holds, texts in CROSS_RULES:
        if not holds(profile):
            key = next((k for k in texts if k in changed), next(iter(texts)))
            raise ConfigError(f"{key}={_value(profile, key)!r}: {texts[key].format_map(values)}")
