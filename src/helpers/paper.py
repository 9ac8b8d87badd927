"""The paper's own numbers and prompts, named once so every lesson, test and report quotes the same.

Its training settings live in the ``paper`` profile of :mod:`helpers.config`
and its prompt templates in :mod:`helpers.prompts`; this module holds what it
*measured* and the prompts it showed results for.
"""

from __future__ import annotations

__all__ = ["PAPER_PERPLEXITY", "PAPER_STORY_PROMPT", "PAPER_INSTRUCTIONS", "PAPER_JUDGE_EXAMPLE"]

# The paper's two perplexities: section 4.4 (pretrained, TinyStories
# validation) and section 5.3 (finetuned, the held-out tenth of Alpaca).
PAPER_PERPLEXITY = {"pretrain": 10.1827, "finetune": 394.8}

# The story opening the paper continues and compares with gpt2 (section 4.4).
PAPER_STORY_PROMPT = "Once upon a time,"

# The paper's two Alpaca instructions (section 5.3) as records; a model reads
# them through helpers.prompts.model_prompt, like every other instruction.
PAPER_INSTRUCTIONS = {
    "healthy_tips": {"instruction": "Give three tips for staying healthy.", "input": ""},
    "concise_sentence": {
        "instruction": "Edit the following sentence to make it more concise.",
        "input": "He ran to the bus stop in order to catch the bus that was due to arrive in five minutes.",
    },
}

# The one completion the paper shows graded by GPT-3.5 (section 4.4): four
# scores out of 10 and the age groups the grader guessed.
PAPER_JUDGE_EXAMPLE = {"grammar": 2, "creativity": 2, "consistency": 1, "plot": 1, "age_groups": ("A", "B")}
