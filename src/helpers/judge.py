"""Grade story completions with a chat model, the way the paper does.

The paper (following Eldan & Li, 2023, the TinyStories paper) shows GPT-3.5 the
beginning of a story and the model's continuation, asks for a verbal
assessment, then asks for four grades out of 10 (grammar, creativity,
consistency with the beginning, whether the plot makes sense) and a guess of
the writer's age group. This module runs that two-turn conversation for many
completions and turns the replies into numbers.

Any OpenAI-compatible server works: the endpoint and key come from the
environment only (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``), so the same code
grades with OpenAI's GPT-3.5 or with a local server (Ollama, vLLM, llama.cpp).
With neither variable set, :func:`judge_many` prints one line and returns
nothing, so notebooks still run offline.

Replies are cached on disk, one JSON file per request, so a rerun costs no API
calls. The API key is never written anywhere: not to the cache, not to a
:class:`Grade`, not to a log line or an error message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "EXERCISE_INTRO",
    "ASSESSMENT_REQUEST",
    "GRADING_REQUEST",
    "SEPARATOR",
    "DEFAULT_MODEL",
    "TEMPERATURE",
    "SCORE_NAMES",
    "Grade",
    "build_conversation",
    "parse_grades",
    "judge_available",
    "grade",
    "judge_many",
    "summarise",
]

log = logging.getLogger(__name__)

# --- The measuring instrument -------------------------------------------------
# The three texts below are quoted from the grading transcript of Eldan & Li
# (2023), "TinyStories: How Small Can Language Models Be and Still Speak
# Coherent English?", as reproduced in the paper this course follows. They are
# kept word for word, spelling slips ("gramatically", "storys") included, so
# that grades from this module are comparable with the paper's.

EXERCISE_INTRO = (
    "The following exercise, the student is given a beginning of a story. The student "
    "needs to complete it into a full story. The exercise tests the student's language "
    "abilities and creativity. The symbol *** marks the separator between the "
    "prescribed beginning and the students completion:"
)

ASSESSMENT_REQUEST = (
    "Please provide your general assessment about the part written by the student "
    "(the one after the *** symbol). Is it gramatically correct? Is it consistent with "
    "the beginning of the story? Pay special attention to whether the student manages "
    "to complete the sentence which is split in the middle by the separator ***."
)

GRADING_REQUEST = (
    "Now, grade the students completion out of a maximum of 10 points in terms of "
    "grammar, creativity, consistency with the storys beginning and whether the plot "
    "makes sense. Moreover, please provide your best guess of what the age of the "
    "student might be, as reflected from the completion. Choose from possible age "
    "groups: A: 3 or under. B: 4-5. C: 6-7. D: 8-9. E: 10-12. F: 13-16."
)

SEPARATOR = "***"

DEFAULT_MODEL = "gpt-3.5-turbo"  # the paper graded with GPT-3.5

SCORE_NAMES = ("grammar", "creativity", "consistency", "plot")

# Temperature 0 makes the grader as close to deterministic as the server allows:
# a grade is a measurement, so rerunning it should give the same number, and a
# cached reply then stands for what a fresh call would return.
TEMPERATURE = 0.0

# Local servers ignore the key, but the client refuses to start without one.
_PLACEHOLDER_KEY = "no-key-needed-for-local-server"

_SKIP_MESSAGE = (
    "Judging skipped: set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL "
    "(an OpenAI-compatible local server) to grade completions."
)


@dataclass
class Grade:
    """The judge's verdict on one completion.

    Scores are out of 10 and ``None`` when the reply did not contain them;
    ``parsed`` says whether all four were found. ``error`` is set (and the
    scores are ``None``) when a request failed after all retries.
    """

    grammar: float | None = None
    creativity: float | None = None
    consistency: float | None = None
    plot: float | None = None
    age_group: str | None = None
    assessment: str | None = None
    raw: str | None = None
    parsed: bool = False
    error: str | None = None


def build_conversation(beginning: str, completion: str) -> list[dict[str, str]]:
    """The first user turn: exercise, beginning ``***`` completion, request.

    The beginning and completion are joined with no added whitespace, so a
    sentence split by the separator reads exactly as the model produced it.
    """
    story = f"{beginning}{SEPARATOR}{completion}"
    content = f"{EXERCISE_INTRO}\n\n{story}\n\n{ASSESSMENT_REQUEST}"
    return [{"role": "user", "content": content}]


# --- Parsing the second-turn reply ------------------------------------------------

_NUMBER = r"(?P<value>\d+(?:\.\d+)?)"
_LABELS = {
    "grammar": r"\bgramm(?:ar|atical\w*)\b",
    "creativity": r"\bcreativity\b",
    "consistency": r"\bconsistency\b",
    "plot": r"\bplot\b",
}
_ANY_LABEL = re.compile("|".join(_LABELS.values()), re.IGNORECASE)


def _score_patterns(label: str) -> tuple[re.Pattern[str], ...]:
    """A strict pattern (``N/10``, ``N out of 10``) and a loose one (``Label: N``).

    Both allow a short label tail on the same line ("with the story's
    beginning", "coherence", markdown ``**``) before the number.
    """
    tail = r"(?P<tail>[^\n\d]{0,60}?)"
    strict = re.compile(label + tail + _NUMBER + r"\s*(?:/|out\s+of)\s*10\b", re.IGNORECASE)
    loose = re.compile(
        label + tail + r"[:=\-–—]\s*\**\s*" + _NUMBER + r"\s*\**\s*(?:points?\b)?\s*(?=$|[-–—(.,;])",
        re.IGNORECASE | re.MULTILINE,
    )
    return strict, loose


_SCORE_PATTERNS = {name: _score_patterns(label) for name, label in _LABELS.items()}

# A letter A-F that stands alone, not the article "A" starting a phrase.
_AGE_LETTER = re.compile(r"(?<![A-Za-z'])([A-F])(?![A-Za-z'])(?!\s+(?!or\b|and\b|to\b)[a-z])")
_AGE_WORD = re.compile(r"\bage\b", re.IGNORECASE)
_AGE_JOINER = re.compile(r"\s*(?:or|and|to|/|-|–|,)\s*")
_AGE_CHOICE = re.compile(r"(?<![A-Za-z])([A-F])\s*[:)]\s*\d")


def _find_score(text: str, name: str) -> float | None:
    """The earliest in-range score written after the label.

    A label tail that runs into another label ("Grammar: N/A, Creativity:
    7/10") belongs to that other label, so it is not taken.
    """
    candidates = [
        match
        for pattern in _SCORE_PATTERNS[name]
        for match in pattern.finditer(text)
        if 0 <= float(match.group("value")) <= 10 and not _ANY_LABEL.search(match.group("tail"))
    ]
    if not candidates:
        return None
    return float(min(candidates, key=lambda match: match.start()).group("value"))


def _find_age_group(text: str) -> str | None:
    """The age letter(s) named after the word "age", e.g. "A or B" -> "A/B".

    A mention followed by the list of choices ("A: 3 or under. B: 4-5. ...") is
    the model echoing the question, not answering it, and is skipped.
    """
    for age in _AGE_WORD.finditer(text):
        after = text[age.end():]
        if len(set(_AGE_CHOICE.findall(after[:200]))) >= 3:
            continue
        stretch = re.split(r"(?<=[.!?])\s|\n", after, maxsplit=1)[0]
        matches = list(_AGE_LETTER.finditer(stretch))
        if not matches:
            continue
        letters = [matches[0].group(1)]
        for previous, current in zip(matches, matches[1:]):
            if not _AGE_JOINER.fullmatch(stretch[previous.end():current.start()]):
                break
            letters.append(current.group(1))
        return "/".join(dict.fromkeys(letters))
    return None


def parse_grades(text: str) -> dict[str, Any]:
    """Pull the four scores and the age group out of a grading reply.

    Returns a dict with keys ``grammar``, ``creativity``, ``consistency``,
    ``plot`` (float or ``None``), ``age_group`` (e.g. ``"C"`` or ``"A/B"``, or
    ``None``) and ``parsed`` (all four scores found). Nothing is guessed: a
    score that is not written in the reply stays ``None``.
    """
    result: dict[str, Any] = {name: _find_score(text, name) for name in SCORE_NAMES}
    result["age_group"] = _find_age_group(text)
    result["parsed"] = all(result[name] is not None for name in SCORE_NAMES)
    return result


# --- Talking to the server --------------------------------------------------------


def judge_available() -> bool:
    """Whether the environment names a judge (an OpenAI key or a base URL)."""
    return bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))


def _client_from_env() -> Any:
    """An ``openai.OpenAI`` client configured only from the environment."""
    import openai

    base_url = os.environ.get("OPENAI_BASE_URL") or None
    api_key = os.environ.get("OPENAI_API_KEY") or _PLACEHOLDER_KEY
    return openai.OpenAI(api_key=api_key, base_url=base_url)


def _cache_path(cache_dir: Path, model: str, messages: list[dict[str, str]]) -> Path:
    """One file per request, named by a hash of exactly what is sent."""
    payload = json.dumps({"model": model, "messages": messages}, sort_keys=True, ensure_ascii=False)
    return cache_dir / f"{hashlib.sha256(payload.encode('utf-8')).hexdigest()}.json"


def _read_cache(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["reply"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(path: Path, model: str, messages: list[dict[str, str]], reply: str) -> None:
    """Write to a temporary file first, so a crash never leaves half a file."""
    record = {"model": model, "messages": messages, "reply": reply}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _chat(client: Any, model: str, messages: list[dict[str, str]], cache_dir: Path | None) -> str:
    """One chat completion, served from the cache when possible."""
    path = _cache_path(cache_dir, model, messages) if cache_dir is not None else None
    if path is not None:
        cached = _read_cache(path)
        if cached is not None:
            return cached
    response = client.chat.completions.create(model=model, messages=messages, temperature=TEMPERATURE)
    reply = response.choices[0].message.content or ""
    if path is not None:
        _write_cache(path, model, messages, reply)
    return reply


def _describe_error(exc: BaseException) -> str:
    """Class name and HTTP status only: messages may echo request details."""
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__} (HTTP {status})" if status is not None else type(exc).__name__


def _grade_one(client: Any, model: str, cache_dir: Path | None, beginning: str, completion: str) -> Grade:
    """Run both turns for one item; a failure becomes ``Grade.error``, not a crash."""
    messages = build_conversation(beginning, completion)
    assessment: str | None = None
    try:
        assessment = _chat(client, model, messages, cache_dir)
        messages = [
            *messages,
            {"role": "assistant", "content": assessment},
            {"role": "user", "content": GRADING_REQUEST},
        ]
        raw = _chat(client, model, messages, cache_dir)
    # One bad item (server error, timeout, malformed reply) must not sink a batch.
    except Exception as exc:  # noqa: BLE001
        error = _describe_error(exc)
        log.warning("judge request failed after retries: %s", error)
        return Grade(assessment=assessment, error=error)
    scores = parse_grades(raw)
    return Grade(**scores, assessment=assessment, raw=raw)


def judge_many(
    items: Sequence[tuple[str, str]],
    *,
    model: str = DEFAULT_MODEL,
    cache_dir: str | Path | None = None,
    concurrency: int = 4,
    timeout: float = 60.0,
    max_retries: int = 4,
    client: Any = None,
) -> list[Grade]:
    """Grade ``(beginning, completion)`` pairs; results come back in input order.

    Each item costs two chat requests (assessment, then grades). Up to
    ``concurrency`` items are in flight at once. Retries are the ``openai``
    client's own: timeouts, connection errors, 408/409/429 and 5xx are retried
    up to ``max_retries`` times with exponential backoff (0.5 s doubling, capped
    at 8 s, with jitter), honouring a server's ``Retry-After``. ``timeout`` is
    in seconds per request attempt.

    Without ``client`` the endpoint comes from the environment; if neither
    ``OPENAI_API_KEY`` nor ``OPENAI_BASE_URL`` is set, one line is printed and
    an empty list is returned. A given ``client`` is copied with this call's
    ``timeout`` and ``max_retries``.

    With ``cache_dir``, every successful reply is stored under a hash of the
    model name and the messages; failures are not stored, so a rerun retries
    them. The server's address is not part of the hash: give two servers that
    use the same model name separate cache folders.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if client is None:
        if not judge_available():
            print(_SKIP_MESSAGE)
            return []
        client = _client_from_env()
    client = client.with_options(timeout=timeout, max_retries=max_retries)
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda item: _grade_one(client, model, cache, *item), items))


def grade(beginning: str, completion: str, **options: Any) -> Grade | None:
    """Grade one completion; ``None`` when judging is skipped (no judge configured).

    Accepts the keyword options of :func:`judge_many`.
    """
    results = judge_many([(beginning, completion)], **options)
    return results[0] if results else None


# --- Reporting ----------------------------------------------------------------------


def summarise(grades: Sequence[Grade]) -> dict[str, Any]:
    """Mean of each score over parsed grades, with counts of parsed and failed items."""
    parsed = [g for g in grades if g.parsed]
    summary: dict[str, Any] = {
        name: (statistics.fmean(getattr(g, name) for g in parsed) if parsed else None)
        for name in SCORE_NAMES
    }
    summary["n_items"] = len(grades)
    summary["n_parsed"] = len(parsed)
    summary["n_failed"] = sum(1 for g in grades if g.error is not None)
    return summary
