"""Measures of text that need no model: repetition, grammar, consistency, answers."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from helpers.stories import corpus, entities
from helpers.story_grammar import GIRL_NAMES
from helpers.text_metrics import (
    answer_fits_kind, consistency_share, grammar_share, repetition, repetition_table, score_answers,
    versus_baselines, yes_no_verdict,
)


# The paper's two story continuations for "Once upon a time," (section 4.4).
PAPER_GPT2 = (
    "the world was a place of great beauty and great danger. The world was a place of great danger, and the "
    "world was a place of great danger. The world was a place of great danger, and the world was a place of "
    "great danger. The world was a place of great danger, and the world was a place of great danger."
)
PAPER_SMALL = (
    "there was a little girl named Lily who loved to draw with her cat. One day, she was playing outside and "
    "suddenly noticed something shiny in the garden. She wanted to build something in the distance. Kitty ran "
    "to her friend Tim and said, \"Welcome. You have to make me happy.\""
)


# ----------------------------------------------------------------- repetition


def test_repetition_exact_values():
    loop = repetition("The world was a place of great danger, and the world was a place of great danger.")
    assert loop == {"words": 17, "distinct_1": 9 / 17, "distinct_2": 9 / 16, "distinct_3": 9 / 15,
                    "repeated_4gram_share": pytest.approx(5 / 14)}
    fresh = repetition("Don't stop, Lily ran home!")
    assert fresh == {"words": 5, "distinct_1": 1.0, "distinct_2": 1.0, "distinct_3": 1.0,
                     "repeated_4gram_share": 0.0}
    assert repetition("Hi there.") == {"words": 2, "distinct_1": 1.0, "distinct_2": 1.0, "distinct_3": None,
                                          "repeated_4gram_share": None}


def test_papers_gpt2_loop_scores_high_repetition():
    gpt2, small = repetition(PAPER_GPT2), repetition(PAPER_SMALL)
    assert gpt2["repeated_4gram_share"] > 0.7 > 0.0 == small["repeated_4gram_share"]
    assert gpt2["distinct_2"] < 0.3 < 0.9 < small["distinct_2"]


def test_repetition_table_averages_per_model():
    rows = repetition_table({"a": ["one two three four", "one one one one one"], "b": ["Hi there."]})
    assert rows[0]["model"] == "a" and rows[0]["texts"] == 2
    assert rows[0]["distinct_1"] == pytest.approx((1.0 + 0.2) / 2)
    assert rows[0]["repeated_4gram_share"] == pytest.approx((0.0 + 0.5) / 2)
    assert rows[1]["distinct_3"] is None and rows[1]["distinct_1"] == 1.0


# ----------------------------------------------------------------- learning-order measures


def test_grammar_share():

    assert grammar_share([s.text for s in corpus("validation", 5)]) == 1.0
    assert grammar_share(["ball the Lily red had. Dog cat the ran park!", "happy was very the."]) == 0.0
    assert grammar_share([" She had a red ball. She was so"]) == 1.0  # the cut-off fragment is left out
    assert grammar_share([' She had a red ball. "Let\'s go!']) == 1.0  # an open quote is unfinished
    assert grammar_share([" She had a red ball. Ball red a had she."]) == 0.5
    assert grammar_share(["no sentence ends here", ""]) == 0.0


def test_consistency_share():

    story = next(s for s in corpus("validation", 50) if entities(s.beginning(3))["objects"])
    beginning = entities(story.beginning(3))
    assert beginning["names"] == {story.hero} and len(beginning["objects"]) == 1
    (thing,) = beginning["objects"]
    one, two = [n for n in GIRL_NAMES if n != story.hero][:2]
    pairs = [(story, f" Then {story.hero} found the {thing}."),               # hero and thing: consistent
             (story, f" Then she found the {thing}."),                        # a pronoun is no mention
             (story, f" {story.hero} and {one} played with the {thing}."),    # one friend is allowed
             (story, f" {story.hero}, {one} and {two} saw the {thing}."),     # two strangers: lost track
             (story, f" Then {story.hero} smiled.")]                          # the {thing} is forgotten
    assert consistency_share(pairs) == pytest.approx(2 / 5)
    assert consistency_share(pairs[:1]) == 1.0
    assert consistency_share([]) == 0.0


@pytest.mark.parametrize("kind, answer, fits", [
    ("who", "Grandma.", True), ("who", "Lily", True), ("who", "the park", False),
    ("where", "In the beach", False), ("where", "at the beach", True), ("where", "under a bench", True),
    ("feeling", "Glad!", True), ("feeling", "Tom", False),
    ("what", "The red ball.", True), ("what", "a noisy tractor", True), ("what", "a kitten", True),
    ("what", "ball red", False), ("yes_no", "Yes.", True), ("yes_no", "maybe", False), ("other", "yes", None),
])
def test_answer_fits_kind(kind, answer, fits):
    assert answer_fits_kind(kind, answer) is fits



def test_score_answers_counts_only_whole_answers():
    records = [{"instruction": "Who?", "output": "Lily", "kind": "who"},
               {"instruction": "What?", "output": "a red ball", "kind": "what"},
               {"instruction": "Where?", "output": "in the park", "kind": "where"},
               {"instruction": "Yes?", "output": "no", "kind": "yes_no"}]
    right = ["Lily.", "The red ball!\nand more text", "  In the park ", "No"]
    scored = score_answers(records, right)
    assert (scored["share"], scored["successes"], scored["n"], scored["right_form"]) == (1.0, 4, 4, 1.0)
    assert {k: scored["by_kind"]["what"][k] for k in ("share", "successes", "n", "right_form")} == {
        "share": 1.0, "successes": 1, "n": 1, "right_form": 1.0}
    # wrong, empty, partial (a piece of the answer, or the answer inside more words): all score 0
    for answers in (["Tom", "a blue ball", "in the garden", "yes"],
                    ["", "", "", ""],
                    ["Li", "red", "park", "n"],
                    ["Lily and Tom", "a red ball and a kite", "in the park with Mom", "no, never"]):
        scored = score_answers(records, answers)
        assert scored["successes"] == 0 and scored["share"] == 0.0, answers
    partial = score_answers(records, ["Lily", "", "in the park", "maybe"])
    assert (partial["successes"], partial["right_form"]) == (2, 0.5)
    assert [r["right_form"] for r in partial["examples"]] == [True, False, True, False]
    assert [r["got"] for r in partial["examples"]] == ["Lily", "", "in the park", "maybe"]
    other = score_answers([{"instruction": "Say hi", "output": "hi"}], ["hi"])
    assert {k: (v["share"], v["successes"], v["n"], v["right_form"]) for k, v in other["by_kind"].items()} == {
        "other": (1.0, 1, 1, None)}
    with pytest.raises(ValueError, match="2 records but 1 answers"):
        score_answers(records[:2], ["Lily"])


def test_repetition_table_averages_each_measure_over_the_texts_that_have_it():
    rows = repetition_table({"loop": ["a b a b a b", "Hi there."]})
    # "a b a b a b": 2 of 6 words, 2 of 5 bigrams, 2 of 4 trigrams differ; 4-grams abab, baba, abab: 1 of 3
    # repeats. "Hi there.": every word and bigram differs, no trigram or 4-gram: left out of those averages.
    assert rows == [{"model": "loop", "texts": 2, "distinct_1": pytest.approx((2 / 6 + 1.0) / 2),
                     "distinct_2": pytest.approx((2 / 5 + 1.0) / 2), "distinct_3": 0.5,
                     "repeated_4gram_share": pytest.approx(1 / 3)}]


def test_majority_baselines_by_hand():
    from helpers.text_metrics import majority_baselines

    train = [{"output": "Tom", "kind": "who"}, {"output": "tom.", "kind": "who"}, {"output": "Lily", "kind": "who"},
             {"output": "happy", "kind": "feeling"}] + [{"output": "yes", "kind": "yes_no"}] * 3
    held_out = [{"output": "Tom", "kind": "who"}, {"output": "Lily", "kind": "who"}, {"output": "Sam", "kind": "who"},
                {"output": "No.", "kind": "yes_no"}, {"output": "yes", "kind": "yes_no"},
                {"output": "in the park", "kind": "where"}, {"output": "hi"}]
    assert majority_baselines(train, held_out) == {
        "who": {"answer": "tom", "share": 1 / 3, "n": 3},      # "Tom" twice (normalised), "Lily" once
        "yes_no": {"answer": "no", "share": 1 / 2, "n": 2},    # always "no", though training said "yes" more
        "where": {"answer": "", "share": 0.0, "n": 1},         # no training question of the kind
        "other": {"answer": "", "share": 0.0, "n": 1}}          # no kind: "other"


def test_each_kind_and_all_kinds_are_compared_with_their_baseline_by_one_rule():
    """Counts by hand: who 1 of 66 against a baseline right on 3 of 66, where 60 of 100 against 29 of 100.

    29 / 100 * 100 is 28.999999999999996 in floating point: the baseline's count is rounded, not cut.
    """
    tallies = {"where": {"successes": 60, "n": 100}, "who": {"successes": 1, "n": 66},
               "all": {"successes": 61, "n": 166}}
    baselines = {"where": {"answer": "at the park", "share": 29 / 100, "n": 100},
                 "who": {"answer": "mom", "share": 3 / 66, "n": 66}}
    compared = versus_baselines(tallies, baselines)
    assert list(compared) == ["where", "who", "all"]
    assert {k: (v["baseline"], v["verdict"]) for k, v in compared.items()} == {
        "where": (0.29, "above"), "who": (3 / 66, "not distinguishable"), "all": (32 / 166, "above")}
    assert compared["all"]["difference"] == pytest.approx(29 / 166, abs=1e-12)
    assert compared["where"]["effect"] == pytest.approx(2 * math.asin(math.sqrt(0.6)) - 2 * math.asin(math.sqrt(0.29)))


def test_who_questions_are_also_tallied_by_role_and_counted_once_in_all():
    from helpers.text_metrics import majority_baselines

    records = [{"instruction": "Who?", "output": "Lily", "kind": "who", "role": "hero"},
               {"instruction": "Who?", "output": "Mom", "kind": "who", "role": "parent"},
               {"instruction": "Who?", "output": "Mom", "kind": "who", "role": "parent"},
               {"instruction": "Yes?", "output": "no", "kind": "yes_no"}]
    scored = score_answers(records, ["Lily", "Dad", "Mom", "no"])
    assert {k: (v["successes"], v["n"]) for k, v in scored["by_kind"].items()} == {
        "who": (2, 3), "who/hero": (1, 1), "who/parent": (1, 2), "yes_no": (1, 1)}
    assert (scored["successes"], scored["n"]) == (3, 4)
    train = [{"output": "Lily", "kind": "who", "role": "hero"}, {"output": "Dad", "kind": "who", "role": "parent"},
             {"output": "Dad", "kind": "who", "role": "parent"}, {"output": "Lily", "kind": "who", "role": "hero"},
             {"output": "Lily", "kind": "who", "role": "hero"}]
    baselines = majority_baselines(train, records)
    assert {k: (b["answer"], b["share"]) for k, b in baselines.items()} == {
        "who": ("lily", 1 / 3), "who/hero": ("lily", 1.0), "who/parent": ("dad", 0.0), "yes_no": ("no", 1.0)}
    from helpers.text_metrics import answer_tallies

    compared = versus_baselines(answer_tallies(scored["examples"]), baselines)
    assert compared["all"]["baseline"] == 2 / 4  # who 1 and yes_no 1: the roles are not counted a second time


def test_trivial_readers_answer_who_with_the_first_name_and_yes_no_by_lookup():
    from helpers.text_metrics import reader_baselines

    story = "Once there was a girl named Lily. Her friend Tom came to the park. Mom smiled at a mark on the wall."
    records = [{"instruction": "Who is the main character of the story?", "input": story, "output": "Lily",
                "kind": "who", "role": "hero"},
               {"instruction": "Who did Lily play with?", "input": story, "output": "Tom", "kind": "who",
                "role": "friend"},
               {"instruction": "Did the story happen at the park?", "input": story, "output": "yes", "kind": "yes_no"},
               {"instruction": "Did the story happen in the forest?", "input": story, "output": "no", "kind": "yes_no"},
               {"instruction": "Is there a red ball in the story?", "input": story, "output": "yes", "kind": "yes_no"},
               {"instruction": "Is there someone named Tom in the story?", "input": story, "output": "yes",
                "kind": "yes_no"},
               {"instruction": "Is there someone named Mark in the story?", "input": story, "output": "no",
                "kind": "yes_no"},  # "a mark" is not a Mark: names are looked up with their capital
               {"instruction": "Where?", "input": story, "output": "at the park", "kind": "where"}]
    # the lookup says "no" to the red ball (the story never writes it) and is wrong there: 4 of 5
    assert reader_baselines(records) == {
        "who": {"reader": "first name in the story", "share": 0.5, "n": 2},
        "who/friend": {"reader": "first name in the story", "share": 0.0, "n": 1},
        "who/hero": {"reader": "first name in the story", "share": 1.0, "n": 1},
        "yes_no": {"reader": "look the word up in the story", "share": 0.8, "n": 5}}
    with pytest.raises(ValueError, match=re.escape("no word to look up in yes/no question 'Is it?'")):
        reader_baselines([{"instruction": "Is it?", "input": story, "output": "no", "kind": "yes_no"}])


def test_the_trivial_readers_on_the_held_out_story_questions():
    """Looking the word up answers every yes/no question; the first name answers every main-character question."""
    from helpers.sources import held_out_questions
    from helpers.text_metrics import reader_baselines

    readers = reader_baselines(held_out_questions(64, 0))
    assert {k: v["share"] for k, v in readers.items() if k != "who"} == {
        "who/friend": 0.0, "who/hero": 1.0, "who/parent": 0.0, "yes_no": 1.0}


def test_consistency_variants_by_hand():
    from helpers.stories import corpus
    from helpers.text_metrics import consistency_variants

    story = next(s for s in corpus("validation", 50) if s.hero_gender == "female" and s.friend)
    other, third, fourth = [n for n in ("Tom", "Sam", "Max", "Leo", "Ben") if n not in story.text][:3]
    pairs = [(story, story.text[len(story.beginning(3)):]),  # the story's own continuation
             (story, f" {other} and {third} met {story.hero}. He was glad."),  # hero again, but third; two newcomers
             (story, f" She saw {other}, {third} and {fourth}."),  # right pronoun, no hero, three newcomers
             (story, " The end.")]
    counts = consistency_variants(pairs)
    assert counts == {"strict": 1, "hero_again": 2, "first_name_is_hero": 1, "first_pronoun_fits": 2}


def test_grammar_measures_from_strict_to_loose():
    from helpers.text_metrics import grammar_measures

    from helpers.stories import is_grammatical

    texts = ["Mom gave her a big hug. Mom gave his a big hug.",  # one grammatical sentence, one with a wrong pronoun
             "Dad showed her what to do. hug the gave Mom her.",  # corpus words in no template's order
             "She blorped. And then"]  # an unknown word; the cut-off tail is not counted
    measures = grammar_measures(texts)
    assert is_grammatical("Mom gave her a big hug.") and not is_grammatical("Mom gave his a big hug.")
    assert {k: (v["successes"], v["n"]) for k, v in measures.items()} == {
        "whole": (0, 3), "sentences": (2, 5), "words": (4, 5)}
    nothing = {"share": 0.0, "low": 0.0, "high": 1.0, "successes": 0, "n": 0}
    assert grammar_measures(["no sentence ends here"]) == {"whole": nothing, "sentences": nothing, "words": nothing}


def test_the_first_name_is_found_as_a_whole_word():
    """"Tim" sits inside "Timmy" and "Ian" inside "Brian": names are ordered where they stand as words."""
    from helpers.stories import corpus
    from helpers.text_metrics import _names_in_order, consistency_variants, reader_baselines

    assert _names_in_order("Brian met Lily, and Ian waved.") == ["Brian", "Lily", "Ian"]

    text = "Timmy met Tim at the park."
    record = {"instruction": "Who is the main character of the story?", "input": text, "output": "Timmy",
              "kind": "who", "role": "hero"}
    assert reader_baselines([record])["who/hero"]["share"] == 1.0
    story = next(s for s in corpus("validation", 50) if s.hero_gender == "male" and "Tim" not in s.text)
    hero = dataclasses.replace(story, hero="Timmy")
    assert consistency_variants([(hero, " " + text)])["first_name_is_hero"] == 1


@pytest.mark.parametrize("answer, verdict", [
    ("yes", "yes"), ("No.", "no"), ("No, there is a kite.", "no"), ("It happened at the park, so yes.", "yes"),
    ("Yes it is, so no", "yes"), ("nothing", None), ("It happened at the park", None), ("", None),
    ("Nobody is there", None), ("yesterday", None), ("At the beach? No, it happened at the park.", "no"),
    ("A cat? yes", "yes"), ("Is it yes? No.", "no"), ("At the beach?", None), ("Yes? Maybe.", None),
    ("At the beach? The story says at the park, so no.", "no")])
def test_yes_no_verdict_reads_the_first_word_then_the_last(answer, verdict):
    assert yes_no_verdict(answer) == verdict


def test_a_yes_no_with_its_fact_is_right_by_its_verdict_and_counts_the_fact_apart():
    from helpers.text_metrics import majority_baselines, reader_baselines

    story = "Sam went to the park with a kite."
    records = [{"instruction": "Did the story happen at the beach?", "input": story, "kind": "yes_no",
                "output": "It happened at the park, so no.", "verdict": "no"},
               {"instruction": "Is there a kite in the story?", "input": story, "kind": "yes_no",
                "output": "There is a kite, so yes.", "verdict": "yes"},
               {"instruction": "Who?", "input": story, "output": "Sam", "kind": "who"}]
    answers = ["It happened at the pool, so no.", "there is a kite, so yes", "Sam"]  # a wrong fact, a right verdict
    scored = score_answers(records, answers)
    assert [(r["correct"], r["right_form"], r.get("fact_right")) for r in scored["examples"]] == [
        (True, True, False), (True, True, True), (True, True, None)]
    yes_no = scored["by_kind"]["yes_no"]
    assert (yes_no["fact_right"]["successes"], yes_no["verdict_when_fact_right"]["successes"],
            yes_no["verdict_when_fact_right"]["n"]) == (1, 1, 1)
    assert "fact_right" not in scored["by_kind"]["who"]
    # the right fact with the wrong verdict, then the right fact with none: neither answer is right
    wrong = score_answers(records[:2], ["It happened at the park, so yes.", "There is a kite."])
    assert [(r["correct"], r["right_form"], r["fact_right"]) for r in wrong["examples"]] == [
        (False, True, True), (False, False, True)]
    assert wrong["by_kind"]["yes_no"]["verdict_when_fact_right"]["share"] == 0.0
    after = score_answers([{**records[0], "output": "No, it happened at the park."}], ["no, it happened at the park"])
    assert after["by_kind"]["yes_no"]["fact_right"]["share"] == 1.0
    echoed = score_answers([{**records[0], "output": "At the beach? No, it happened at the park."}] * 3,
                           ["At the pool? No, it happened at the park.", "At the beach? Yes, it happened at the park.",
                            "At the beach? it happened at the park"])  # the echo is not the fact; no verdict: wrong
    assert [(r["correct"], r["right_form"], r["fact_right"], r["echo_right"]) for r in echoed["examples"]] == [
        (True, True, True, False), (False, True, True, True), (False, False, True, True)]
    tallied = echoed["by_kind"]["yes_no"]
    assert (tallied["echo_right"]["successes"], tallied["echo_right"]["n"], tallied["verdict_when_echo_right"]["n"],
            tallied["verdict_when_echo_right"]["successes"]) == (2, 3, 2, 0)
    assert "echo_right" not in after["by_kind"]["yes_no"] and "echo_right" not in after["examples"][0]
    assert score_answers(records[:1], ["maybe"])["by_kind"]["yes_no"]["verdict_when_fact_right"] is None
    # the baselines judge the verdict, as they do a bare "yes" or "no"
    assert majority_baselines([], records[:2])["yes_no"] == {"answer": "no", "share": 0.5, "n": 2}
    assert reader_baselines(records[:2])["yes_no"]["share"] == 1.0
