"""The paper's template, the cut the model reads at, and that nothing else composes a prompt."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ALPACA_335, ROOT, require_shared
from helpers.evaluate import comparison_prompts
from helpers.paper import PAPER_INSTRUCTIONS, PAPER_STORY_PROMPT
from helpers.prompts import PROMPT_TEMPLATES, follow_up_prompt, format_prompt, model_prompt, response_text
from helpers.sources import story_questions

WITH_INPUT = {"instruction": "Edit this.", "input": "He ran.", "output": "Ran."}
NO_INPUT = {"instruction": "Give tips.", "input": "", "output": "Sleep."}


def test_the_templates_are_the_papers_character_for_character():
    assert format_prompt(WITH_INPUT) == (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nEdit this.\n\n### Input:\nHe ran.\n\n### Response: ")
    assert format_prompt(NO_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\nGive tips.\n\n### Response: ")
    # an input of spaces only counts as no input, as in Stanford Alpaca's code
    assert format_prompt({**NO_INPUT, "input": "  "}) == PROMPT_TEMPLATES["prompt_no_input"].format(instruction="Give tips.")


def test_the_model_reads_up_to_the_colon_and_writes_the_space():
    assert model_prompt(WITH_INPUT).endswith("### Response:")
    assert response_text(WITH_INPUT) == " Ran."
    assert model_prompt(NO_INPUT) == format_prompt(NO_INPUT)[:-1]
    assert response_text(NO_INPUT) == " Sleep."


def test_prompt_and_response_are_the_papers_characters_on_real_records():
    require_shared()
    records = json.loads(Path(ALPACA_335).read_text()) + story_questions("train", 50, 0)
    for record in records:
        assert model_prompt(record) + response_text(record) == format_prompt(record) + record["output"]
        assert not model_prompt(record).endswith(" ") and response_text(record).startswith(" ")


def test_the_paper_instructions_and_story_opening():
    assert PAPER_STORY_PROMPT == "Once upon a time,"
    assert format_prompt(PAPER_INSTRUCTIONS["healthy_tips"]) == PROMPT_TEMPLATES["prompt_no_input"].format(
        instruction="Give three tips for staying healthy.")
    sentence = "He ran to the bus stop in order to catch the bus that was due to arrive in five minutes."
    assert model_prompt(PAPER_INSTRUCTIONS["concise_sentence"]).endswith(f"### Input:\n{sentence}\n\n### Response:")


def test_a_finetuned_run_is_compared_on_the_instructions_as_the_model_reads_them():
    stories = {"stories": [{"beginning": "Tom had a dog."}, {"beginning": "Mia ran."}]}
    asked = comparison_prompts("finetune", stories)
    assert asked == [model_prompt(r) for r in PAPER_INSTRUCTIONS.values()]
    assert all(p.endswith("### Response:") for p in asked) and PAPER_STORY_PROMPT not in asked
    assert comparison_prompts("pretrain", stories) == [PAPER_STORY_PROMPT, "Tom had a dog.", "Mia ran."]


def test_only_the_prompts_module_composes_a_prompt():
    """Library code and lessons ask the owner; a second composition of the template would drift."""
    library = {p.name: p.read_text() for p in (ROOT / "src" / "helpers").glob("*.py") if p.name != "prompts.py"}
    for mark in ("### Response", "PROMPT_TEMPLATES[", '.rstrip(" ")'):
        assert [name for name, text in library.items() if mark in text] == [], mark
    for notebook in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        # a piece the student writes from scratch (lesson 4's encode) is the one exception: its tests check it
        code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"]
                          if c["cell_type"] == "code" and "# BEGIN SOLUTION" not in "".join(c["source"]))
        assert '.rstrip(" ")' not in code and "model_prompt(format_prompt(" not in code, notebook.name


def test_a_follow_up_question_repeats_the_papers_headers_only():
    record = {"instruction": "Who ran?", "input": "Sam ran.", "output": "Sam"}
    assert follow_up_prompt(record) == "\n\n### Instruction:\nWho ran?\n\n### Response:"
    assert follow_up_prompt({**record, "input": ""}) == follow_up_prompt(record)  # the input is read once, earlier
    assert (format_prompt(record) + record["output"]).endswith("### Response: Sam")
    assert follow_up_prompt(record) + response_text(record) == "\n\n### Instruction:\nWho ran?\n\n### Response: Sam"
