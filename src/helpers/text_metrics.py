"""Measures of generated text that need no model: repetition, grammar, consistency, answers.

Each takes text (and, where it needs them, the facts of a story or the
expected answer) and returns a number, so the same measure scores a model's
output, a real story, or a sentence typed into a notebook. The embedded story
grammar makes grammar, consistency and answers checkable exactly. Nothing here
imports torch.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from typing import Any, Mapping, Sequence

from .stats import Comparison, compare_shares, share
from .stories import Story, answer_vocabulary, entities, is_grammatical, split_sentences

__all__ = [
    "STORY_SENTENCES",
    "repetition",
    "repetition_table",
    "grammar_share",
    "grammatical_sentences",
    "consistency_share",
    "consistent_continuations",
    "normalise_answer",
    "answer_fits_kind",
    "first_line",
    "score_answers",
    "answer_tallies",
    "majority_baselines",
    "versus_baselines",
]

STORY_SENTENCES = 3  # sentences of a held-out story given as the prompt to continue


# ----------------------------------------------------------------- repetition


_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def _words(text: str) -> list[str]:
    """Lower-cased words; punctuation is dropped, inner apostrophes kept ("don't")."""
    return _WORD.findall(text.lower())


def repetition(text: str) -> dict[str, float | int | None]:
    """How much a text repeats itself.

    ``distinct_n`` is the number of different word n-grams over the number of
    n-grams (1.0: nothing repeats); ``repeated_4gram_share`` is the share of
    4-gram occurrences that repeat a 4-gram seen earlier in the same text
    (0.0: no phrase comes back). Words are lower-cased and punctuation is
    ignored. A text too short for any n-gram gets ``None`` for that measure.
    """
    words = _words(text)
    out: dict[str, float | int | None] = {"words": len(words)}
    for n in (1, 2, 3, 4):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        distinct = len(set(grams)) / len(grams) if grams else None
        if n < 4:
            out[f"distinct_{n}"] = distinct
        else:
            out["repeated_4gram_share"] = None if distinct is None else 1.0 - distinct
    return out


def repetition_table(texts_by_model: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """One row per model: :func:`repetition` measures averaged over its texts.

    A measure that is undefined for a text (too short) is averaged over the
    other texts; ``None`` when it is undefined for all of them.
    """
    keys = ("distinct_1", "distinct_2", "distinct_3", "repeated_4gram_share")
    rows = []
    for name, texts in texts_by_model.items():
        scores = [repetition(t) for t in texts]
        row: dict[str, Any] = {"model": name, "texts": len(scores)}
        for key in keys:
            values = [s[key] for s in scores if s[key] is not None]
            row[key] = sum(values) / len(values) if values else None
        rows.append(row)
    return rows


# ----------------------------------------------------------------- grammar and consistency


_CLOSED = re.compile(r'[.!?]"?$')


def _complete(sentence: str) -> bool:
    """Ends in . ! or ? (perhaps inside a closing quote) with every quote closed."""
    return bool(_CLOSED.search(sentence)) and sentence.count('"') % 2 == 0


def grammar_share(texts: Sequence[str]) -> float:
    """Share of complete generated sentences that the story grammar produces exactly.

    Texts are cut with :func:`helpers.stories.split_sentences`. The last piece
    of a text is left out when it is unfinished (no closing ``.``, ``!`` or
    ``?``, or an open quote): generation was cut off there by
    ``max_new_tokens``, not by the model. Every other piece counts, finished
    or not. With no complete sentence at all the share is 0.0: a model that
    never ends a sentence has not learned to write one.
    """
    good, total = grammatical_sentences(texts)
    return good / total if total else 0.0


def grammatical_sentences(texts: Sequence[str]) -> tuple[int, int]:
    """(grammatical, counted) sentences of ``texts``, counted as :func:`grammar_share` counts them."""
    good = total = 0
    for text in texts:
        sentences = split_sentences(text)
        if sentences and not _complete(sentences[-1]):
            sentences = sentences[:-1]
        total += len(sentences)
        good += sum(is_grammatical(s) for s in sentences)
    return good, total


def _consistent(story: Story, continuation: str, n_sentences: int) -> bool:
    before, after = entities(story.beginning(n_sentences)), entities(continuation)
    newcomers = after["names"] - before["names"]
    things = before["animals"] | before["objects"]
    return story.hero in after["names"] and len(newcomers) <= 1 and things <= after["animals"] | after["objects"]


def consistency_share(pairs: Sequence[tuple[Story, str]], *, n_sentences: int = STORY_SENTENCES) -> float:
    """Share of continuations that keep the prompt's characters and things.

    A pair is ``(story, continuation)``, where the prompt was
    ``story.beginning(n_sentences)`` (as :func:`helpers.stories.story_prompts`
    makes it) and ``continuation`` is only the generated text. It counts as
    consistent when all three hold, with names, animals and objects found by
    :func:`helpers.stories.entities` (the corpus' words, matched whole):

    1. the hero's name (``story.hero``) occurs in the continuation again;
    2. at most one new name appears (a story may bring in one friend, as the
       corpus' own stories do; a second stranger means the model lost track);
    3. every animal and object named in the prompt is named again.

    Pronouns do not count as a mention; grown-ups ("Mom") are not names. The
    corpus' own continuations score 0.98 on 100 held-out stories (a few never
    mention an object again), so the share reads against a ceiling near 1.
    Returns 0.0 for no pairs.
    """
    if not pairs:
        return 0.0
    return consistent_continuations(pairs, n_sentences=n_sentences) / len(pairs)


def consistent_continuations(pairs: Sequence[tuple[Story, str]], *, n_sentences: int = STORY_SENTENCES) -> int:
    """How many ``(story, continuation)`` pairs :func:`consistency_share` counts as consistent."""
    return sum(_consistent(story, text, n_sentences) for story, text in pairs)


_ARTICLE = re.compile(r"^(?:a|an|the)\s+")
_EDGES = string.punctuation + string.whitespace


def normalise_answer(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation, no leading a/an/the."""
    text = " ".join(text.lower().split()).strip(_EDGES)
    return _ARTICLE.sub("", text).strip(_EDGES)


@functools.cache
def _answer_forms() -> dict[str, frozenset[str]]:
    """Every answer the story questions can have, by kind, normalised."""
    return {kind: frozenset(normalise_answer(a) for a in answers) for kind, answers in answer_vocabulary().items()}


def answer_fits_kind(kind: str, answer: str) -> bool | None:
    """Whether ``answer`` is the right sort of answer to a story question of ``kind``, true or not.

    "Grandma" fits a who-question; "in the beach" does not fit a
    where-question, "at the beach" would (even about a story set in a park).
    This separates knowing the template of an answer from knowing the
    answer. ``None`` for a kind that is not one of the story questions'.
    """
    forms = _answer_forms().get(kind)
    return None if forms is None else normalise_answer(answer) in forms



def first_line(text: str) -> str:
    """A generated answer: the text up to the first line break, without surrounding spaces."""
    return text.split("\n", 1)[0].strip()


def score_answers(records: Sequence[Mapping[str, Any]], answers: Sequence[str], *,
                  examples: int = 5) -> dict[str, Any]:
    """Exact-match accuracy of ``answers`` to instruction ``records``, overall and per ``kind``.

    An answer is its first line (:func:`first_line`), compared with the
    record's ``output`` after :func:`normalise_answer`, so "The red ball."
    matches "a red ball", while a wrong, empty or partial answer ("red")
    scores 0. Records without a ``kind`` count under "other". The tallies are
    :func:`answer_tallies`' (all kinds at the top level, each kind under
    ``by_kind``). ``examples`` rows of (question, kind, expected, got,
    correct, right_form) are kept to read.
    """
    if len(records) != len(answers):
        raise ValueError(f"{len(records)} records but {len(answers)} answers")
    if not records:
        raise ValueError("no answers to score")
    rows = []
    for record, answer in zip(records, answers):
        got = first_line(answer)
        kind = record.get("kind", "other")
        rows.append({"question": record["instruction"], "kind": kind, "expected": record["output"], "got": got,
                     "correct": normalise_answer(got) == normalise_answer(record["output"]),
                     "right_form": answer_fits_kind(kind, got)})
    tallies = answer_tallies(rows)
    return {**tallies.pop("all"), "by_kind": tallies, "examples": rows[:examples]}


def answer_tallies(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kind (sorted) and then for "all": exact answers with their 95% interval, and the right-form share.

    ``right_form`` is the share of answers that have the form their kind asks
    for (:func:`answer_fits_kind`), right or wrong, over the answers whose
    kind is a story-question kind; ``None`` if there are none.
    """
    out = {}
    for kind in [*sorted({r["kind"] for r in rows}), "all"]:
        chosen = [r for r in rows if kind in ("all", r["kind"])]
        judged = [r["right_form"] for r in chosen if r["right_form"] is not None]
        out[kind] = {**share(sum(r["correct"] for r in chosen), len(chosen)),
                     "right_form": sum(judged) / len(judged) if judged else None}
    return out


def majority_baselines(train_records: Sequence[Mapping[str, Any]],
                       eval_records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kind: the most common answer among the *training* questions, and how often it is right on ``eval_records``.

    A baseline that needs no model and never looks at the questions it is
    scored on. Yes/no questions get "always no" whatever the training
    majority: a model that only learned to say "no" scores exactly that.
    """
    counts: dict[str, Counter] = {}
    for record in train_records:
        counts.setdefault(record.get("kind", "other"), Counter())[normalise_answer(record["output"])] += 1
    out = {}
    for kind in sorted({r.get("kind", "other") for r in eval_records}):
        chosen = [r for r in eval_records if r.get("kind", "other") == kind]
        answer = "no" if kind == "yes_no" else counts[kind].most_common(1)[0][0] if counts.get(kind) else ""
        right = sum(normalise_answer(r["output"]) == answer for r in chosen)
        out[kind] = {"answer": answer, "share": right / len(chosen), "n": len(chosen)}
    return out


def versus_baselines(tallies: Mapping[str, Mapping[str, Any]],
                     baselines: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each kind's exact answers, and all kinds', against the no-model baseline, by the course's one rule.

    ``tallies`` as :func:`answer_tallies` gives them, ``baselines`` as
    :func:`majority_baselines` does; the baseline of all kinds is each kind's
    right answers added up. Each entry is the baseline's share and
    :func:`helpers.stats.compare_shares` of the two (difference, its 95%
    interval, Cohen's h, the verdict).
    """
    right = {kind: round(b["share"] * b["n"]) for kind, b in baselines.items()}  # a whole count of questions
    counts = {**{kind: (right[kind], b["n"]) for kind, b in baselines.items()},
              "all": (sum(right.values()), sum(b["n"] for b in baselines.values()))}
    out: dict[str, dict[str, Any]] = {}
    for kind, (base_right, base_n) in counts.items():
        compared: Comparison = compare_shares(tallies[kind]["successes"], tallies[kind]["n"], base_right, base_n)
        out[kind] = {"baseline": base_right / base_n, **compared}
    return out
