"""An offline corpus of TinyStories-style children's stories, written by one small grammar.

Why: the course needs story data that works without internet, is the same on
every machine, and can be *checked*.  So one set of sentence templates does
three jobs: it writes the stories (``generate_story``), it judges whether a
sentence belongs to the language (``is_grammatical``), and it knows the facts
of each story, so we can ask questions about it (``qa_records``).

Grammar.  A template is a sentence with typed slots, e.g.
``"{NAME} lost {HIS} {COLOR} {TOY}."``.  Agreement rules:

* ``NAME HE HIS HIM KID`` belong to the hero, ``FRIEND F_HE F_HIS F_HIM F_KID``
  to the friend; in one sentence they all agree with that character's gender
  ("Lily lost her ball", never "Lily lost his ball").
* ``{A}`` is the article: "an" before a vowel letter, "a" otherwise.
* A slot that opens a sentence or a quotation is written with a capital letter.
* Verb forms are fixed by the template (stories are told in the past tense).

Dialogue rule: a quotation and its speech tag form ONE sentence unit, in one
of two orders: ``"Can I play too?" asked Tom.`` (the quote first, then a tag
that starts with a lowercase word) or ``Lily said, "Thank you, Mom!"`` (the
tag first; the unit ends at the closing quote).  End punctuation inside quotes
never ends a unit, and a line break always does.  The recogniser judges one
unit at a time: words, order and agreement inside it, not whether a "she" in
the next sentence names the right character.

Size: 7 plot shapes, 237 templates (44-51 per shape), about 1,000 distinct
words.  Every shape can tell more than 10**15 different texts: for the
smallest, "fear", about 10**8 template choices x 200 heroes x 79 hobbies x 25
fear/place pairs x 4 grown-ups x 12 feeling pairs.  In practice no story
repeats: the first 20,000 stories of seed 0 are all distinct.

Speed, measured with ``time`` on the course machine (2 cores, one used):
100,000 stories with their facts take 3.8 s; compiling the grammar for
``is_grammatical`` takes about 0.5 s, once; then a sentence is judged in
about 15 microseconds.  ``qa_records`` costs about 0.2 ms per story.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from functools import cache
from itertools import count, islice, product
from typing import Iterable, Iterator, NamedTuple

from .story_grammar import (
    AGES, ALL_PLACES, ANIMAL_TROUBLES, ANIMALS, BOY_NAMES, COLORS, COMMON_QUESTIONS, DAYS, FEARS, FOODS,
    FRIEND_SLOTS, GENDERS, GIRL_NAMES, HERO_SLOTS, HOBBIES, MADE, MISHAPS, NAMES, OUTDOOR_PLACES, PARENTS,
    PRONOUNS, QA_KINDS, SHAPE_NAMES, SHAPES, SIZES, SLOT_VALUES, SPLITS, SPOTS, TEMPLATES, TOYS, TRAITS,
    VALIDATION_PERCENT, VOWELS, Shape, grammar_data,
)

__all__ = [
    "Story", "Shape", "SHAPES", "TEMPLATES", "QA_KINDS", "SPLITS", "GENERATOR_VERSION",
    "generate_story", "corpus", "iter_corpus", "split_of", "story_prompts", "corpus_version",
    "is_grammatical", "split_sentences", "qa_records", "YES_NO_FACTS", "answer_vocabulary", "entities", "vocabulary",
]

# Raise when the generator's code changes what it writes for the same data
# (the order of random choices, say); the data's own changes are noticed by
# :func:`corpus_version` without it.
GENERATOR_VERSION = 1

# ---------------------------------------------------------------------------
# Templates: parse once, render fast.
# ---------------------------------------------------------------------------

_SLOT = re.compile(r"\{([A-Z_]+)\}")


class _Template(NamedTuple):
    head: str                                # literal text before the first slot
    parts: tuple[tuple[str, bool, str], ...]  # (slot, capitalised?, literal text after it)
    slots: frozenset[str]


@cache
def _parse(template: str) -> _Template:
    """Split a template into slots and literals; mark slots that open a sentence or quote."""
    pieces = _SLOT.split(template)
    parts, prefix = [], pieces[0]
    for slot, literal in zip(pieces[1::2], pieces[2::2]):
        opens_quote = prefix.endswith('"') and prefix.count('"') % 2 == 1
        parts.append((slot, prefix == "" or opens_quote, literal))
        prefix += "{" + slot + "}" + literal
    return _Template(pieces[0], tuple(parts), frozenset(pieces[1::2]))


def _render(template: str, values: dict[str, str]) -> str:
    """Fill a template; walk it backwards so that {A} can see the word after it."""
    parsed = _parse(template)
    text = ""
    for slot, capital, literal in reversed(parsed.parts):
        text = literal + text
        word = ("an" if text[1:2] in VOWELS else "a") if slot == "A" else values[slot]
        text = (word[0].upper() + word[1:] if capital else word) + text
    return parsed.head + text


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in VOWELS else "a ") + phrase


# ---------------------------------------------------------------------------
# Stories
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Story:
    """One generated story and the facts it states (None: the story never mentions it)."""

    index: int
    seed: int
    text: str
    shape: str
    hero: str
    hero_gender: str
    friend: str | None
    friend_gender: str | None
    parent: str | None
    animal: str | None
    object: str | None       # the key thing: a toy, a fear or a made thing
    color: str | None        # the toy's colour
    place: str
    at_place: str            # the place with its preposition, e.g. "in the park"
    spot: str | None         # where a lost toy was found
    food: str | None
    feeling: str             # how the hero felt at the problem
    end_feeling: str

    @property
    def paragraphs(self) -> list[str]:
        return self.text.split("\n")

    @property
    def sentences(self) -> list[str]:
        return split_sentences(self.text)

    @property
    def object_phrase(self) -> str | None:
        """The key thing as the story first names it, e.g. "a red ball"."""
        if self.object is None:
            return None
        return _with_article(f"{self.color} {self.object}" if self.color else self.object)

    @property
    def animal_phrase(self) -> str | None:
        return _with_article(self.animal) if self.animal else None

    @property
    def food_phrase(self) -> str | None:
        return _with_article(self.food) if self.food else None

    def beginning(self, n_sentences: int) -> str:
        """The first n sentence units, verbatim: a prefix of ``text`` to prompt a model with."""
        if n_sentences < 0:
            raise ValueError(f"n_sentences must be >= 0, got {n_sentences}")
        if n_sentences == 0:
            return ""
        spans = _sentence_spans(self.text)
        return self.text[: spans[min(n_sentences, len(spans)) - 1][1]]


def _mix(seed: int, index: int) -> int:
    """One integer from (seed, index): stable across processes, unlike hash() of a str."""
    return (seed % 2**64) << 64 | index


def _pick_values(rng: random.Random, shape: Shape) -> tuple[dict[str, str], str, str]:
    """Choose a value for every slot (unused ones are simply never shown)."""
    hero_gender, friend_gender = rng.choice(GENDERS), rng.choice(GENDERS)
    hero = rng.choice(NAMES[hero_gender])
    friend = rng.choice(NAMES[friend_gender])
    while friend == hero:
        friend = rng.choice(NAMES[friend_gender])
    fear, made = rng.choice(SLOT_VALUES["FEAR"]), rng.choice(SLOT_VALUES["MADE"])
    if shape.key == "FEAR":
        place = rng.choice(FEARS[fear])
    elif shape.key == "MADE":
        place = rng.choice(MADE[made])
    else:
        place = rng.choice(OUTDOOR_PLACES)
    trouble, rescue = rng.choice(ANIMAL_TROUBLES)
    mishap, remedy = rng.choice(MISHAPS)
    values = {
        "NAME": hero, **PRONOUNS[hero_gender], "FRIEND": friend,
        **{"F_" + slot: word for slot, word in PRONOUNS[friend_gender].items()},
        "PARENT": rng.choice(PARENTS), "AGE": rng.choice(AGES), "DAY": rng.choice(DAYS),
        "HOBBY": rng.choice(HOBBIES), "TRAIT": rng.choice(TRAITS), "SIZE": rng.choice(SIZES),
        "ANIMAL": rng.choice(ANIMALS), "COLOR": rng.choice(COLORS), "TOY": rng.choice(TOYS),
        "FOOD": rng.choice(FOODS), "FEAR": fear, "MADE": made, "PLACE": place,
        "AT_PLACE": f"{ALL_PLACES[place]} the {place}",
        "SPOT": rng.choice(SPOTS), "FEELING": rng.choice(shape.feelings),
        "END_FEELING": rng.choice(shape.end_feelings),
        "TROUBLE": trouble, "RESCUE": rescue, "MISHAP": mishap, "REMEDY": remedy,
    }
    return values, hero_gender, friend_gender


def generate_story(index: int, seed: int = 0) -> Story:
    """Story number ``index`` of corpus ``seed``; depends on nothing else."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = random.Random(_mix(seed, index))
    shape_name = rng.choice(SHAPE_NAMES)
    shape = SHAPES[shape_name]
    values, hero_gender, friend_gender = _pick_values(rng, shape)
    used: set[str] = set()
    paragraphs = []
    for paragraph in shape.paragraphs:
        sentences = []
        for line in paragraph:
            template = line if isinstance(line, str) else rng.choice(line)
            if template:
                sentences.append(_render(template, values))
                used |= _parse(template).slots
        if sentences:
            paragraphs.append(" ".join(sentences))

    def shown(slot: str) -> str | None:
        return values[slot] if slot in used else None

    key_thing = next((values[s] for s in ("TOY", "FEAR", "MADE") if s in used), None)
    return Story(
        index=index, seed=seed, text="\n".join(paragraphs), shape=shape_name,
        hero=values["NAME"], hero_gender=hero_gender,
        friend=shown("FRIEND"), friend_gender=friend_gender if "FRIEND" in used else None,
        parent=shown("PARENT"), animal=shown("ANIMAL"), object=key_thing, color=shown("COLOR"),
        place=values["PLACE"], at_place=values["AT_PLACE"], spot=shown("SPOT"), food=shown("FOOD"),
        feeling=values["FEELING"], end_feeling=values["END_FEELING"],
    )


def split_of(text: str) -> str:
    """"train" or "validation", from a hash of the text: equal texts always share a split."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return "validation" if int.from_bytes(digest, "big") % 100 < VALIDATION_PERCENT else "train"


def iter_corpus(split: str, seed: int = 0) -> Iterator[Story]:
    """All stories of one split, in index order (an endless generator)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    stories = (generate_story(index, seed) for index in count())
    return (story for story in stories if split_of(story.text) == split)


def corpus(split: str, n: int, seed: int = 0) -> list[Story]:
    """The first ``n`` stories of ``split`` ("train" or "validation")."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return list(islice(iter_corpus(split, seed), n))


def story_prompts(n: int, seed: int = 0, n_sentences: int = 3) -> list[tuple[str, Story]]:
    """Beginnings of validation stories, for testing how a model continues them."""
    return [(story.beginning(n_sentences), story) for story in corpus("validation", n, seed)]


@cache
def corpus_version() -> str:
    """A digest of the grammar's data and the generator's version: what every cache of stories depends on."""
    payload = json.dumps([GENERATOR_VERSION, grammar_data()], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------
# Recognition: the same templates, compiled into one regular expression.
# ---------------------------------------------------------------------------


def _alternation(words: Iterable[str]) -> str:
    """One regex group matching any of ``words`` (longest first)."""
    return "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + ")"


def _slot_pattern(slot: str, gender: str | None, capital: bool) -> str:
    if slot == "A":
        a, an = ("A", "An") if capital else ("a", "an")
        return f"(?:{an}(?= [aeiou])|{a}(?= [^aeiou]))"
    base = FRIEND_SLOTS.get(slot, slot)  # the friend's slots mirror the hero's
    if base not in HERO_SLOTS:
        words = SLOT_VALUES[slot]
    else:  # a character slot: only the given gender's words, or both if unconstrained
        genders = GENDERS if gender is None else (gender,)
        words = [w for g in genders
                 for w in (NAMES[g] if base == "NAME" else (PRONOUNS[g][base],))]
    if capital:
        words = [w[0].upper() + w[1:] for w in words]
    return _alternation(words)


def _template_patterns(template: str) -> list[str]:
    """The template as regexes, one per gender choice of each character it names twice."""
    parsed = _parse(template)
    slots = [slot for slot, _, _ in parsed.parts]

    def genders(role) -> tuple:
        return GENDERS if sum(slot in role for slot in slots) >= 2 else (None,)

    patterns = []
    for hero_g, friend_g in product(genders(HERO_SLOTS), genders(FRIEND_SLOTS)):
        pattern = re.escape(parsed.head)
        for slot, capital, literal in parsed.parts:
            gender = friend_g if slot in FRIEND_SLOTS else hero_g
            pattern += _slot_pattern(slot, gender, capital) + re.escape(literal)
        patterns.append(pattern)
    return patterns


@cache
def _grammar() -> re.Pattern[str]:
    """Every template of the grammar in one compiled regex (built once, on first use)."""
    return re.compile("|".join(f"(?:{p})" for t in TEMPLATES for p in _template_patterns(t)))


def is_grammatical(sentence: str) -> bool:
    """True if some template produces exactly this sentence unit (runs of spaces count as one)."""
    return _grammar().fullmatch(" ".join(sentence.split())) is not None


_MARKS = re.compile(r'[.!?]+|"|\n')
_END = frozenset(".!?")


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every sentence unit; see the dialogue rule in the module docstring."""
    spans: list[tuple[int, int]] = []
    start, quoted = 0, False
    for mark in _MARKS.finditer(text):
        symbol, end = mark.group(), mark.end()
        if symbol == "\n":
            end, quoted = mark.start(), False
        elif symbol == '"':
            quoted = not quoted
            after = text[end:end + 8].lstrip(" \t")[:1]
            if quoted or text[mark.start() - 1] not in _END or after.islower():
                continue  # an opening quote, a quote ending in a comma, or a speech tag follows
        elif quoted or (end < len(text) and not text[end].isspace()):
            continue
        _add_span(spans, text, start, end)
        start = end
    _add_span(spans, text, start, len(text))
    return spans


def _add_span(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    unit = text[start:end]
    if unit.strip():
        start += len(unit) - len(unit.lstrip())
        spans.append((start, start + len(unit.strip())))


def split_sentences(text: str) -> list[str]:
    """Cut text into the units that ``is_grammatical`` judges; a trailing fragment is kept."""
    return [text[start:end] for start, end in _sentence_spans(text)]


# ---------------------------------------------------------------------------
# Questions and answers (Alpaca format)
# ---------------------------------------------------------------------------

_QA_SALT = 0x5EED_0A  # keeps the question dice apart from the story dice
_FIELD = re.compile(r"\{(\w+)\}")


# How a yes/no answer is written: the bare verdict, the deciding fact then the verdict, the verdict then the fact,
# what the question asks about, echoed, then the verdict and the fact ("At the beach? No, it happened at the park."),
# or the echo beside the story's own value, the verdict last ("At the beach? The story says at the park, so no.").
_YES_NO_ANSWERS = {"none": "{verdict}", "before": "{Fact}, so {verdict}.", "after": "{Verdict}, {fact}.",
                   "asked": "{Asked}? {Verdict}, {fact}.", "compared": "{Asked}? The story says {said}, so {verdict}."}
YES_NO_FACTS = tuple(_YES_NO_ANSWERS)


def _yes_no(story: Story, rng: random.Random) -> list[tuple[str, str, str, str, str]]:
    """Three yes/no questions (place, thing, person), each "yes" with chance 1/2: the question, what it asks about
    ("at the beach"), the verdict, the fact that decides it and the story's value in that fact.

    A "no" question only names a word that occurs nowhere in the text, not even
    inside a longer word, so the answer "no" is always true. The fact is what
    the story has where the question asks: its place, its animal or object,
    the name asked about when it is there and the hero's name when it is not.
    """
    lower = story.text.lower()
    thing = story.animal or story.object
    pool = next(p for p in (ANIMALS, TOYS, tuple(MADE), tuple(FEARS)) if thing in p)
    named = rng.choice([story.hero, story.friend or story.hero])
    asks = (
        ("Did the story happen {}?", story.at_place,
         [f"{prep} the {p}" for p, prep in ALL_PLACES.items() if p not in lower], "it happened {}", story.at_place),
        ("Is there {} in the story?", _with_article(thing),
         [_with_article(t) for t in pool if t not in lower], "there is {}", _with_article(thing)),
        ("Is there someone named {} in the story?", named,
         [n for n in GIRL_NAMES + BOY_NAMES if n not in story.text], "{} is in the story", story.hero),
    )
    questions = []
    for question, true_value, false_values, fact, known in asks:  # known: the story's own value, said on a "no"
        verdict = "yes" if rng.random() < 0.5 else "no"
        asked = true_value if verdict == "yes" else rng.choice(false_values)
        said = true_value if verdict == "yes" else known
        questions.append((question.format(asked), asked, verdict, fact.format(said), said))
    return questions


def qa_records(story: Story, yes_no_fact: str = "none") -> list[dict[str, str]]:
    """Questions about one story, with short answers that the story text states.

    Rule: a who/what/where/feeling answer, minus a leading "a", "an" or "the",
    appears in the story text (ignoring case).  Yes/no answers are true of the text.
    A who-question also says whose name it asks for: ``role`` is "hero",
    "friend" or "parent". ``yes_no_fact`` other than "none" writes each yes/no
    answer with the fact that decides it (:data:`YES_NO_FACTS`), the record's
    ``verdict`` keeping the bare "yes" or "no".
    """
    fields = {"hero": story.hero, "friend": story.friend, "parent": story.parent,
              "he": PRONOUNS[story.hero_gender]["HE"], "object": story.object, "animal": story.animal,
              "object_phrase": story.object_phrase, "animal_phrase": story.animal_phrase,
              "food_phrase": story.food_phrase, "at_place": story.at_place, "spot": story.spot,
              "feeling": story.feeling, "end_feeling": story.end_feeling}
    records = []
    for kind, question, answer in COMMON_QUESTIONS + SHAPES[story.shape].questions:
        needed = _FIELD.findall(question) + [answer]
        if all(fields[name] is not None for name in needed):
            records.append({"instruction": question.format(**fields), "input": story.text,
                            "output": fields[answer], "kind": kind,
                            **({"role": answer} if kind == "who" else {})})  # hero, friend or parent
    if yes_no_fact not in _YES_NO_ANSWERS:
        raise ValueError(f"yes_no_fact must be one of {', '.join(YES_NO_FACTS)}, not {yes_no_fact!r}")
    rng = random.Random(_mix(story.seed, story.index) ^ _QA_SALT)
    for question, asked, verdict, fact, said in _yes_no(story, rng):
        answer = _YES_NO_ANSWERS[yes_no_fact].format(verdict=verdict, Verdict=verdict.capitalize(), fact=fact, said=said,
                                                     Fact=fact[0].upper() + fact[1:], Asked=asked[0].upper() + asked[1:])
        records.append({"instruction": question, "input": story.text, "output": answer, "kind": "yes_no",
                        **({"verdict": verdict} if yes_no_fact != "none" else {})})
    return records


@cache
def answer_vocabulary() -> dict[str, tuple[str, ...]]:
    """Every answer a story question of each kind can have (who, where, feeling, what, yes_no)."""
    things = SLOT_VALUES["TOY"] + SLOT_VALUES["FEAR"] + SLOT_VALUES["MADE"] + SLOT_VALUES["ANIMAL"] + SLOT_VALUES["FOOD"]
    coloured = tuple(f"{color} {toy}" for color in COLORS for toy in TOYS)
    return {
        "who": GIRL_NAMES + BOY_NAMES + PARENTS,
        "where": SLOT_VALUES["AT_PLACE"] + SPOTS,
        "feeling": SLOT_VALUES["FEELING"] + SLOT_VALUES["END_FEELING"],
        "what": things + coloured,
        "yes_no": ("yes", "no"),
    }


# ---------------------------------------------------------------------------
# Entities and vocabulary, for judging what a model writes
# ---------------------------------------------------------------------------


def _plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in VOWELS:
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")


@cache
def _entity_patterns() -> tuple[re.Pattern[str], re.Pattern[str], dict[str, tuple[str, str]]]:
    names = re.compile(rf"\b{_alternation(GIRL_NAMES + BOY_NAMES)}\b")
    lookup = {}  # lowercase surface form -> (category, lexicon word)
    for category, words in (("animals", ANIMALS), ("objects", TOYS + tuple(MADE) + FOODS),
                            ("places", tuple(ALL_PLACES))):
        for word in words:
            lookup[word] = lookup[_plural(word)] = (category, word)
    things = re.compile(rf"\b{_alternation(lookup)}\b", re.IGNORECASE)
    return names, things, lookup


def entities(text: str) -> dict[str, set[str]]:
    """Names (case-sensitive, capitalised), animals, objects and places the text mentions.

    Plurals count as their singular ("puppies" -> "puppy"); the longest match
    wins, so "teddy bear" is a toy and not a bear.
    """
    names, things, lookup = _entity_patterns()
    found: dict[str, set[str]] = {"names": set(names.findall(text)), "animals": set(),
                                  "objects": set(), "places": set()}
    for match in things.finditer(text):
        category, word = lookup[match.group().lower()]
        found[category].add(word)
    return found


@cache
def vocabulary() -> frozenset[str]:
    """Every lowercase word the generator can write (names included)."""
    texts = list(TEMPLATES) + [w for words in SLOT_VALUES.values() for w in words]
    texts += [w for g in GENDERS for w in NAMES[g] + tuple(PRONOUNS[g].values())] + ["a", "an"]
    return frozenset(w.lower() for t in texts for w in re.findall(r"[A-Za-z']+", _SLOT.sub(" ", t)))
