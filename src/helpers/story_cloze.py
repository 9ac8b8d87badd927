"""Story facts as fill-in-the-blank items: after a story, a cue sentence whose next word the story decides.

A pretrained model has never seen a question, but it can be asked about a
story in its own language: give it the whole story, then a sentence such as
``One sunny day, Pete went to the`` and see which of the story's words it
expects next. The first design offers the story's own names, places, things and feelings
(``distractors="story"``); a model that picks uniformly is right with chance
``1 / len(candidates)``. That design can be passed without reading: a story
has one place, one good and one bad feeling, and often only one name of the
cue's gender, so knowing which *sort* of word the cue wants picks the answer.
:func:`without_story` is the control that shows it (the score stays when the
story is gone). The second design (``distractors="absent"``) offers the
answer among words of the same sort -- names of the same gender, places,
things of the same kind, feelings at the end of a story -- that the story
never mentions: only a model that read the story can tell them apart.
Nothing here needs a model; ranking the candidates by a model's likelihood
is :func:`helpers.probes.cloze_accuracy` (:func:`helpers.probes.cloze_accuracies` for several sets at once).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from .stories import SHAPES, Story, entities
from .story_grammar import ALL_PLACES, ANIMALS, FEARS, MADE, NAMES, TOYS

__all__ = ["CLOZE_KINDS", "CLOZE_DESIGNS", "ClozeItem", "cloze_items", "without_story", "story_words",
           "frequency_baseline"]

CLOZE_KINDS = ("who", "where", "what", "feeling")
CLOZE_DESIGNS = ("story", "absent")  # candidates: the story's own words, or same-sort words the story lacks


@dataclass(frozen=True)
class ClozeItem:
    """One blank: the model reads ``context`` and ranks ``candidates`` as the next words."""

    kind: str                    # who, where, what or feeling
    story: str                   # the story text, unchanged
    cue: str                     # the sentence after the story, ending where the answer goes
    answer: str
    candidates: tuple[str, ...]  # the story's own words (the answer among them), in order of mention

    @property
    def context(self) -> str:
        """What the model reads: the story, a line break, the cue (the cue alone when the story is removed)."""
        return f"{self.story}\n{self.cue}" if self.story else self.cue

    @property
    def chance(self) -> float:
        return 1 / len(self.candidates)


def story_words(story: Story) -> tuple[str, ...]:
    """The story's names, places, things and feelings as it writes them, each once, in order of mention."""
    found = entities(story.text)
    words = [story.hero, story.friend, story.parent, story.place, story.object, story.animal, story.food,
             story.feeling, story.end_feeling, *found["names"], *found["places"], *found["animals"],
             *found["objects"]]
    present = {w for w in words if w and _mentions(story.text, w)}
    return tuple(sorted(present, key=lambda w: _position(story.text, w)))


def _mentions(text: str, word: str) -> bool:
    return _position(text, word) >= 0


def _position(text: str, word: str) -> int:
    match = re.search(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE)
    return match.start() if match else -1


_WHAT_CUES = {  # the shape's key thing, and a sentence that leads up to it
    "TOY": "{hero} played with the",
    "FEAR": "{hero} was afraid of the",
    "MADE": "{hero} made the",
    "ANIMAL": "{hero} helped the",
}


def _what_cue(story: Story) -> tuple[str, str] | None:
    """(cue, answer) for the story's key thing: its toy, its fear, what it makes, or its animal."""
    key = SHAPES[story.shape].key
    answer = story.animal if key == "ANIMAL" else story.object
    return None if answer is None else (_WHAT_CUES[key].format(hero=story.hero), answer)


def _same_sort(story: Story, kind: str) -> tuple[str, ...]:
    """Every word that could fill the blank of ``kind`` in this story: the answer's sort."""
    if kind == "who":
        return NAMES[story.hero_gender]
    if kind == "where":
        return tuple(ALL_PLACES)
    if kind == "feeling":
        return tuple(dict.fromkeys(f for shape in SHAPES.values() for f in shape.end_feelings))
    key = SHAPES[story.shape].key
    return {"TOY": TOYS, "FEAR": tuple(FEARS), "MADE": tuple(MADE), "ANIMAL": ANIMALS}[key]


def cloze_items(story: Story, distractors: str = "story", n_absent: int = 5) -> list[ClozeItem]:
    """The story's blanks: who (the hero), where (the place), what (the key thing), feeling (at the end).

    ``distractors="story"``: the candidates are :func:`story_words`; a kind
    is left out when its answer is not among them or the story offers no
    other. ``"absent"``: the answer and ``n_absent`` words of its sort that
    the story never mentions, in an order drawn from the story's index and
    seed (chance ``1 / (n_absent + 1)``). The cue never contains the answer.
    """
    if distractors not in CLOZE_DESIGNS:
        raise ValueError(f"distractors must be one of {CLOZE_DESIGNS}, got {distractors!r}")
    own = story_words(story)
    kid = "girl" if story.hero_gender == "female" else "boy"
    asks: dict[str, tuple[str, str] | None] = {
        "who": (f"There once was a {kid} named", story.hero),
        "where": (f"One sunny day, {story.hero} went to the", story.place),
        "what": _what_cue(story),
        "feeling": (f"In the end, {story.hero} felt", story.end_feeling),
    }
    rng = random.Random(story.seed * 1_000_003 + story.index)
    items = []
    for kind, ask in asks.items():
        if ask is None:
            continue
        cue, answer = ask
        if _mentions(cue, answer) or answer not in own:
            continue
        if distractors == "story":
            if len(own) < 2:
                continue
            candidates = own
        else:
            absent = [w for w in _same_sort(story, kind) if w != answer and not _mentions(story.text, w)]
            candidates = tuple(rng.sample([answer, *rng.sample(absent, n_absent)], n_absent + 1))
        items.append(ClozeItem(kind, story.text, cue, answer, candidates))
    return items


def without_story(items: Sequence[ClozeItem]) -> list[ClozeItem]:
    """The same blanks with the story taken away: the control a reading probe must fail.

    A model that scores as well here as with the story was decided by the
    candidates and the cue, not by anything it read.
    """
    return [dataclasses.replace(item, story="") for item in items]


def frequency_baseline(items: Sequence[ClozeItem], training_texts: Iterable[str]) -> dict[str, float]:
    """Share right, per kind, when always picking the candidate most frequent in the training stories.

    A guess that needs no model and no reading of the story: what a model
    gets from knowing only which words are common.
    """
    lowered = "\n".join(text.lower() for text in training_texts)  # no candidate spans a line break
    counts = Counter(re.findall(r"\w+", lowered))  # a one-word candidate's whole-word count, for all at once
    for word in {w.lower() for item in items for w in item.candidates}:
        if not re.fullmatch(r"\w+", word):  # "teddy bear": searched for as it is written
            counts[word] = len(re.findall(rf"\b{re.escape(word)}\b", lowered))
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for item in items:
        guess = max(item.candidates, key=lambda w: (counts[w.lower()], -item.candidates.index(w)))
        right[item.kind] += guess == item.answer
        total[item.kind] += 1
    return {kind: right[kind] / total[kind] for kind in total}
