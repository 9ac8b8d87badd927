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
from .stories import Story, answer_vocabulary, entities, is_grammatical, split_sentences, vocabulary
from .story_grammar import PRONOUNS

__all__ = [
    "STORY_SENTENCES",
    "repetition",
    "repetition_table",
    "grammar_share",
    "grammatical_sentences",
    "consistency_share",
    "yes_no_verdict",
    "expected_verdict",
    "consistent_continuations",
    "consistency_variants",
    "grammar_measures",
    "normalise_answer",
    "answer_fits_kind",
    "first_line",
    "score_answers",
    "answer_tallies",
    "majority_baselines",
    "reader_baselines",
    "versus_baselines",
    "answer_groups",
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


def _names_in_order(text: str) -> list[str]:
    """The girls' and boys' names the text writes, in order of first mention (whole words: "Tom" is not "Tommy")."""
    first = {n: re.search(rf"\b{re.escape(n)}\b", text).start() for n in entities(text)["names"]}
    return sorted(first, key=first.get)


_PRONOUN = re.compile(r"\b(?:he|she|him|her|his)\b", re.IGNORECASE)


def consistency_variants(pairs: Sequence[tuple[Story, str]], *,
                         n_sentences: int = STORY_SENTENCES) -> dict[str, int]:
    """How many continuations pass the strict rule and three more lenient ones.

    ``strict``: :func:`consistency_share`'s rule. ``hero_again``: the hero's
    name comes back. ``first_name_is_hero``: the first name the continuation
    writes is the hero's. ``first_pronoun_fits``: its first he/she/him/her/his
    has the hero's gender. Each is a count out of ``len(pairs)``; a lenient
    rule that stays as low as the strict one shows the failure is not the
    rule's severity.
    """
    counts = {"strict": 0, "hero_again": 0, "first_name_is_hero": 0, "first_pronoun_fits": 0}
    for story, text in pairs:
        names = _names_in_order(text)
        pronoun = _PRONOUN.search(text)
        hero_words = {w.lower() for w in PRONOUNS[story.hero_gender].values()}
        counts["strict"] += _consistent(story, text, n_sentences)
        counts["hero_again"] += story.hero in names
        counts["first_name_is_hero"] += bool(names) and names[0] == story.hero
        counts["first_pronoun_fits"] += bool(pronoun) and pronoun.group().lower() in hero_words
    return counts


def grammar_measures(texts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Grammar measured three ways, from strict to loose, each a share with its 95% interval.

    ``whole``: continuations all of whose complete sentences the grammar
    produces (out of those with at least one); ``sentences``: complete
    sentences the grammar produces (:func:`grammatical_sentences`);
    ``words``: complete sentences made only of the corpus' words, in any
    order (a sentence can fail the grammar on one agreement and pass here).
    With nothing to count, a share is 0 with ``n`` 0.
    """
    whole, words = [0, 0], [0, 0]
    for text in texts:
        sentences = split_sentences(text)
        if sentences and not _complete(sentences[-1]):
            sentences = sentences[:-1]
        if sentences:
            whole[0] += all(is_grammatical(s) for s in sentences)
            whole[1] += 1
        words[0] += sum(bool(_LEXICON.findall(s)) and set(_LEXICON.findall(s.lower())) <= vocabulary() for s in sentences)
        words[1] += len(sentences)
    strict = grammatical_sentences(texts)
    return {name: share(*counts) if counts[1] else dict(_NOTHING_COUNTED)
            for name, counts in (("whole", whole), ("sentences", strict), ("words", words))}


# With no complete sentence there is nothing to count: a model that never ends a sentence has not learned
# to write one, so the share is 0 (its interval the whole range).
_NOTHING_COUNTED = {"share": 0.0, "low": 0.0, "high": 1.0, "successes": 0, "n": 0}


_LEXICON = re.compile(r"[a-z]+(?:'t)?|'s", re.IGNORECASE)  # words as helpers.stories.vocabulary() lists them


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



_ECHO = re.compile(r"^([^?]*)\?\s*")  # what a yes/no question asks about, echoed before the verdict


def yes_no_verdict(answer: str) -> str | None:
    """The "yes" or "no" of an answer, written alone, first ("No, it happened at the park."), first after the
    question's value echoed ("At the beach? No, ...") or last ("It happened at the park, so no."); ``None`` if it
    says neither."""
    text = _ECHO.sub("", normalise_answer(answer))
    found = re.match(r"(yes|no)\b", text) or re.search(r"\b(yes|no)$", text)
    return found.group(1) if found else None


def _fact_of(answer: str) -> str:
    """An answer without its verdict (and an echo before it): "It happened at the park, so no.", "No, it happened
    at the park." and "At the beach? No, it happened at the park." give "it happened at the park"."""
    return re.sub(r"^(yes|no)\b[,\s]*|[,\s]*(so\s+)?\b(yes|no)$", "", _ECHO.sub("", normalise_answer(answer)))


def _echo_of(answer: str) -> str | None:
    """What an answer echoes of its question before the verdict ("At the beach? No, ..." gives "at the beach");
    ``None`` without an echo."""
    found = _ECHO.match(normalise_answer(answer))
    return found.group(1).strip() if found else None


def expected_verdict(record: Mapping[str, Any]) -> str:
    """What a question is scored against: a yes/no record's bare ``verdict`` when its answer gives the deciding
    fact too (:func:`helpers.stories.qa_records`), else its ``output``."""
    return record.get("verdict") or record["output"]


def first_line(text: str) -> str:
    """A generated answer: the text up to the first line break, without surrounding spaces."""
    return text.split("\n", 1)[0].strip()


def score_answers(records: Sequence[Mapping[str, Any]], answers: Sequence[str], *,
                  examples: int = 5) -> dict[str, Any]:
    """Exact-match accuracy of ``answers`` to instruction ``records``, overall and per ``kind``.

    An answer is its first line (:func:`first_line`), compared with the
    record's ``output`` after :func:`normalise_answer`, so "The red ball."
    matches "a red ball", while a wrong, empty or partial answer ("red")
    scores 0. A yes/no answer written with its deciding fact is right when its
    verdict is (:func:`yes_no_verdict`), has the right form when it has one,
    and counts under ``fact_right`` when its fact, the answer without the
    verdict, is the record's (and under ``echo_right`` when what it echoes of the question first is). Records without a ``kind`` count under "other". The tallies are
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
        kind, verdict = record.get("kind", "other"), record.get("verdict")
        rows.append({"question": record["instruction"], "kind": kind, "role": record.get("role"),
                     "expected": record["output"], "got": got,
                     "correct": (yes_no_verdict(got) == verdict if verdict
                                 else normalise_answer(got) == normalise_answer(record["output"])),
                     "right_form": yes_no_verdict(got) is not None if verdict else answer_fits_kind(kind, got),
                     **({"fact_right": _fact_of(got) == _fact_of(record["output"])} if verdict else {}),
                     **({"echo_right": _echo_of(got) == _echo_of(record["output"])}
                        if verdict and _echo_of(record["output"]) else {})})
    tallies = answer_tallies(rows)
    return {**tallies.pop("all"), "by_kind": tallies, "examples": rows[:examples]}


def answer_groups(row: Mapping[str, Any]) -> list[str]:
    """The tallies a question counts in: its kind, and "who/hero", "who/friend" or "who/parent" for a who-question."""
    kind = row.get("kind", "other")
    return [kind, f"{kind}/{row['role']}"] if row.get("role") else [kind]


def answer_tallies(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kind (sorted; a who-question also under its role, :func:`answer_groups`), then "all".

    Each holds the exact answers with their 95% interval and ``right_form``:
    the share of answers that have the form their kind asks for
    (:func:`answer_fits_kind`), right or wrong, over the answers whose kind
    is a story-question kind; ``None`` if there are none. Where answers give
    a yes/no's deciding fact: ``fact_right``, the share whose fact is right,
    and ``verdict_when_fact_right``, the share of those whose verdict is right
    too (all of them if the verdict followed from the fact; ``None`` when no fact is right);
    where they echo what the question asks about first, ``echo_right`` and
    ``verdict_when_echo_right`` alike.
    """
    out = {}
    for group in [*sorted({g for r in rows for g in answer_groups(r)}), "all"]:
        chosen = [r for r in rows if group == "all" or group in answer_groups(r)]
        judged = [r["right_form"] for r in chosen if r["right_form"] is not None]
        out[group] = {**share(sum(r["correct"] for r in chosen), len(chosen)),
                      "right_form": sum(judged) / len(judged) if judged else None,
                      **_step_tallies(chosen, "fact_right", "verdict_when_fact_right"),
                      **_step_tallies(chosen, "echo_right", "verdict_when_echo_right")}
    return out


def _step_tallies(rows: Sequence[Mapping[str, Any]], step: str, verdict_when: str) -> dict[str, Any]:
    """How often the rows that write a step before or beside their verdict (``step`` in the row) got it right, and
    the verdict right among those (``None`` when none did); nothing for rows without the step."""
    told = [r for r in rows if step in r]
    known = [r["correct"] for r in told if r[step]]
    return ({step: share(sum(r[step] for r in told), len(told)),
             verdict_when: share(sum(known), len(known)) if known else None} if told else {})


def majority_baselines(train_records: Sequence[Mapping[str, Any]],
                       eval_records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kind (and who-role): the most common *training* answer, and how often it is right on ``eval_records``.

    A baseline that needs no model and never looks at the questions it is
    scored on. Yes/no questions get "always no" whatever the training
    majority: a model that only learned to say "no" scores exactly that.
    """
    counts: dict[str, Counter] = {}
    for record in train_records:
        for group in answer_groups(record):
            counts.setdefault(group, Counter())[normalise_answer(record["output"])] += 1
    out = {}
    for group in sorted({g for r in eval_records for g in answer_groups(r)}):
        chosen = [r for r in eval_records if group in answer_groups(r)]
        answer = "no" if group == "yes_no" else counts[group].most_common(1)[0][0] if counts.get(group) else ""
        right = sum(normalise_answer(expected_verdict(r)) == answer for r in chosen)
        out[group] = {"answer": answer, "share": right / len(chosen), "n": len(chosen)}
    return out


_ASKED = re.compile(r"^(?:Did the story happen (?:\w+ )?(?:the )?(?P<place>.+)|Is there someone named (?P<name>.+) in the story"
                    r"|Is there (?:an? )?(?P<thing>.+) in the story)\?$")
def _first_name(text: str) -> str:
    """The first girl's or boy's name the text writes ("" if none)."""
    names = _names_in_order(text)
    return names[0] if names else ""


def _looked_up(record: Mapping[str, Any]) -> str:
    """A yes/no question answered by looking its word up in the story: "yes" if the story writes it."""
    match = _ASKED.match(record["instruction"])
    if match is None:
        raise ValueError(f"no word to look up in yes/no question {record['instruction']!r}")
    word = next(w for w in match.groups() if w)
    flags = 0 if match.group("name") else re.IGNORECASE
    return "yes" if re.search(rf"\b{re.escape(word)}\b", record["input"], flags) else "no"


def reader_baselines(eval_records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """What two trivial readers score: who-questions answered with the story's first name, yes/no by lookup.

    Unlike :func:`majority_baselines` these read the story, but nothing more
    than a search does: a model below them has not learned to read as well as
    ``str.find``. Per group of :func:`answer_groups` (who and its roles,
    yes_no): the reader's name, its share right and the number of questions.
    """
    readers = {"who": ("first name in the story", lambda r: _first_name(r["input"])),
               "yes_no": ("look the word up in the story", _looked_up)}
    out = {}
    for group in sorted({g for r in eval_records for g in answer_groups(r)}):
        kind = group.split("/")[0]
        if kind not in readers:
            continue
        name, answer = readers[kind]
        chosen = [r for r in eval_records if group in answer_groups(r)]
        right = sum(normalise_answer(answer(r)) == normalise_answer(expected_verdict(r)) for r in chosen)
        out[group] = {"reader": name, "share": right / len(chosen), "n": len(chosen)}
    return out


def versus_baselines(tallies: Mapping[str, Mapping[str, Any]],
                     baselines: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each kind's exact answers, and all kinds', against the no-model baseline, by the course's one rule.

    ``tallies`` as :func:`answer_tallies` gives them, ``baselines`` as
    :func:`majority_baselines` does; the baseline of all kinds is each kind's
    right answers added up (who-roles are part of who, not counted again). Each entry is the baseline's share and
    :func:`helpers.stats.compare_shares` of the two (difference, its 95%
    interval, Cohen's h, the verdict).
    """
    right = {kind: round(b["share"] * b["n"]) for kind, b in baselines.items()}  # a whole count of questions
    counts = {**{kind: (right[kind], b["n"]) for kind, b in baselines.items()},
              "all": (sum(right[kind] for kind in baselines if "/" not in kind),
                      sum(b["n"] for kind, b in baselines.items() if "/" not in kind))}
    out: dict[str, dict[str, Any]] = {}
    for kind, (base_right, base_n) in counts.items():
        compared: Comparison = compare_shares(tallies[kind]["successes"], tallies[kind]["n"], base_right, base_n)
        out[kind] = {"baseline": base_right / base_n, **compared}
    return out
