"""The name-lookup probe on readers whose choices are known: its ceiling, its control, its bookkeeping."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from helpers.config import get_profile
from helpers.name_lookup import ALL_NAMES, name_lookup, name_tokens, swapped_stories
from helpers.sources import held_out_questions
from helpers.tokenizer import profile_tokenizer


class FirstNameReader(nn.Module):
    """Scores the first name it has read 2, every other name it has read 1, everything else 0."""

    def __init__(self, vocab_size: int, names: list[int]):
        super().__init__()
        self.vocab_size, self.names = vocab_size, set(names)
        self.anchor = nn.Parameter(torch.zeros(1))  # so that the probe can ask where the model lives

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        for row, ids in enumerate(input_ids.tolist()):
            seen: list[int] = []
            for t, token in enumerate(ids):
                if token in self.names and token not in seen:
                    seen.append(token)
                for k, name in enumerate(seen):
                    logits[row, t, name] = 2.0 if k == 0 else 1.0
        return SimpleNamespace(logits=logits)


@pytest.fixture(scope="module")
def story_tok():
    return profile_tokenizer(get_profile("lesson"))


def test_a_reader_of_the_first_name_finds_every_main_character_and_no_friend(story_tok):
    records = held_out_questions(6)
    reader = FirstNameReader(len(story_tok), name_tokens(story_tok))
    got = name_lookup(reader, story_tok, records, batch_size=4)
    heroes = [r for r in records if r.get("role") == "hero"]
    friends = [r for r in records if r.get("role") == "friend"]
    assert got["hero"]["right_first"]["n"] == len(heroes) == 6 and got["friend"]["right_first"]["n"] == len(friends)
    assert friends and got["all"]["right_first"]["n"] == len(heroes) + len(friends)  # parents are not names
    assert got["hero"]["right_first"]["share"] == 1 and got["hero"]["mean_rank"] == 1
    assert got["hero"]["story_first"]["share"] == 1
    # a friend question names the main character first: the reader echoes it, which is neither right nor reading
    assert got["friend"]["right_first"]["share"] == 0 and got["friend"]["story_first"]["share"] == 0
    assert got["friend"]["mean_rank"] == 2  # the friend is the second name it read
    assert got["hero"]["right_chance"] == 1 / 200
    assert got["hero"]["story_chance"] == pytest.approx(
        sum(len({n for n in ALL_NAMES if f" {n} " in r["input"].replace(".", " ").replace(",", " ")})
            for r in heroes) / len(heroes) / 200)


def test_the_story_swapped_control_leaves_a_reader_nothing_to_find(story_tok):
    records = held_out_questions(6)
    reader = FirstNameReader(len(story_tok), name_tokens(story_tok))
    control = name_lookup(reader, story_tok, records, control=True)
    assert control["hero"]["right_first"]["successes"] == 0 and control["hero"]["story_first"]["successes"] == 0
    assert control["all"]["right_first"]["n"] == name_lookup(reader, story_tok, records)["all"]["right_first"]["n"]


def test_each_question_is_asked_about_the_next_story():
    records = [{"input": s, "q": q} for s, q in (("A", 1), ("A", 2), ("B", 3), ("C", 4))]
    assert [(r["input"], r["q"]) for r in swapped_stories(records)] == [("B", 1), ("B", 2), ("C", 3), ("A", 4)]
    with pytest.raises(ValueError, match="at least two stories"):
        swapped_stories(records[:2])


def test_names_must_start_with_tokens_of_their_own(story_tok):
    assert len(set(name_tokens(story_tok))) == len(ALL_NAMES) == 200
    with pytest.raises(ValueError, match=r"same token.*\['Lily', 'Lily'\]"):
        name_tokens(story_tok, ["Lily", "Lily", "Tom"])
    with pytest.raises(ValueError, match="who-questions whose answers are names"):
        name_lookup(FirstNameReader(len(story_tok), []), story_tok,
                    [r for r in held_out_questions(2) if r["kind"] != "who"])
