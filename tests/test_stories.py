"""Tests for helpers.stories: the offline story grammar, its recogniser and its QA records."""

import collections
import random
import re
import subprocess
import sys

import pytest

from helpers import stories
from helpers.stories import (
    SHAPES, Story, corpus, entities, generate_story, is_grammatical, iter_corpus, qa_records,
    split_of, split_sentences, story_prompts, vocabulary,
)


@pytest.fixture(scope="module")
def many() -> list[Story]:
    return [generate_story(i) for i in range(20_000)]


@pytest.fixture(scope="module")
def some(many) -> list[Story]:
    return many[:3_000]


# --- determinism -------------------------------------------------------------

def test_same_seed_and_index_give_the_same_story():
    assert generate_story(42) == generate_story(42)
    assert generate_story(42, seed=3) == generate_story(42, seed=3)


def test_seed_and_index_both_change_the_story():
    assert generate_story(42).text != generate_story(42, seed=1).text
    assert generate_story(42).text != generate_story(43).text


def test_another_process_writes_the_same_story_and_imports_nothing_heavy():
    code = ("import sys; from helpers.stories import generate_story; "
            "print(generate_story(123, seed=5).text); "
            "print(any(m in sys.modules for m in ('numpy', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    text, heavy = out.stdout.rstrip("\n").rsplit("\n", 1)
    assert text == generate_story(123, seed=5).text
    assert heavy == "False"


def test_a_pinned_story_never_changes():
    story = generate_story(0)
    assert (story.shape, story.hero, story.hero_gender, story.at_place) == (
        "new_friend", "Leo", "male", "by the pond")
    assert story.beginning(1) == "Once upon a time, there was a little boy named Leo."


def test_negative_index_is_refused():
    with pytest.raises(ValueError, match="-1"):
        generate_story(-1)


# --- shape of the stories ------------------------------------------------------

def test_lengths_paragraphs_and_ascii(some):
    for story in some:
        assert 80 <= len(story.text.split()) <= 250, story.text
        assert 3 <= len(story.paragraphs) <= 5
        assert story.text.isascii()
        assert "\n\n" not in story.text and story.text == story.text.strip()
    counts = collections.Counter(len(story.paragraphs) for story in some)
    assert set(counts) == {3, 4, 5}


def test_every_shape_is_used_and_there_are_at_least_six(some):
    assert len(SHAPES) >= 6
    assert {story.shape for story in some} == set(SHAPES)


def test_most_stories_have_dialogue(some):
    with_dialogue = sum(bool(re.search(r'"[A-Z][^"]*[.,!?]"', s.text)) for s in some)
    assert with_dialogue / len(some) >= 0.9


def test_at_least_99_5_percent_of_20k_stories_are_distinct(many):
    assert len({story.text for story in many}) >= 0.995 * len(many)


def test_articles_agree_with_the_next_word(some):
    for story in some:
        assert not re.search(r"\b[Aa] [aeiou]", story.text), story.text
        assert not re.search(r"\b[Aa]n [^aeiou]", story.text), story.text


def test_facts_are_stated_in_the_text(some):
    for story in some:
        assert story.hero in story.text
        assert story.at_place in story.text.lower()  # "At the fair, ..." opens a sentence
        assert re.search(rf"\b{story.feeling}\b", story.text)
        assert re.search(rf"\b{story.end_feeling}\b", story.text)
        for name in (story.friend, story.parent, story.animal, story.object, story.spot, story.food):
            assert name is None or name in story.text
        assert story.object_phrase is None or story.object_phrase.split(" ", 1)[1] in story.text
        assert (story.friend is None) == (story.friend_gender is None)


def test_pronouns_follow_the_characters_genders(many):
    """Where every character of a story has one gender, no pronoun of the other gender appears."""
    pronouns = {"female": {"she", "her", "hers", "herself"}, "male": {"he", "his", "him", "himself"}}
    checked = collections.Counter()
    for story in many[:3000]:
        genders = {story.hero_gender} | ({story.friend_gender} if story.friend else set())
        named = re.findall(r"\b(girl|boy) named (\w+)", story.text)
        assert all(name in (stories.GIRL_NAMES if kid == "girl" else stories.BOY_NAMES) for kid, name in named)
        if len(genders) > 1:
            continue
        (gender,) = genders
        other = pronouns["male" if gender == "female" else "female"]
        words = set(re.findall(r"[a-z]+", story.text.lower()))
        assert not words & other, (gender, words & other, story.text)
        checked[gender, bool(words & pronouns[gender])] += 1
    for gender in ("female", "male"):  # both genders checked, nearly always with their own pronouns
        assert checked[gender, True] > 800 and checked[gender, False] < 0.05 * checked[gender, True]


# --- the recogniser ----------------------------------------------------------------

def test_every_generated_sentence_is_grammatical(some):
    for story in some:
        for sentence in story.sentences:
            assert is_grammatical(sentence), sentence
            assert re.search(r'[.!?]"?$', sentence), sentence


@pytest.mark.parametrize("sentence", [
    "But then Lily lost her red ball.",
    "But then Tom lost his red ball.",
    '"Do you want to play with me?" asked Tom.',
    'Lily said, "Yes, please!"',
    "In the park, there was a big slide.",
    "Then a girl named Mia came over.",
    "She had an orange kite.",
    "  One   sunny day, Ben and Grandpa went for a walk in the forest.  ",
])
def test_known_good_sentences(sentence):
    assert is_grammatical(sentence)


@pytest.mark.parametrize("sentence", [
    "",
    "   ",
    "But then Lily lost his red ball.",          # wrong possessive
    "Lily lost his ball.",                        # wrong possessive, and no such template
    "Then a boy named Mia came over.",            # wrong noun for the friend
    "Lily was a happy little boy.",               # wrong noun for the hero
    "She had a orange kite.",                     # wrong article
    "She had an red kite.",                       # wrong article
    "ball red lost Lily her then But.",           # word salad
    "then But Lily her lost red ball.",           # shuffled words
    "park happy Lily the kitten.",                # random lexicon words
    "But then Lily lost her red",                 # truncated
    "Once upon a time, there was",                # truncated
    "but then Lily lost her red ball.",           # no capital letter
    '"Do you want to play with me?" asked Tom',   # no final period
    "Lily ate the moon with a spoon.",            # not in the grammar
])
def test_known_bad_sentences(sentence):
    assert not is_grammatical(sentence)


def test_shuffled_sentences_are_rejected(some):
    rng = random.Random(0)
    rejected = total = 0
    for story in some[:300]:
        for sentence in story.sentences:
            words = sentence.split()
            shuffled = words[:]
            rng.shuffle(shuffled)
            if shuffled != words:
                total += 1
                rejected += not is_grammatical(" ".join(shuffled))
    assert rejected == total


def test_random_lexicon_words_are_rejected():
    rng = random.Random(1)
    words = sorted(vocabulary())
    for _ in range(500):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + "."
        assert not is_grammatical(sentence.capitalize())


# --- sentence splitting -----------------------------------------------------------

def test_split_sentences_on_dialogue():
    text = ('Lily had a ball. "Can we play?" asked Tom. Lily said, "Yes! Let\'s go." They ran.\n'
            'Mom said, "Be careful," and smiled. "Wow," said Lily. The end!')
    assert split_sentences(text) == [
        "Lily had a ball.", '"Can we play?" asked Tom.', 'Lily said, "Yes! Let\'s go."', "They ran.",
        'Mom said, "Be careful," and smiled.', '"Wow," said Lily.', "The end!",
    ]


def test_split_sentences_on_messy_model_text():
    assert split_sentences("") == []
    assert split_sentences("  \n ") == []
    assert split_sentences("the dog ran and") == ["the dog ran and"]
    assert split_sentences("Tom ran. the dog said \"hi and then") == ["Tom ran.", 'the dog said "hi and then']
    assert split_sentences('She said "hi.\nTom ran!!! Then') == ['She said "hi.', "Tom ran!!!", "Then"]
    assert split_sentences("Wait... what?! No.") == ["Wait...", "what?!", "No."]
    assert split_sentences('"') == ['"']
    assert split_sentences("3.5 is a number.") == ["3.5 is a number."]


def test_sentences_rebuild_the_story(some):
    for story in some[:500]:
        assert " ".join(story.sentences) == story.text.replace("\n", " ")


def test_beginning_is_a_prefix_made_of_whole_sentences():
    story = generate_story(5)
    sentences = story.sentences
    assert story.beginning(0) == ""
    assert story.beginning(1) == sentences[0]
    assert story.beginning(3) == story.text[: len(story.beginning(3))]
    assert split_sentences(story.beginning(4)) == sentences[:4]
    assert story.beginning(10_000) == story.text
    with pytest.raises(ValueError):
        story.beginning(-1)


# --- corpus and splits --------------------------------------------------------------

def test_splits_are_disjoint_deterministic_and_about_5_percent():
    train, validation = corpus("train", 2_000), corpus("validation", 100)
    assert len(train) == 2_000 and len(validation) == 100
    assert not {s.text for s in train} & {s.text for s in validation}
    assert all(split_of(s.text) == "train" for s in train)
    assert all(split_of(s.text) == "validation" for s in validation)
    assert [s.text for s in corpus("validation", 100)] == [s.text for s in validation]
    assert corpus("train", 0) == []
    first = [generate_story(i) for i in range(4_000)]
    share = sum(split_of(s.text) == "validation" for s in first) / len(first)
    assert 0.03 <= share <= 0.07
    assert [s.index for s in corpus("train", 50)] == [s.index for s in first if split_of(s.text) == "train"][:50]


def test_iter_corpus_streams_the_same_stories():
    stream = iter_corpus("validation", seed=2)
    assert [next(stream) for _ in range(5)] == corpus("validation", 5, seed=2)


@pytest.mark.parametrize("call, bad", [
    (lambda: corpus("test", 3), "test"),
    (lambda: corpus("train", -1), "-1"),
    (lambda: iter_corpus("valid"), "valid"),
])
def test_bad_split_or_count_raises(call, bad):
    with pytest.raises(ValueError, match=bad):
        call()


def test_story_prompts_are_validation_beginnings():
    prompts = story_prompts(8, seed=0)
    assert len(prompts) == 8 and prompts == story_prompts(8, seed=0)
    for prompt, story in prompts:
        assert split_of(story.text) == "validation"
        assert story.text.startswith(prompt) and len(split_sentences(prompt)) == 3


# --- questions and answers ------------------------------------------------------------

def _strip_article(answer: str) -> str:
    return re.sub(r"^(a|an|the) ", "", answer.lower())


def test_qa_records_have_every_kind_and_recoverable_answers(some):
    for story in some[:600]:
        records = qa_records(story)
        assert {r["kind"] for r in records} == set(stories.QA_KINDS)
        for record in records:
            assert set(record) == {"instruction", "input", "output", "kind"} | ({"role"} if record["kind"] == "who" else set())
            if record["kind"] == "who":  # the role names the story's field that answers it
                assert record["output"] == getattr(story, record["role"])
            assert record["input"] == story.text
            assert record["instruction"].endswith("?") and record["instruction"].isascii()
            if record["kind"] != "yes_no":
                assert _strip_article(record["output"]) in story.text.lower(), record
        assert qa_records(story) == records


def test_qa_answers_match_the_facts():
    story = next(s for s in map(generate_story, range(100)) if s.shape == "lost_toy")
    answers = {r["instruction"]: r["output"] for r in qa_records(story)}
    assert answers["Who is the main character of the story?"] == story.hero
    assert answers["Where did the story happen?"] == story.at_place
    article = "an" if story.color[0] in "aeiou" else "a"
    assert answers[f"What did {story.hero} lose?"] == f"{article} {story.color} {story.object}"
    assert answers[f"Where was the {story.object} found?"] == story.spot
    assert answers[f"Who helped {story.hero} look for the {story.object}?"] == story.friend
    assert answers[f"How did {story.hero} feel at the end of the story?"] == story.end_feeling


def test_yes_no_answers_are_true_and_balanced(some):
    answers = []
    for story in some[:800]:
        for record in qa_records(story):
            if record["kind"] != "yes_no":
                continue
            question, answer = record["instruction"], record["output"]
            answers.append(answer)
            if m := re.fullmatch(r"Did the story happen (.+)\?", question):
                assert (m[1] == story.at_place) == (answer == "yes"), question
                asked = m[1].split(" the ", 1)[1]
            elif m := re.fullmatch(r"Is there an? (.+) in the story\?", question):
                assert (m[1] in (story.animal, story.object)) == (answer == "yes"), question
                asked = m[1]
            else:
                m = re.fullmatch(r"Is there someone named (\w+) in the story\?", question)
                assert (m[1] in (story.hero, story.friend)) == (answer == "yes"), question
                asked = m[1]
            flags = 0 if asked[0].isupper() else re.IGNORECASE
            assert bool(re.search(rf"\b{asked}", story.text, flags)) == (answer == "yes"), question
    assert set(answers) == {"yes", "no"}
    assert 0.45 <= answers.count("yes") / len(answers) <= 0.55


# --- entities and vocabulary ------------------------------------------------------------

def test_entities_of_a_known_text():
    text = ("Lily and Tom went to the park. Two puppies played with a teddy bear and a red ball. "
            "lily ate a cookie by the pond. The Park was big.")
    assert entities(text) == {
        "names": {"Lily", "Tom"},
        "animals": {"puppy"},
        "objects": {"teddy bear", "ball", "cookie"},
        "places": {"park", "pond"},
    }
    assert entities("") == {"names": set(), "animals": set(), "objects": set(), "places": set()}
    assert entities("A bearded ballerina parked.")["objects"] == set()


def test_entities_find_the_story_facts(some):
    for story in some[:500]:
        found = entities(story.text)
        assert story.hero in found["names"] and story.place in found["places"]
        assert story.friend is None or story.friend in found["names"]
        assert story.animal is None or story.animal in found["animals"]
        if story.shape in ("lost_toy", "quarrel", "new_friend", "making"):
            assert story.object in found["objects"]


def test_vocabulary_is_small_and_plain():
    words = vocabulary()
    assert 900 <= len(words) <= 2_000
    assert all(w.isascii() and w == w.lower() for w in words)
    assert {"lily", "puppy", "ball", "park", "happy", "said", "the"} <= words


def test_names_are_not_also_ordinary_words():
    names = {n.lower() for n in stories.GIRL_NAMES + stories.BOY_NAMES}
    assert len(names) == len(stories.GIRL_NAMES) + len(stories.BOY_NAMES)
    ordinary = set()
    for text in list(stories.TEMPLATES) + [w for ws in stories.SLOT_VALUES.values() for w in ws]:
        ordinary |= {w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"\{\w+\}", " ", text))}
    assert not names & ordinary


def test_yes_no_answers_can_give_the_fact_that_decides_them():
    story = generate_story(3)  # Daphne at the pool with a diving board; asked about the pool, a big wave, Daphne
    plain = [r for r in qa_records(story) if r["kind"] == "yes_no"]
    assert [r["output"] for r in plain] == ["yes", "no", "yes"]
    written = {fact: [r["output"] for r in qa_records(story, fact) if r["kind"] == "yes_no"]
               for fact in ("before", "after", "asked", "compared")}
    assert written == {
        "before": ["It happened at the pool, so yes.", "There is a diving board, so no.",
                   "Daphne is in the story, so yes."],
        "after": ["Yes, it happened at the pool.", "No, there is a diving board.", "Yes, Daphne is in the story."],
        "asked": ["At the pool? Yes, it happened at the pool.", "A big wave? No, there is a diving board.",
                  "Daphne? Yes, Daphne is in the story."],
        "compared": ["At the pool? The story says at the pool, so yes.",
                     "A big wave? The story says a diving board, so no.", "Daphne? The story says Daphne, so yes."]}
    for fact in ("before", "after", "asked", "compared"):  # the same questions, the verdict kept; every other record unchanged
        records = qa_records(story, fact)
        assert [r["instruction"] for r in records] == [r["instruction"] for r in qa_records(story)]
        assert [r["verdict"] for r in records if r["kind"] == "yes_no"] == ["yes", "no", "yes"]
        assert [r for r in records if r["kind"] != "yes_no"] == [r for r in qa_records(story) if r["kind"] != "yes_no"]
    with pytest.raises(ValueError, match="yes_no_fact must be one of none, before, after, asked, compared, not 'first'"):
        qa_records(story, "first")


def test_a_no_about_a_name_gives_the_main_character(some):
    asked = [(s, r) for s in some[:300] for r in qa_records(s, "after")
             if r["instruction"].startswith("Is there someone named") and r["verdict"] == "no"]
    assert len(asked) > 50
    for story, record in asked:
        assert record["output"] == f"No, {story.hero} is in the story."
