"""Intervals on known counts, and the story cloze: candidates from the story, the answer never in the cue."""

from __future__ import annotations

import dataclasses

import math
import re

import pytest

from rigged import one_thread  # noqa: F401 - a fixture
from helpers.stats import share, wilson_interval
from helpers.stories import corpus, entities
from helpers.story_cloze import CLOZE_KINDS, ClozeItem, cloze_items, frequency_baseline, story_words, without_story
from helpers.story_grammar import NAMES


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
    def item(kind, answer, *candidates):
        return ClozeItem(kind, "a story", "a cue", answer, candidates)

    items = [item("who", "Pete", "Pete", "Tom"),          # tom 2 > pete 1: guesses Tom, wrong
             item("where", "park", "beach", "park"),      # beach 2 > park 1 ("parking" is another word): wrong
             item("where", "beach", "farm", "beach"),     # beach 2 > farm 0: right
             item("what", "kite", "ball", "kite"),        # kite 2 (KITE counts, case is ignored) > ball 1: right
             item("feeling", "happy", "happy", "sad", "proud"),  # all 0: the first candidate, happy: right
             item("toy", "teddy bear", "ball", "teddy bear")]  # two words: teddy bear 2 > ball 1: right
    texts = ["Tom met Tom and Pete at the beach with a KITE and a ball.",
             "The beach, the Park and two parking lots: parking! A kite, a teddy bear and a Teddy Bear."]
    assert frequency_baseline(items, texts) == {"who": 0.0, "where": 0.5, "what": 1.0, "feeling": 1.0, "toy": 1.0}


@pytest.mark.parametrize("successes, n, low, high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat. Med. 17:857,
    # Table I, method 3 (Wilson score interval without continuity correction), to four decimals.
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_interval_equals_the_published_values(successes, n, low, high):
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=5e-5)
    assert got[0] >= 0.0 and got[1] <= 1.0


def test_the_default_interval_is_at_the_exact_normal_quantile():
    from statistics import NormalDist

    from helpers.stats import Z95

    z = NormalDist().inv_cdf(0.975)  # 1.95996398454005..., not the rounded 1.96
    assert Z95 == pytest.approx(z, rel=1e-12)
    assert wilson_interval(81, 263) == pytest.approx(wilson_interval(81, 263, z=z), rel=1e-12)
    assert wilson_interval(81, 263) != pytest.approx(wilson_interval(81, 263, z=1.96), rel=1e-7)


# ----------------------------------------------------------------- the cloze, scored by a model whose logits are known

def _cloze_items():
    """Four blanks written by hand; the model below sees the same logits after every context."""
    return [
        ClozeItem("who", "Pete and Tom went out.", "There once was a boy named", "Pete", ("Pete", "Tom")),
        ClozeItem("where", "Lily went to the park, not the beach.", "One sunny day, Lily went to the", "park",
                  ("beach", "park")),
        ClozeItem("feeling", "Sam was sad, then happy, then proud.", "In the end, Sam felt", "happy",
                  ("sad", "happy", "proud")),
        # " dog" and " dolphin" start with the same token (" do"): whole words are scored
        ClozeItem("what", "Ann helped the dog and the dolphin.", "Ann helped the", "dog", ("dog", "dolphin")),
    ]


def _ids(tok, word: str) -> list[int]:
    return tok(word, add_special_tokens=False)["input_ids"]


def _scored(result: dict) -> dict:
    """Share, counts and chance per kind; the interval is checked to be the share's Wilson interval."""
    for value in result.values():
        assert (value["low"], value["high"]) == wilson_interval(value["successes"], value["n"])
    return {kind: (v["successes"], v["n"], v["share"], pytest.approx(v["chance"])) for kind, v in result.items()}


def test_cloze_scores_candidates_as_the_story_writes_them(pre, one_thread):
    """The candidate after the cue is " Pete" (with its space, one token), not "Pete" (two other tokens)."""
    from helpers.probes import cloze_accuracy
    from rigged import constant_model

    _, tok = pre
    for word in ("Pete", "park", "happy"):  # the two spellings really tokenise differently
        assert _ids(tok, " " + word)[0] != _ids(tok, word)[0] and len(_ids(tok, " " + word)) == 1
    assert _ids(tok, " dog")[0] == _ids(tok, " dolphin")[0] and len(_ids(tok, " dog")) == 2
    do, g = _ids(tok, " dog")
    favourite = {_ids(tok, " Pete")[0]: 5.0, _ids(tok, " park")[0]: 5.0, _ids(tok, " happy")[0]: 5.0,
                 do: 5.0, g: 5.0}  # after any context: " Pete", " park", " happy", " do"+"g" are likely
    model = constant_model(len(tok), favourite, eos_token_id=tok.eos_token_id)
    # every answer is the favourite among its candidates; " dog" beats " dolphin" on its second token
    assert _scored(cloze_accuracy(model, tok, _cloze_items())) == {
        "who": (1, 1, 1.0, 1 / 2), "where": (1, 1, 1.0, 1 / 2), "feeling": (1, 1, 1.0, 1 / 3),
        "what": (1, 1, 1.0, 1 / 2), "all": (4, 4, 1.0, (1 / 2 + 1 / 2 + 1 / 3 + 1 / 2) / 4)}


def test_cloze_counts_a_tie_as_wrong_and_tallies_each_kind(pre, one_thread):
    from helpers.probes import cloze_accuracy
    from rigged import constant_model

    _, tok = pre
    items = _cloze_items()
    flat = constant_model(len(tok), {}, eos_token_id=tok.eos_token_id)  # every token equally likely
    # who, where, feeling: every candidate is one token of probability 1/V, a tie, so wrong; what: " dog"
    # (two tokens, (1/V)^2) beats " dolphin" (three tokens, (1/V)^3) as whole words, so right
    assert _scored(cloze_accuracy(flat, tok, items)) == {
        "who": (0, 1, 0.0, 1 / 2), "where": (0, 1, 0.0, 1 / 2), "feeling": (0, 1, 0.0, 1 / 3),
        "what": (1, 1, 1.0, 1 / 2), "all": (1, 4, 0.25, 11 / 24)}
    assert _scored(cloze_accuracy(flat, tok, items[:3]))["all"] == (0, 3, 0.0, 4 / 9)  # ties only: none right
    # " Pete" right; " beach" beats the answer " park"; feeling all tied; " dog" and " dolphin" tie on " do"
    # and " dolphin"'s two more tokens make it less likely than " dog"'s one: right
    mixed = constant_model(len(tok), {_ids(tok, " Pete")[0]: 5.0, _ids(tok, " beach")[0]: 5.0},
                           eos_token_id=tok.eos_token_id)
    assert _scored(cloze_accuracy(mixed, tok, items, batch_size=3)) == {
        "who": (1, 1, 1.0, 1 / 2), "where": (0, 1, 0.0, 1 / 2), "feeling": (0, 1, 0.0, 1 / 3),
        "what": (1, 1, 1.0, 1 / 2), "all": (2, 4, 0.5, 11 / 24)}
    # two blanks of one kind: the kind's share is over both
    twice = items + [ClozeItem("who", "Tom and Pete.", "A boy named", "Tom", ("Pete", "Tom"))]
    assert _scored(cloze_accuracy(mixed, tok, twice))["who"] == (1, 2, 0.5, 1 / 2)
    assert _scored(cloze_accuracy(mixed, tok, twice))["all"] == (2, 5, 0.4, (11 / 24 * 4 + 1 / 2) / 5)


def test_two_designs_scored_together_keep_their_own_tallies(pre, one_thread):
    """The same four blanks with other candidates (as the absent-words design asks them), scored in one call:
    " Pete" and " beach" favoured, so the second set gets who right (" Pete" over " Sam"), where wrong (" beach"
    over " park"), feeling tied, and what tied on first tokens (" cat" against " do" of " dog")."""
    from helpers.probes import cloze_accuracies
    from rigged import constant_model

    _, tok = pre
    items = _cloze_items()
    others = [dataclasses.replace(item, candidates=candidates) for item, candidates in zip(
        items, [("Sam", "Pete"), ("park", "beach", "shop"), ("happy", "glad"), ("dog", "cat")])]
    mixed = constant_model(len(tok), {_ids(tok, " Pete")[0]: 5.0, _ids(tok, " beach")[0]: 5.0},
                           eos_token_id=tok.eos_token_id)
    both = cloze_accuracies(mixed, tok, {"own": items, "other": others}, batch_size=3)
    assert list(both) == ["own", "other"]
    assert _scored(both["own"]) == {
        "who": (1, 1, 1.0, 1 / 2), "where": (0, 1, 0.0, 1 / 2), "feeling": (0, 1, 0.0, 1 / 3),
        "what": (1, 1, 1.0, 1 / 2), "all": (2, 4, 0.5, 11 / 24)}
    assert _scored(both["other"]) == {
        "who": (1, 1, 1.0, 1 / 2), "where": (0, 1, 0.0, 1 / 3), "feeling": (0, 1, 0.0, 1 / 2),
        "what": (0, 1, 0.0, 1 / 2), "all": (1, 4, 0.25, (1 / 2 + 1 / 3 + 1 / 2 + 1 / 2) / 4)}

def test_cloze_batches_score_what_one_plain_forward_pass_scores(pre, one_thread):
    """A trained model, items of different lengths in one right-padded batch: each read alone gives the same ranks."""
    import torch

    from helpers.probes import cloze_accuracy

    model, tok = pre
    items = [item for story in corpus("validation", 3) for item in cloze_items(story)]
    right = []
    for item in items:
        ids = _ids(tok, item.context)
        with torch.no_grad():
            last = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].double(), dim=-1)
        words = [_ids(tok, " " + c) for c in item.candidates]
        if len({w[0] for w in words}) < len(words):  # a shared first token: whole words
            scores = []
            for w in words:
                with torch.no_grad():
                    lp = torch.log_softmax(model(torch.tensor([ids + w])).logits[0].double(), dim=-1)
                scores.append(sum(float(lp[len(ids) - 1 + k, t]) for k, t in enumerate(w)))
        else:
            scores = [float(last[w[0]]) for w in words]
        best = max(scores)
        right.append(scores[item.candidates.index(item.answer)] == best and sorted(scores)[-2] < best)
    got = cloze_accuracy(model, tok, items, batch_size=5)
    assert got["all"]["successes"] == sum(right) and got["all"]["n"] == 12
    for kind in CLOZE_KINDS:
        assert got[kind]["successes"] == sum(r for r, i in zip(right, items) if i.kind == kind)


def test_cloze_log_probabilities_equal_plain_forward_passes(pre, one_thread):
    """The batched next-token scores and the whole-word scores, against one unpadded forward pass each.

    A word's log-probability after a context is log p(context + word) - log p(context): the whole
    sequence's log-likelihood, computed a second way.
    """
    import torch

    from helpers.probes import _word_log_probs, last_log_probs

    model, tok = pre
    model.eval()
    contexts = [_ids(tok, item.context) for story in corpus("validation", 2) for item in cloze_items(story)]
    contexts += [_ids(tok, "Tom had a dog."), _ids(tok, "Once")]  # much shorter: padded far to the right
    assert len({len(c) for c in contexts}) > 2
    with torch.no_grad():
        batched = last_log_probs(model, contexts, torch.device("cpu"))
        for ids, got in zip(contexts, batched):
            alone = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].double(), dim=-1)
            assert torch.allclose(got.double(), alone, atol=1e-4)

        def likelihood(ids):
            lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
            return sum(float(lp[i, t]) for i, t in enumerate(ids[1:]))

        words = [_ids(tok, word) for word in (" dog", " dolphin", " Pete")]  # two, three and one tokens
        for ids in contexts[:3] + contexts[-2:]:
            expected = [likelihood(ids + w) - likelihood(ids) for w in words]
            assert _word_log_probs(model, ids, words, torch.device("cpu")) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("counts, low, high", [  # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10
    ((56, 70, 48, 80), 0.0524, 0.3339),
    ((9, 10, 3, 10), 0.1705, 0.8090),
    ((6, 7, 2, 7), 0.0582, 0.8062),
    ((5, 56, 0, 29), -0.0381, 0.1926),
])
def test_the_interval_of_a_difference_is_newcombes(counts, low, high):
    from helpers.stats import compare_shares

    compared = compare_shares(*counts)
    assert (round(compared["low"], 4), round(compared["high"], 4)) == (low, high)
    assert compared["difference"] == pytest.approx(counts[0] / counts[1] - counts[2] / counts[3], abs=1e-15)


def test_beating_a_baseline_needs_the_whole_difference_above_zero():
    """1 of 66 against 0 of 66 was "above" by one old rule and not by the other: one rule now, not distinguishable."""
    from helpers.stats import compare_shares

    assert compare_shares(1, 66, 0, 66)["verdict"] == "not distinguishable"
    assert compare_shares(24, 66, 0, 66)["verdict"] == "above"
    assert compare_shares(0, 66, 24, 66)["verdict"] == "below"
    compared = compare_shares(24, 66, 0, 66)
    assert compared["effect"] == pytest.approx(2 * math.asin(math.sqrt(24 / 66)), abs=1e-12)  # Cohen's h against 0
    assert compare_shares(0, 66, 24, 66)["effect"] == pytest.approx(-compared["effect"], abs=1e-12)
    assert compare_shares(33, 66, 33, 66)["effect"] == 0.0


def test_perplexity_is_exp_of_the_loss_and_finite_for_a_diverged_loss():
    from helpers.stats import LOSS_CAP, perplexity_from_loss

    assert perplexity_from_loss(math.log(10.18)) == pytest.approx(10.18, rel=1e-12)
    assert perplexity_from_loss(0.0) == 1.0
    assert perplexity_from_loss(1e9) == math.exp(LOSS_CAP) and math.isfinite(perplexity_from_loss(1e9))


def test_absent_distractors_are_words_of_the_answers_sort_that_the_story_never_names():
    stories = corpus("validation", 40)
    for story in stories:
        items = cloze_items(story, "absent")
        assert [i.kind for i in items] == [i.kind for i in cloze_items(story)]  # the same blanks as the first design
        for item in items:
            others = [c for c in item.candidates if c != item.answer]
            assert len(others) == 5 and item.answer in item.candidates and item.chance == 1 / 6
            assert not any(re.search(rf"\b{re.escape(w)}\b", story.text, re.IGNORECASE) for w in others)
            if item.kind == "who":
                assert set(item.candidates) <= set(NAMES[story.hero_gender])
    assert cloze_items(stories[0], "absent") == cloze_items(stories[0], "absent")  # the same draw every time
    places = [i.candidates.index(i.answer) for s in stories for i in cloze_items(s, "absent")]
    assert len(set(places)) == 6  # the answer is not always in one place
    with pytest.raises(ValueError, match="distractors must be one of"):
        cloze_items(stories[0], "others")


def test_the_story_removed_control_catches_a_model_that_does_not_read(pre, one_thread):
    """Without the story a model that ignores context scores exactly what it scored with it; the copying
    rule, which reads, is right on the who blanks of the stories that write "named <hero>" (the cue
    ends in " named") and falls to nothing once the story is gone."""
    from helpers.copying import CopyingOracle
    from helpers.probes import cloze_accuracy
    from rigged import constant_model

    _, tok = pre
    items = [i for s in corpus("validation", 6) for i in cloze_items(s, "absent")]
    removed = without_story(items)
    assert [i.context for i in removed] == [i.cue for i in items]
    model = constant_model(len(tok), {_ids(tok, " Pete")[0]: 5.0, _ids(tok, " farm")[0]: 5.0},
                           eos_token_id=tok.eos_token_id)
    assert cloze_accuracy(model, tok, removed) == cloze_accuracy(model, tok, items)
    oracle = CopyingOracle(len(tok))
    with_story, without = cloze_accuracy(oracle, tok, items), cloze_accuracy(oracle, tok, removed)
    assert with_story["who"]["successes"] == sum(f"named {s.hero}" in s.text for s in corpus("validation", 6))
    assert with_story["who"]["successes"] >= 3 and without["all"]["successes"] == 0
