"""The paper's prompt template and the one place that decides what text a model reads for a record.

The paper asks every instruction in Stanford Alpaca's template (its Listing
1), with one difference: its templates end in ``"### Response: "`` with a
trailing space. Tokenised alone, that space becomes a token of its own and the
answer's first word is cut into pieces no story contains ("Pete" as ``Pet``
``e`` where a story writes ``ĠPete``). So the text is cut one character
earlier: the model reads the template up to the colon (:func:`model_prompt`)
and the final space starts what it writes (:func:`response_text`). Prompt and
response together are the paper's characters exactly; only the cut between
the two token sequences moves.

Every caller that asks a model a question, trains on an instruction or
measures one goes through these functions; nothing else composes a template.
"""

from __future__ import annotations

from typing import Mapping

__all__ = ["PROMPT_TEMPLATES", "format_prompt", "model_prompt", "response_text", "FOLLOW_UP_TEMPLATE",
           "follow_up_prompt"]

# The paper's two templates, character for character. They follow Stanford
# Alpaca's, except that the paper's end with "Response: " (a trailing space)
# where Alpaca's end with "Response:".
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

# Not the paper's: a further question about the same input, asked after an answer in the same text
# (answer-dense finetuning, helpers.data.dense_examples), in the paper's headers.
FOLLOW_UP_TEMPLATE = "\n\n### Instruction:\n{instruction}\n\n### Response: "


def format_prompt(record: Mapping[str, str]) -> str:
    """The paper's prompt for one record, final space included; the input block only when input is non-empty."""
    if record.get("input", "").strip():
        return PROMPT_TEMPLATES["prompt_input"].format(instruction=record["instruction"], input=record["input"])
    return PROMPT_TEMPLATES["prompt_no_input"].format(instruction=record["instruction"])


def model_prompt(record: Mapping[str, str]) -> str:
    """The exact text a model reads for ``record``: the paper's prompt cut before its final space."""
    return format_prompt(record).rstrip(" ")


def response_text(record: Mapping[str, str]) -> str:
    """What the model learns to write after :func:`model_prompt`: the template's final space, then the output."""
    full = format_prompt(record)
    return full[len(full.rstrip(" ")):] + record["output"]


def follow_up_prompt(record: Mapping[str, str]) -> str:
    """A further question about the input an earlier answer in the same text was about, cut like
    :func:`model_prompt`: the paper's instruction and response headers, without the prompt's preamble and input."""
    return FOLLOW_UP_TEMPLATE.format(instruction=record["instruction"]).rstrip(" ")
