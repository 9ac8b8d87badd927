"""Intervals on known counts, and the story cloze: candidates from the story, the answer never in the cue."""

from __future__ import annotations

import re

import pytest

from helpers.stats import share, wilson_interval
from helpers.stories import corpus, entities
from helpers.story_cloze import CLOZE_KINDS, cloze_items, frequency_baseline, story_words


@pytest.mark.parametrize("successes, n, low, high", [
    # Wilson score intervals at 95%, worked by hand from the formula (z = 1.96)
    (0, 10, 0.0, 0.27753),
    (10, 10, 0.72247, 1.0),
    (5, 10, 0.23659, 0.76341),
    (1, 4, 0.04559, 0.69936),
    (60, 100, 0.50200, 0.69060),
    (150, 300, 0.44378, 0.55622),
])
def test_wilson_interval_on_known_counts(successes, n, low, high):
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=1e-4)  # z = 1.96 by hand, 1.959964 in the code
    assert share(successes, n) == {"share": successes / n, "low": got[0], "high": got[1],
                                   "successes": successes, "n": n}


def test_wilson_interval_refuses_impossible_counts():
    with pytest.raises(ValueError, match="at least one trial"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match=r"successes must lie in 0..3, got 4"):
        wilson_interval(4, 3)


def test_cloze_candidates_come_from_the_story_and_the_answer_is_never_in_the_cue():
    stories = corpus("validation", 300)
    items = [item for story in stories for item in cloze_items(story)]
    assert {kind: sum(i.kind == kind for i in items) for kind in CLOZE_KINDS} == {k: 300 for k in CLOZE_KINDS}
    for item in items:
        assert item.answer in item.candidates and len(set(item.candidates)) == len(item.candidates) >= 2
        for word in item.candidates:  # every candidate is written in the story, as a whole word
            assert re.search(rf"\b{re.escape(word)}\b", item.story, re.IGNORECASE), (word, item.story)
        assert not re.search(rf"\b{re.escape(item.answer)}\b", item.cue, re.IGNORECASE), item
        assert item.context == item.story + "\n" + item.cue and item.chance == 1 / len(item.candidates)
    story = stories[0]
    by_kind = {item.kind: item for item in cloze_items(story)}
    assert by_kind["who"].answer == story.hero and by_kind["where"].answer == story.place
    assert by_kind["feeling"].answer == story.end_feeling and story.feeling in by_kind["feeling"].candidates
    assert set(story_words(story)) >= {story.hero, story.place, story.end_feeling} | entities(story.text)["names"]


def test_frequency_baseline_picks_the_most_common_candidate():
    stories = corpus("validation", 40)
    items = [item for story in stories for item in cloze_items(story)]
    texts = ["Mom Mom Mom proud proud park", "Mom proud"]
    baseline = frequency_baseline(items, texts)
    expected = {}
    for kind in CLOZE_KINDS:
        chosen = [i for i in items if i.kind == kind]
        counts = {w: sum(len(re.findall(rf"\b{w.lower()}\b", t.lower())) for t in texts) for i in chosen
                  for w in i.candidates}
        guesses = [max(i.candidates, key=lambda w: (counts[w], -i.candidates.index(w))) for i in chosen]
        expected[kind] = sum(g == i.answer for g, i in zip(guesses, chosen)) / len(chosen)
    assert baseline == expected
