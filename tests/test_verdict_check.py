"""The verdict check (helpers.probes.verdict_check) on models whose answers can be worked out by hand."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from rigged import constant_model, first_token, one_thread, parity_model  # noqa: F401 - one_thread: a fixture
from helpers.probes import verdict_check

# Read as a verdict drill reads them: end-of-text, then " At the beach? The story says at the park, so" (1 + 12
# tokens), " A ball? The story says a kite, so" (1 + 11: "kite" is " k", "ite") and " Mia? The story says Mia, so"
# (1 + 8); the verdict comes next, at positions 12, 11 and 8.
RECORDS = [{"output": "At the beach? The story says at the park, so no.", "verdict": "no", "kind": "yes_no"},
           {"output": "A ball? The story says a kite, so no.", "verdict": "no", "kind": "yes_no"},
           {"output": "Mia? The story says Mia, so yes.", "verdict": "yes", "kind": "yes_no"},
           {"output": "Mia", "kind": "who"}]


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return AutoTokenizer.from_pretrained(str(gpt2_dir))


def test_a_model_that_always_says_one_verdict_scores_that_verdicts_share(gpt2, one_thread):
    yes, no = first_token(gpt2, " yes"), first_token(gpt2, " no")
    says_no = verdict_check(constant_model(len(gpt2), {no: 5.0, yes: 1.0}, eos_token_id=gpt2.eos_token_id), gpt2, RECORDS)
    says_yes = verdict_check(constant_model(len(gpt2), {no: 1.0, yes: 5.0}, eos_token_id=gpt2.eos_token_id), gpt2,
                             RECORDS)
    assert (says_no["successes"], says_no["n"], says_no["always_no"]["successes"]) == (2, 3, 2)  # the who-record skipped
    assert (says_yes["successes"], says_yes["n"], says_yes["always_no"]["successes"]) == (1, 3, 2)


def test_the_verdict_is_read_right_after_the_words_it_compares(gpt2, one_thread):
    # a parity model writes its "even" token after a context whose last position is even: here after the first and
    # the third record's contexts (12 and 8), its "odd" one after the second's (11)
    yes, no = first_token(gpt2, " yes"), first_token(gpt2, " no")
    even_yes = verdict_check(parity_model(len(gpt2), even=yes, odd=no, eos_token_id=gpt2.eos_token_id), gpt2, RECORDS)
    even_no = verdict_check(parity_model(len(gpt2), even=no, odd=yes, eos_token_id=gpt2.eos_token_id), gpt2, RECORDS)
    assert even_yes["successes"] == 2 and even_no["successes"] == 1  # yes, no, yes: the beach wrong; no, yes, no


def test_a_model_given_the_verdicts_scores_all_and_records_without_them_are_refused(gpt2, one_thread):
    yes, no = first_token(gpt2, " yes"), first_token(gpt2, " no")
    model = parity_model(len(gpt2), even=yes, odd=no, eos_token_id=gpt2.eos_token_id)
    # a word beside itself always leaves the verdict at an even position; a ball beside a kite at an odd one
    assert verdict_check(model, gpt2, [RECORDS[2], RECORDS[1]])["share"] == 1.0
    with pytest.raises(ValueError, match="verdict_check needs yes/no records written with data.yes_no_fact=compared"):
        verdict_check(model, gpt2, RECORDS[3:])
